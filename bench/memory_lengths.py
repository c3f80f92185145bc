"""Recall accuracy against episode length, for each memory variant, through the agent's own memory.

Each (variant, seed) trains the developmental agent's network with the supervised recall probe
(``devlearn.probes.recall``: the agent's context, memory replay, core and action
head; the answer's cross-entropy instead of PPO's noise) on ``devlearn/Recall-v0``, at delay 10 then 200
(``--stages``),
then evaluates its evaluation policy (``agent.policy()``, argmax, memory bounded by ``memory.capacity``)
on held-out episodes whose question comes after each of ``--lengths`` steps. Trained at one length, does
the fact still count 100,000 steps later?

A variant stops at the first length where its accuracy is within ``--broken`` of chance: it is reported
as broken there, and longer lengths (which cost minutes) are not run for it.

Variants are ``memory=`` names, plus ``hybrid-surprise`` and ``retrieval-surprise`` (``memory.write=surprise``:
the store keeps what the world model failed to predict, and an episode's first observation is pinned with an
infinite surprise, so it outlives ``memory.capacity``; with ``write=always`` a full store evicts the oldest).

    python bench/memory_lengths.py                       # 6 variants x 3 seeds, lengths 100 to 100,000
    python bench/memory_lengths.py --jobs 16 --tag h100host
    python bench/memory_lengths.py --quick               # a smoke run, not saved
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
VARIANTS = ("none", "window", "ssm", "retrieval", "hybrid", "hybrid-surprise", "retrieval-surprise")


def variant_overrides(name: str, overrides: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``hybrid-surprise`` -> (``hybrid``, ``{"memory.write": "surprise", **overrides}``); a plain name writes always."""
    write = "surprise" if name.endswith("-surprise") else "always"
    return name.split("-")[0], {"memory.write": write, **overrides}


def parse_stages(p: argparse.ArgumentParser, stages: list[str], example: str) -> list[tuple[int, int]]:
    """``["10:300", "200:60"]`` -> ``[(10, 300), (200, 60)]``, or a usage error naming the flag."""
    try:
        parsed = [tuple(int(x) for x in stage.split(":")) for stage in stages]
        if any(len(stage) != 2 or min(stage) < 1 for stage in parsed):
            raise ValueError
    except ValueError:
        p.error(f"--stages {stages}: expected LENGTH:UPDATES pairs of positive integers, e.g. {example}")
    return parsed


def parse_overrides(p: argparse.ArgumentParser, items: list[str]) -> dict[str, Any]:
    """``["memory.k=4"]`` -> ``{"memory.k": 4}``, or a usage error naming the item."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--override {item!r}: expected KEY=VALUE, e.g. memory.k=4")
        overrides[key] = int(value) if value.lstrip("-").isdigit() else value
    return overrides


def trained_agent(
    load: bool, weights: Path | None, make_agent: Callable[[], Any], train: Callable[[], dict[str, Any]]
) -> tuple[Any, dict[str, Any]]:
    """The probe's agent and its training record: loaded from ``weights`` (``load``), or trained and saved there."""
    import torch

    if load:  # trained by an earlier call: evaluate only
        if weights is None or not weights.exists():
            raise FileNotFoundError(f"--load: no trained network at {weights}; train it first (--weights-dir without --load).")
        agent = make_agent()
        agent.net.load_state_dict(torch.load(weights, weights_only=True))
        return agent, {"loaded": weights.name, "final_loss": float("nan")}
    result = train()
    agent = result.pop("agent")
    if weights is not None:
        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save(agent.net.state_dict(), weights)
    return agent, result


def one_run(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (variant, seed) and evaluate it at each length until it breaks."""
    import torch

    torch.set_num_threads(1)
    from devlearn.probes.recall import answer_accuracy, probe_agent, recall_probe

    variant, overrides = variant_overrides(job["variant"], job["overrides"])
    weights = Path(job["weights_dir"]) / f"{job['variant']}-{job['seed']}.pt" if job["weights_dir"] else None
    agent, result = trained_agent(
        job["load"],
        weights,
        lambda: probe_agent(variant, max(d for d, _ in job["stages"]), 32, job["seed"], overrides),
        lambda: recall_probe(
            variant,
            stages=job["stages"],
            lr=job["lr"],
            seed=job["seed"],
            eval_delays=(),
            overrides=overrides,
            return_agent=True,
        ),
    )
    result.setdefault("chance", 1 / agent.net.actor[-1].out_features)
    accuracy, seconds, broken_at = {}, {}, None
    with torch.no_grad():
        for length in job["lengths"]:
            t0 = time.perf_counter()
            accuracy[str(length)] = answer_accuracy(agent, length, job["episodes"], seed=job["eval_seed"] + job["seed"])
            seconds[str(length)] = round(time.perf_counter() - t0, 1)
            print(f"  {job['variant']} seed {job['seed']}: {accuracy[str(length)]:.2f} at {length:,} ({seconds[str(length)]} s)", flush=True)
            if accuracy[str(length)] <= result["chance"] + job["broken"]:
                broken_at = length
                break
    return {**job, **result, "heldout_accuracy": accuracy, "eval_seconds": seconds, "broken_at": broken_at}


def table(runs: list[dict[str, Any]], variants: list[str], lengths: list[int]) -> str:
    """Median held-out accuracy over seeds [min-max] per variant and length; '-' where not run (broken earlier)."""
    lines = [f"{'variant':<20}" + "".join(f"{length:>20,}" for length in lengths)]
    for variant in variants:
        row = f"{variant:<20}"
        for length in lengths:
            got = [r["heldout_accuracy"][str(length)] for r in runs if r["variant"] == variant and str(length) in r["heldout_accuracy"]]
            if not got:
                row += f"{'-':>20}"
                continue
            cell = f"{statistics.median(got):.2f}" + (f" [{min(got):.2f}-{max(got):.2f}]" if len(got) > 1 else "")
            row += f"{cell:>20}"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--stages",
        nargs="+",
        default=["10:300", "200:60"],
        help="the probe's curriculum: DELAY:UPDATES pairs (32 episodes an update)",
    )
    p.add_argument("--weights-dir", type=Path, default=None, help="save each trained network here (VARIANT-SEED.pt)")
    p.add_argument("--load", action="store_true", help="no training: load the networks from --weights-dir")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lengths", type=int, nargs="+", default=[100, 1_000, 10_000, 100_000])
    p.add_argument("--episodes", type=int, default=32, help="held-out episodes per length")
    p.add_argument(
        "--eval-seed", type=int, default=10_000_019, help="held-out episodes are drawn from this seed + the run's seed"
    )
    p.add_argument("--broken", type=float, default=0.1, help="accuracy within this of chance counts as broken")
    p.add_argument("--override", nargs="*", default=[], help="agent keys for every run, e.g. memory.k=4")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--tag", default="cpu")
    p.add_argument("--quick", action="store_true", help="2 variants, 1 seed, 20 updates, lengths 30 and 100")
    args = p.parse_args()
    if args.quick:
        args.variants, args.seeds, args.stages, args.lengths, args.episodes = ["window", "hybrid"], [0], ["20:20"], [30, 100], 8
    if args.load and args.weights_dir is None:
        p.error("--load needs --weights-dir")
    stages = parse_stages(p, args.stages, "10:300 200:60")
    overrides = parse_overrides(p, args.override)
    jobs = [
        {
            "variant": v,
            "seed": s,
            "stages": stages,
            "weights_dir": str(args.weights_dir) if args.weights_dir else None,
            "load": args.load,
            "lr": args.lr,
            "lengths": args.lengths,
            "episodes": args.episodes,
            "eval_seed": args.eval_seed,
            "broken": args.broken,
            "overrides": overrides,
        }
        for v in args.variants
        for s in args.seeds
    ]
    out = RESULTS / f"memory_lengths-{args.tag}.json"
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    t0 = time.time()
    runs: list[dict[str, Any]] = []
    print(f"memory_lengths: {len(jobs)} runs, {args.jobs} at a time; curriculum {args.stages}", flush=True)
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for run in pool.imap_unordered(one_run, jobs):
            runs.append(run)
            accs = " ".join(f"{k}: {v:.2f}" for k, v in run["heldout_accuracy"].items())
            print(f"{run['variant']} seed {run['seed']}: loss {run['final_loss']:.3f}; held-out {accs}; {run['eval_seconds']}", flush=True)
            if not args.quick:
                out.write_text(json.dumps({"complete": False, "args": settings, "runs": runs}, indent=2))
    print("\nheld-out accuracy (median over seeds [min-max]; chance 0.25; '-': broken at a shorter length)")
    print(table(runs, args.variants, args.lengths))
    print(f"\n{len(runs)} runs in {time.time() - t0:,.0f} s")
    if not args.quick:
        done = {"complete": True, "args": settings, "machine": machine, "runs": runs, "wall_seconds": round(time.time() - t0, 1)}
        out.write_text(json.dumps(done, indent=2))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
