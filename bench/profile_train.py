"""Where the developmental agent's CPU training time goes: acting (``Collector.collect``) vs the update (``Update``).

Builds the default agent (``agent=developmental``, CliffEdge, 8 envs) as ``devlearn train`` does, runs one
warm-up rollout + update, then profiles ``--rollouts`` rollouts + updates with cProfile and prints the
cumulative time of the pieces named below as a share of the total (wall clock, noisy on a shared machine).

    python bench/profile_train.py                  # 6 rollouts of 8 envs x 64 steps
    python bench/profile_train.py --agent ablation
    python bench/profile_train.py --env devlearn/Recall-v0 --env-kwargs delay=20 --override memory.variant=hybrid
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from devlearn.agents import make_agent
from devlearn.config import AGENT_SCHEMAS
from devlearn.envs.vector.make import make_vector_env

# (label, file fragment, function name): cumulative times reported, nested ones indented by hand
PIECES = [
    ("rollout (Collector.collect)", "developmental/collect.py", "collect"),
    ("  net.decide (policy + shield candidates)", "developmental/net.py", "decide"),
    ("  env.step", "vector", "step"),
    ("  shield monitor probe", "developmental/shield.py", "probe"),
    ("  context.put (encode new obs)", "model/context.py", "put"),
    ("  context.reencode", "model/context.py", "reencode"),
    ("update (Update.__call__)", "developmental/update.py", "__call__"),
    ("  training_window (encode windows)", "model/context.py", "training_window"),
    ("  net.evaluate (core + heads)", "developmental/net.py", "evaluate"),
    ("  world-model loss", "developmental/update.py", "world_model_loss"),
    ("    exact_logits (decoder)", "model/world_model.py", "exact_logits"),
    ("  backward (backward_balanced)", "developmental/update.py", "backward_balanced"),
    ("  optimizer.step", "torch/optim/optimizer.py", "wrapper"),
    ("  EMA target update", "model/world_model.py", "update_target"),
]


class NullLog:
    def __getattr__(self, name):
        return lambda *a, **k: None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default="developmental")
    parser.add_argument("--env", default="devlearn/CliffEdge-v0", help="a registered env id")
    parser.add_argument("--env-kwargs", nargs="*", default=None,
                        help="the env's keyword arguments as key=value (YAML values); "
                             "default: CliffEdge's split=train view=egocentric slip=0.0")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--rollouts", type=int, default=6)
    parser.add_argument("--override", nargs="*", default=[], help="dotted config overrides, e.g. n_epochs=2")
    parser.add_argument("--top", type=int, default=0, help="also print cProfile's top N by internal time")
    args = parser.parse_args()
    cfg = OmegaConf.structured(AGENT_SCHEMAS[args.agent]())
    cfg.merge_with(OmegaConf.from_dotlist(args.override))
    if args.env_kwargs is None:
        env_kwargs = {"split": "train", "view": "egocentric", "slip": 0.0} if "CliffEdge" in args.env else {}
    else:
        env_kwargs = OmegaConf.to_container(OmegaConf.from_dotlist(args.env_kwargs))
    env = make_vector_env(args.env, args.num_envs, **env_kwargs)
    agent = make_agent(cfg, env, seed=0, device="cpu", writer=None)
    run_dir = Path(tempfile.mkdtemp(prefix="devlearn-profile-"))
    steps = args.num_envs * cfg.n_steps
    log = NullLog()
    agent.learn(steps, log, run_dir, checkpoint_every=10**9)  # warm-up
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    agent.learn(steps * (1 + args.rollouts), log, run_dir, checkpoint_every=10**9)
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    total = sum(v[3] for k, v in stats.stats.items() if k[2] == "learn" and "developmental/agent.py" in k[0])
    print(f"{args.agent}: {args.rollouts} rollouts x {steps} env steps in {wall:.1f} s "
          f"({args.rollouts * steps / wall:,.0f} env steps/s under cProfile), torch threads {torch.get_num_threads()}")
    for label, file, func in PIECES:
        cum = sum(v[3] for k, v in stats.stats.items() if k[2] == func and file in k[0])
        calls = sum(v[1] for k, v in stats.stats.items() if k[2] == func and file in k[0])
        print(f"{label:<45}{cum:8.2f} s {100 * cum / total:6.1f}%  ({calls} calls)")
    if args.top:
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
