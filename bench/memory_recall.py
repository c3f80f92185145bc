"""Can each memory variant carry Recall-v0's fact to the question? A supervised probe, on CPU.

Not reinforcement learning: a check that the memory pieces can learn the task before they go into
the agent. Episodes come from ``devlearn/Recall-v0``'s batched twin (answer-free: the probe only
reads observations). A small model embeds each observation (kind, symbol), runs ``Memory.sequence``
over the episode, and a linear head reads the question step's embedding and memory tokens and
predicts the fact (cross-entropy, Adam). Accuracy is measured on fresh held-out episodes, whose
distractor symbols the model never saw in training. Chance is ``1 / num_facts``.

    python bench/memory_recall.py                       # delays 50 and 500, all variants (minutes on 2 cores)
    python bench/memory_recall.py --quick               # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import gymnasium
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import devlearn  # noqa: F401  (registers devlearn/Recall-v0)
from devlearn.model.memory import Memory, MemoryConfig

VARIANTS = ("none", "ssm", "retrieval", "hybrid")


def episodes(
    split: str, delay: int, num_facts: int, batch: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` episodes' observations up to the question ``(batch, delay + 1, 2)`` and their facts."""
    envs = gymnasium.make_vec(
        "devlearn/Recall-v0",
        num_envs=batch,
        vectorization_mode="vector_entry_point",
        split=split,
        delay=delay,
        num_facts=num_facts,
    )
    obs, _ = envs.reset(seed=seed)
    seen = [obs]
    for _ in range(delay):
        obs, *_ = envs.step(np.zeros(batch, dtype=np.int64))
        seen.append(obs)
    envs.close()
    obs = torch.as_tensor(np.stack(seen, 1))
    return obs, obs[:, 0, 1]


class Probe(nn.Module):
    def __init__(self, variant: str, n_symbols: int, num_facts: int, d: int, k: int, capacity: int) -> None:
        super().__init__()
        self.kind, self.symbol = nn.Embedding(3, d), nn.Embedding(n_symbols, d)
        self.memory = Memory(d, MemoryConfig(variant=variant, k=k, capacity=capacity))
        self.head = nn.Linear(d * (1 + self.memory.n_tokens), num_facts)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        emb = self.kind(obs[..., 0]) + self.symbol(obs[..., 1])
        b, t = obs.shape[:2]
        start = torch.zeros(b, t, dtype=torch.bool)
        start[:, 0] = True
        tokens = self.memory.sequence(self.memory.initial_state(b), emb, start)
        read = [emb[:, -1]] if tokens is None else [emb[:, -1], tokens[:, -1].flatten(1)]
        return self.head(torch.cat(read, dim=1))


def run(variant: str, delay: int, args: argparse.Namespace) -> dict[str, float | int | str]:
    torch.manual_seed(0)
    n_symbols = args.num_facts + 2 * 16 + 1  # Recall-v0's default 16 distractor symbols per split
    probe = Probe(variant, n_symbols, args.num_facts, args.dim, args.k, capacity=delay + 1)
    opt = torch.optim.Adam(probe.parameters(), lr=args.lr)
    start = time.perf_counter()
    for step in range(args.steps):
        obs, fact = episodes("train", delay, args.num_facts, args.batch, seed=1_000_000 + step * args.batch)
        loss = F.cross_entropy(probe(obs), fact)
        opt.zero_grad()
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - start
    with torch.no_grad():
        result = {}
        for split in ("train", "heldout"):
            obs, fact = episodes(split, delay, args.num_facts, args.eval_episodes, seed=0)
            result[f"{split}_accuracy"] = float((probe(obs).argmax(-1) == fact).float().mean())
    return {"variant": variant, "delay": delay, "final_loss": loss.item(), "train_s": train_s, **result}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--delays", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--num-facts", type=int, default=4)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-episodes", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "memory_recall.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.delays, args.steps, args.eval_episodes = [20], 20, 64
    rows = []
    print(f"{'variant':<10}{'delay':>7}{'train acc':>11}{'heldout acc':>13}{'loss':>8}{'train s':>9}")
    for delay in args.delays:
        for variant in args.variants:
            r = run(variant, delay, args)
            rows.append(r)
            print(
                f"{variant:<10}{delay:>7}{r['train_accuracy']:>11.3f}{r['heldout_accuracy']:>13.3f}"
                f"{r['final_loss']:>8.3f}{r['train_s']:>9.0f}"
            )
    result = {
        "benchmark": "memory_recall",
        "quick": args.quick,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "chance": 1 / args.num_facts,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1min": os.getloadavg()[0],
        },
        "versions": {"torch": torch.__version__},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
