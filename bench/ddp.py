"""Data-parallel training against one process at equal env steps: 2 processes x 4 envs vs 1 process x 8 envs.

    python bench/ddp.py                                   # 3 seeds x 2 layouts at 100k steps -> bench/results/ddp-<machine>.json
    python bench/ddp.py --steps 2048 --seeds 0 --eval-episodes 2   # a smoke run: does everything start and finish?

Both layouts train the developmental agent on CliffEdge with the same totals (``env.num_envs=8``,
``agent.batch_size``, ``agent.total_timesteps``); the distributed one splits them over 2 gloo processes
(``distributed.nproc=2``). Every process runs one torch thread (``OMP_NUM_THREADS=1``), so ``--jobs`` runs
at once must leave a core per process: a 2-process run takes 2.

The question (issue 9's target): does 2 x 4 reach the same training return as 1 x 8, within the seeds'
spread? Reported per layout: the median over seeds, with min and max, of the training return and success
rate over the last 100 training episodes (``results.json``'s ``training.last100_*``), the held-out return
and success of the final table, and the wall time of the whole command and of training alone.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from train_runs import RunOutcome, machine_facts, run_all, run_train, spread, train_command, versions

LAYOUTS: dict[str, list[str]] = {  # name -> overrides; both have 8 envs in all
    "1proc_x_8envs": ["env.num_envs=8"],
    "2procs_x_4envs": ["env.num_envs=8", "distributed.nproc=2"],
}
PROCESSES = {"1proc_x_8envs": 1, "2procs_x_4envs": 2}
FIGURES = {  # reported name -> path in results.json
    "train_return": ("training", "last100_return"),
    "train_success": ("training", "last100_success_rate"),
    "heldout_return": ("eval", "heldout", "return"),
    "heldout_success": ("eval", "heldout", "success"),
    "env_steps": ("env_steps",),
    "train_seconds": ("train_seconds",),
    "env_steps_per_second": ("env_steps_per_second",),
}


def figure(results: dict, path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(results, dict) or key not in results:
            return None
        results = results[key]
    return results


def summarize(outcomes: list[RunOutcome]) -> dict:
    """Median, min and max over the seeds of each figure, and the wall time of the whole command."""
    ok = [o for o in outcomes if o.ok]
    summary = {
        name: spread([v for o in ok if (v := figure(o.results, path)) is not None])
        for name, path in FIGURES.items()
    }
    summary["wall_seconds"] = spread([o.wall_seconds for o in ok])
    summary["failed"] = [{"run": o.name, "returncode": o.returncode, "stderr": o.stderr_tail} for o in outcomes if not o.ok]
    return summary


def within(a: dict, b: dict) -> bool | None:
    """Whether ``a``'s median lies in ``b``'s range over the seeds (None when either has no runs)."""
    if a["median"] is None or b["median"] is None:
        return None
    return b["min"] <= a["median"] <= b["max"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per run, all processes together")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (a 2-process run uses 2 cores)")
    parser.add_argument("--machine", default=f"{os.cpu_count()}cpu", help="names the output file ddp-<machine>.json")
    parser.add_argument("--out", default=None, help="default: bench/results/ddp-<machine>.json")
    parser.add_argument("--keep", default=None, help="keep the run folders here (default: a temporary folder)")
    args = parser.parse_args()
    out = Path(args.out or Path(__file__).parent / "results" / f"ddp-{args.machine}.json")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp).resolve()
        tasks = []
        for seed in args.seeds:
            for layout, overrides in LAYOUTS.items():
                name = f"{layout}-seed{seed}"
                command = train_command(
                    "cliff", "developmental", seed, args.steps, root / name, "cpu", args.eval_episodes, overrides
                )
                tasks.append((name, lambda n=name, c=command: run_train(n, c, root / n, threads=1)))

        def report(o: RunOutcome) -> None:
            ret = figure(o.results or {}, FIGURES["train_return"])
            status = f"train return {ret:.3f}" if o.ok and ret is not None else f"FAILED ({o.returncode})"
            print(f"  {o.name:<28} {o.wall_seconds:>8.1f} s  {status}", flush=True)

        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        outcomes = run_all(tasks, args.jobs, report)

    by_layout = {layout: summarize([o for o in outcomes if o.name.startswith(layout)]) for layout in LAYOUTS}
    single, ddp = by_layout["1proc_x_8envs"], by_layout["2procs_x_4envs"]
    verdict = {
        "ddp_median_in_single_range": within(ddp["train_return"], single["train_return"]),
        "single_median_in_ddp_range": within(single["train_return"], ddp["train_return"]),
    }
    verdict["same_training_return_within_spread"] = (
        None if None in verdict.values() else all(verdict.values())
    )
    record = {
        "date": started,
        "command": f"OMP_NUM_THREADS=1 python bench/ddp.py --steps {args.steps} --seeds {' '.join(map(str, args.seeds))} "
        f"--eval-episodes {args.eval_episodes} --jobs {args.jobs} --machine {args.machine}",
        "machine": machine_facts("cpu"),
        "versions": versions(),
        "setup": {
            "env": "cliff",
            "agent": "developmental",
            "steps": args.steps,
            "seeds": args.seeds,
            "layouts": {k: {"overrides": v, "processes": PROCESSES[k]} for k, v in LAYOUTS.items()},
            "threads_per_process": 1,
            "jobs": args.jobs,
        },
        "layouts": by_layout,
        "verdict": verdict,
        "runs": [
            {"run": o.name, "wall_seconds": o.wall_seconds, **{k: figure(o.results or {}, p) for k, p in FIGURES.items()}}
            for o in outcomes
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")

    print(f"\n{'layout':<16} {'train return (median [min, max])':<34} {'train success':<24} {'wall s (median)':>16}")
    for layout, s in by_layout.items():
        r, su, w = s["train_return"], s["train_success"], s["wall_seconds"]
        if r["median"] is None:
            print(f"{layout:<16} no finished runs")
            continue
        print(
            f"{layout:<16} {r['median']:.3f} [{r['min']:.3f}, {r['max']:.3f}]{'':<14} "
            f"{su['median']:.2f} [{su['min']:.2f}, {su['max']:.2f}]{'':<6} {w['median']:>16.1f}"
        )
    print(f"same training return within the seeds' spread: {verdict['same_training_return_within_spread']}")
    if single["wall_seconds"]["median"] and ddp["wall_seconds"]["median"]:
        print(f"wall time 2x4 / 1x8: {ddp['wall_seconds']['median'] / single['wall_seconds']['median']:.2f}")
    print(f"wrote {out}")
    if any(s["failed"] for s in by_layout.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
