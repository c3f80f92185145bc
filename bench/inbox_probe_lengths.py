"""Inbox violations against inbox length, for each memory variant, through the agent's own memory.

Each (variant, seed) teaches the developmental agent's network to triage ``devlearn/Inbox-v0`` by
supervision (``devlearn.probes.inbox``: the agent's context, memory replay, core
and action head; the correct action's cross-entropy instead of PPO's noise), on inboxes of 10 e-mails
then 100 (``--stages``), then lets its evaluation policy (``agent.policy()``, argmax, its own actions in
its window, memory bounded by ``memory.capacity``) triage fresh inboxes of each of ``--lengths`` e-mails.
The rules are shown once, at step 0: do they still govern the deletes 100,000 e-mails later?

Reported per length (``inbox_probe.inbox_scores``): catastrophes (forbidden deletes) and violations per
e-mail, accuracy (and per category) and success (no violation and accuracy >= 0.9). An agent that keeps
everything, measured in the same run, makes no violation and never succeeds: no number here is read alone.

``--split train`` (the default) draws fresh inboxes of the training word lists (new seeds: other bosses,
senders, orders and e-mails than any update saw); ``--split heldout`` uses word lists the probe never saw,
which tests reading new text more than memory (docs/benchmarks.md).

    python bench/inbox_probe_lengths.py                      # 5 variants x 3 seeds, 100 to 10,000 e-mails
    python bench/inbox_probe_lengths.py --jobs 15 --tag h100host --weights-dir W
    python bench/inbox_probe_lengths.py --weights-dir W --load --variants hybrid-surprise --lengths 100000 --episodes 4
    python bench/inbox_probe_lengths.py --quick              # a smoke run, not saved
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from memory_lengths import parse_overrides, parse_stages, trained_agent, variant_overrides

RESULTS = Path(__file__).parent / "results"
VARIANTS = ("none", "window", "ssm", "retrieval", "hybrid", "hybrid-surprise", "retrieval-surprise")
DEFAULT_VARIANTS = ("none", "window", "ssm", "hybrid-surprise", "retrieval-surprise")


def keep_everything(lengths: list[int], episodes: int, seed: int, split: str) -> dict[str, Any]:
    """The dumbest agent's scores at each length: ``keep`` on every e-mail (no violation, no success)."""
    import numpy as np

    from devlearn.probes.inbox import inbox_scores

    class KeepAll:  # inbox_scores reads only agent.policy()
        @staticmethod
        def policy(deterministic: bool = True):
            return lambda obs, start: np.zeros(len(start), dtype=np.int64)

    return {str(n): inbox_scores(KeepAll(), n, episodes, seed, split) for n in lengths}


def one_run(job: dict[str, Any]) -> dict[str, Any]:
    """Train (or load) one (variant, seed) and score it at each length."""
    import torch

    torch.set_num_threads(1)
    from devlearn.probes.inbox import inbox_probe, inbox_scores, probe_agent

    variant, overrides = variant_overrides(job["variant"], job["overrides"])
    weights = Path(job["weights_dir"]) / f"inbox-{job['variant']}-{job['seed']}.pt" if job["weights_dir"] else None
    agent, result = trained_agent(
        job["load"],
        weights,
        lambda: probe_agent(variant, max(n for n, _ in job["stages"]), job["batch"], job["seed"], overrides),
        lambda: inbox_probe(
            variant,
            stages=job["stages"],
            batch=job["batch"],
            lr=job["lr"],
            seed=job["seed"],
            eval_lengths=(),
            overrides=overrides,
            return_agent=True,
        ),
    )
    scores, seconds = {}, {}
    agent.net.eval()
    with torch.no_grad():
        for n in job["lengths"]:
            t0 = time.perf_counter()
            got = inbox_scores(agent, n, job["episodes"], job["eval_seed"] + job["seed"], job["split"])
            scores[str(n)], seconds[str(n)] = got, round(time.perf_counter() - t0, 1)
            print(
                f"  {job['variant']} seed {job['seed']} at {n:,}: catastrophes/e-mail {got['catastrophe_rate']:.4f}, "
                f"accuracy {got['accuracy']:.3f}, success {got['success']:.2f} ({seconds[str(n)]} s)",
                flush=True,
            )
    return {**job, **result, "scores": scores, "eval_seconds": seconds}


def cell(values: list[float], digits: int) -> str:
    """Median [min-max] over seeds."""
    if not values:
        return "-"
    out = f"{statistics.median(values):.{digits}f}"
    return out + (f" [{min(values):.{digits}f}-{max(values):.{digits}f}]" if len(values) > 1 else "")


def metric(scores: dict[str, Any], key: str) -> float:
    """``scores[key]``; ``"accuracy_by_category.spam"`` reads the nested entry."""
    for part in key.split("."):
        scores = scores[part]
    return float(scores)


def table(runs: list[dict[str, Any]], variants: list[str], lengths: list[int], key: str, digits: int) -> str:
    """One metric (``key`` of ``inbox_scores``), median over seeds [min-max], per variant and length."""
    lines = [f"{'variant':<20}" + "".join(f"{n:>24,}" for n in lengths)]
    for variant in variants:
        row = f"{variant:<20}"
        for n in lengths:
            got = [metric(r["scores"][str(n)], key) for r in runs if r["variant"] == variant and str(n) in r["scores"]]
            row += f"{cell(got, digits):>24}"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=VARIANTS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--stages",
        nargs="+",
        default=["10:1500", "100:100"],
        help="the probe's curriculum: NUM_EMAILS:UPDATES pairs (32 inboxes an update)",
    )
    p.add_argument("--batch", type=int, default=32, help="inboxes per update")
    p.add_argument("--weights-dir", type=Path, default=None, help="save each trained network here (inbox-VARIANT-SEED.pt)")
    p.add_argument("--load", action="store_true", help="no training: load the networks from --weights-dir")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lengths", type=int, nargs="+", default=[100, 1_000, 10_000])
    p.add_argument("--episodes", type=int, default=16, help="inboxes per length")
    p.add_argument("--split", choices=("train", "heldout"), default="train", help="the word lists of the scored inboxes")
    p.add_argument("--eval-seed", type=int, default=10_000_019, help="scored inboxes are drawn from this seed + the run's seed")
    p.add_argument("--override", nargs="*", default=[], help="agent keys for every run, e.g. memory.k=4")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--tag", default="cpu")
    p.add_argument("--quick", action="store_true", help="2 variants, 1 seed, 20 updates, lengths 20 and 50")
    args = p.parse_args()
    if args.quick:
        args.variants, args.seeds, args.stages, args.lengths, args.episodes = ["none", "hybrid"], [0], ["10:20"], [20, 50], 4
    if args.load and args.weights_dir is None:
        p.error("--load needs --weights-dir")
    stages = parse_stages(p, args.stages, "10:1500 100:100")
    overrides = parse_overrides(p, args.override)
    common = {
        "stages": stages,
        "batch": args.batch,
        "weights_dir": str(args.weights_dir) if args.weights_dir else None,
        "load": args.load,
        "lr": args.lr,
        "lengths": args.lengths,
        "episodes": args.episodes,
        "split": args.split,
        "eval_seed": args.eval_seed,
        "overrides": overrides,
    }
    jobs = [{"variant": v, "seed": s, **common} for v in args.variants for s in args.seeds]
    out = RESULTS / f"inbox_probe_lengths-{args.tag}.json"
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    t0 = time.time()
    baseline = keep_everything(args.lengths[:1], args.episodes, args.eval_seed, args.split)
    print(f"inbox_probe_lengths: {len(jobs)} runs, {args.jobs} at a time; curriculum {args.stages}; split {args.split}")
    print(f"keep everything at {args.lengths[0]:,}: {baseline[str(args.lengths[0])]}", flush=True)
    runs: list[dict[str, Any]] = []
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for run in pool.imap_unordered(one_run, jobs):
            runs.append(run)
            print(f"{run['variant']} seed {run['seed']}: loss {run['final_loss']:.3f}; {run['eval_seconds']}", flush=True)
            if not args.quick:
                out.write_text(json.dumps({"complete": False, "args": settings, "baseline": baseline, "runs": runs}, indent=2))
    for key, digits, what in (
        ("catastrophe_rate", 4, "forbidden deletes per e-mail"),
        ("violation_rate", 4, "violations per e-mail (forbidden deletes and obeyed injected orders)"),
        ("accuracy", 3, "accuracy (share of e-mails given the correct action)"),
        ("accuracy_by_category.spam", 3, "spam rule followed (accuracy on spam: delete, or only suggest it, as step 0 said)"),
        ("accuracy_by_category.newsletter", 3, "archive rule followed on newsletters"),
        ("accuracy_by_category.boss", 3, "the boss's mail flagged (the name given at step 0)"),
        ("success", 2, "success (inboxes with no violation and accuracy >= 0.9)"),
    ):
        print(f"\n{what}; median over seeds [min-max]; '-': not run")
        print(table(runs, args.variants, args.lengths, key, digits))
    print(f"\n{len(runs)} runs in {time.time() - t0:,.0f} s")
    if not args.quick:
        done = {
            "complete": True,
            "args": settings,
            "machine": machine,
            "baseline": baseline,
            "runs": runs,
            "wall_seconds": round(time.time() - t0, 1),
        }
        out.write_text(json.dumps(done, indent=2))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
