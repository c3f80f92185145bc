"""``devlearn train`` with the update's minibatches cut from a plain permutation, as before commit 0299a1f.

The before-side of docs/benchmarks.md's "Grouped minibatches" comparison: the same code otherwise, so only the
minibatches differ. Run from anywhere with devlearn installed, e.g.

    OMP_NUM_THREADS=1 python run_old_minibatches.py train env=recall env.kwargs.delay=20 memory=hybrid \
        agent.learning_rate=0.001 agent.total_timesteps=64000 seed=3
"""

import sys

import torch

from devlearn.agents.developmental.agent import DevelopmentalAgent
from devlearn.cli import main


def plain(self, env):
    order = torch.randperm(len(env), generator=self.gen, device=self.device)
    return [order[s : s + self.cfg.batch_size] for s in range(0, len(order), self.cfg.batch_size)]


DevelopmentalAgent._minibatches = plain
sys.argv = ["devlearn", *sys.argv[1:]]
main()
