"""Schedules on the environments: the developmental agent on CliffEdge and CarWash under every schedule.

Issue 8 validates the schedules on grokking first (``bench/grokking.py``); this is the second half:
every (env, schedule, seed) is one ``devlearn train env=E schedule=S seed=N agent.weight_decay=WD`` run
at the same env-step budget, then one ``devlearn eval ... split=heldout dynamic_eval=true`` of its
checkpoint. All schedules, ``constant`` included, share the base weight decay ``--weight-decay``
(``sleep`` multiplies it, so it cannot be 0), so the schedule is the only difference.

Per env and schedule it reports the median over seeds [min-max] of: training success (last 100
episodes) and catastrophes, train-layout and held-out success and catastrophe rate (argmax, the
run's final evaluation), and the held-out evaluation again with dynamic evaluation: success,
catastrophe rate and the world-model loss per transition without and with it.

Each run's results.json (and its eval-heldout-dynamic.json) is kept under
``bench/results/schedules_envs-runs/``; the summary goes to ``bench/results/schedules_envs.json``,
rewritten after every finished run, so a benchmark cut short keeps what it had.

    python bench/schedules_envs.py                              # 2 envs x 5 schedules x 3 seeds x 100k steps
    python bench/schedules_envs.py --envs cliff --jobs 15       # one env, all runs side by side
    python bench/schedules_envs.py --quick --schedules constant sleep   # a smoke run (temp folder)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from train_runs import (
    RunOutcome,
    child_env,
    machine_facts,
    run_all,
    run_train,
    spread,
    train_command,
    versions,
)

from devlearn.schedules import SCHEDULES  # the one list of schedule names

RESULTS = Path(__file__).parent / "results"
ENVS = ["cliff", "carwash"]

# (key, column heading, how to read it from the run's figures, format)
COLUMNS = [
    ("train_success", "train success", "{:.2f}"),
    ("training_catastrophes", "train catastr.", "{:,.0f}"),
    ("eval_train_success", "layout success", "{:.2f}"),
    ("heldout_success", "held-out success", "{:.2f}"),
    ("heldout_catastrophe_rate", "held-out catastr.", "{:.2f}"),
    ("dynamic_heldout_success", "dyn-eval success", "{:.2f}"),
    ("dynamic_heldout_catastrophe_rate", "dyn-eval catastr.", "{:.2f}"),
    ("wm_loss_static", "wm loss", "{:.4f}"),
    ("wm_loss_dynamic", "wm loss dyn", "{:.4f}"),
]


def figures(results: dict[str, Any], dynamic: dict[str, Any] | None) -> dict[str, float]:
    """One run's figures from its results.json and (if it ran) its dynamic evaluation."""
    out = {
        "train_success": results["training"]["last100_success_rate"],
        "training_catastrophes": results["training"]["catastrophes"],
        "eval_train_success": results["eval"]["train"]["success"],
        "heldout_success": results["eval"]["heldout"]["success"],
        "heldout_catastrophe_rate": results["eval"]["heldout"]["catastrophe_rate"],
        "env_steps_per_second": results["env_steps_per_second"],
    }
    if dynamic is not None:
        out.update(
            dynamic_heldout_success=dynamic["success"],
            dynamic_heldout_catastrophe_rate=dynamic["catastrophe_rate"],
            wm_loss_static=dynamic["dynamic_eval"]["wm_loss_static"],
            wm_loss_dynamic=dynamic["dynamic_eval"]["wm_loss_dynamic"],
        )
    return {k: float(v) for k, v in out.items()}


def train_and_evaluate(
    name: str, command: list[str], run_dir: Path, threads: int, timeout: float | None, dynamic_episodes: int
) -> tuple[RunOutcome, dict[str, Any] | None]:
    """Train one run, then evaluate its checkpoint on held-out layouts with dynamic evaluation."""
    outcome = run_train(name, command, run_dir, threads, timeout)
    if not outcome.ok or dynamic_episodes <= 0:
        return outcome, None
    evaluate = [
        sys.executable,
        "-m",
        "devlearn",
        "eval",
        f"run_dir={run_dir}",
        "split=heldout",
        f"episodes={dynamic_episodes}",
        "dynamic_eval=true",
    ]
    with (run_dir / "bench-dynamic.log").open("w") as log:
        done = subprocess.run(
            evaluate, stdout=log, stderr=subprocess.STDOUT, env=child_env(threads), cwd=run_dir
        )
    path = run_dir / "eval-heldout-dynamic.json"
    return outcome, (json.loads(path.read_text()) if done.returncode == 0 and path.exists() else None)


def cell(stats: dict[str, Any], fmt: str) -> str:
    """``median [min-max]`` over seeds, or ``-`` when none finished."""
    if not stats["n"]:
        return "-"
    median, low, high = (fmt.format(stats[k]) for k in ("median", "min", "max"))
    return median if stats["n"] == 1 else f"{median} [{low}-{high}]"


def summarize(runs: list[dict[str, Any]], envs: list[str], schedules: list[str]) -> dict[str, Any]:
    """Per env and schedule: median/min/max over the seeds that finished, for every column."""
    table: dict[str, Any] = {}
    for env in envs:
        table[env] = {}
        for schedule in schedules:
            got = [
                r["figures"]
                for r in runs
                if r.get("figures") and r["env"] == env and r["schedule"] == schedule
            ]
            keys = [key for key, _, _ in COLUMNS] + ["env_steps_per_second"]
            table[env][schedule] = {key: spread([f[key] for f in got if key in f]) for key in keys}
    return table


def print_table(summary: dict[str, Any], width: int = 19) -> None:
    print(f"\n{'env':<9}{'schedule':<16}{'seeds':>6}" + "".join(f"{h:>{width}}" for _, h, _ in COLUMNS))
    for env, by_schedule in summary.items():
        for schedule, stats in by_schedule.items():
            n = stats["heldout_success"]["n"]
            print(
                f"{env:<9}{schedule:<16}{n:>6}"
                + "".join(f"{cell(stats[k], fmt):>{width}}" for k, _, fmt in COLUMNS)
            )
    print("(median over seeds [min-max]; success and catastrophe rates of the argmax policy)")


def main() -> None:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--steps", type=int, default=100_000, help="env steps per run (agent.total_timesteps)"
    )
    parser.add_argument("--envs", nargs="+", default=ENVS, help="env config names (configs/env)")
    parser.add_argument(
        "--schedules",
        nargs="+",
        default=list(SCHEDULES),
        choices=SCHEDULES,
        help="schedule config names (configs/schedule)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--weight-decay", type=float, default=0.01, help="agent.weight_decay of every run")
    parser.add_argument(
        "--eval-episodes", type=int, default=20, help="episodes per split in each run's final evaluation"
    )
    parser.add_argument(
        "--dynamic-episodes", type=int, default=10, help="held-out episodes with dynamic_eval (0: skip)"
    )
    parser.add_argument(
        "--jobs", type=int, default=max(1, cpus - 1), help="runs at a time (default: CPUs - 1)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads per run")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before a training run is killed")
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every run")
    parser.add_argument(
        "--quick", action="store_true", help="tiny runs that check the script works (temp folder)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="summary JSON (default: bench/results/schedules_envs.json)"
    )
    args = parser.parse_args()

    steps = 2_048 if args.quick else args.steps
    eval_episodes, dynamic_episodes = (3, 2) if args.quick else (args.eval_episodes, args.dynamic_episodes)
    if args.quick and args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="devlearn-schedules-quick-")) / "schedules_envs.json"
    out = args.out or RESULTS / "schedules_envs.json"
    runs_dir = out.parent / (out.stem + "-runs")
    runs_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="devlearn-schedules-"))

    tasks = []
    meta: dict[str, dict[str, Any]] = {}
    for env in args.envs:
        for schedule in args.schedules:
            for seed in args.seeds:
                name, run_dir = f"{env}-{schedule}-{seed}", work / f"{env}-{schedule}-{seed}"
                overrides = [
                    f"schedule={schedule}",
                    f"agent.weight_decay={args.weight_decay}",
                    *args.override,
                ]
                command = train_command(
                    env, "developmental", seed, steps, run_dir, "cpu", eval_episodes, overrides
                )
                meta[name] = {
                    "name": name,
                    "env": env,
                    "schedule": schedule,
                    "seed": seed,
                    "command": command[1:],
                }
                thunk = partial(
                    train_and_evaluate, name, command, run_dir, args.threads, args.timeout, dynamic_episodes
                )
                tasks.append((name, thunk))
    print(
        f"{len(tasks)} runs of {steps:,} env steps ({len(args.envs)} envs x {len(args.schedules)} schedules x "
        f"{len(args.seeds)} seeds), {args.jobs} at a time, {args.threads} thread(s) each; work dir {work}",
        flush=True,
    )
    runs: list[dict[str, Any]] = []
    t0 = time.time()

    def result(complete: bool) -> dict[str, Any]:
        return {
            "benchmark": "schedules_envs",
            "complete": complete,
            "quick": args.quick,
            "steps": steps,
            "weight_decay": args.weight_decay,
            "seeds": args.seeds,
            "eval_episodes": eval_episodes,
            "dynamic_episodes": dynamic_episodes,
            "overrides": args.override,
            "jobs": args.jobs,
            "threads_per_run": args.threads,
            "wall_seconds": round(time.time() - t0, 1),
            "machine": machine_facts("cpu"),
            "versions": versions(),
            "statistic": "median over seeds, with min and max",
            "summary": summarize(runs, args.envs, args.schedules),
            "runs": runs,
        }

    def report(done: tuple[RunOutcome, dict[str, Any] | None]) -> None:
        outcome, dynamic = done
        entry = {**meta[outcome.name], "ok": outcome.ok, "wall_seconds": outcome.wall_seconds}
        if outcome.ok and outcome.results is not None:
            entry["figures"] = figures(outcome.results, dynamic)
            shutil.copyfile(outcome.run_dir / "results.json", runs_dir / f"{outcome.name}.json")
            if dynamic is not None:
                (runs_dir / f"{outcome.name}-dynamic.json").write_text(json.dumps(dynamic, indent=2))
            f = entry["figures"]
            print(
                f"[{len(runs) + 1}/{len(tasks)}] {outcome.name}: {outcome.wall_seconds:.0f} s, held-out success "
                f"{f['heldout_success']:.2f}, catastrophe rate {f['heldout_catastrophe_rate']:.2f}"
                + (
                    ""
                    if dynamic is None
                    else f"; with dynamic eval {f['dynamic_heldout_success']:.2f} / "
                    f"{f['dynamic_heldout_catastrophe_rate']:.2f}"
                ),
                flush=True,
            )
        else:
            entry["stderr_tail"] = outcome.stderr_tail
            print(
                f"[{len(runs) + 1}/{len(tasks)}] {outcome.name}: FAILED (exit {outcome.returncode})\n"
                f"    {outcome.stderr_tail}",
                flush=True,
            )
        runs.append(entry)
        out.write_text(json.dumps(result(complete=False), indent=2))

    run_all(tasks, args.jobs, report)  # type: ignore[arg-type]
    final = result(complete=True)
    out.write_text(json.dumps(final, indent=2))
    print_table(final["summary"])
    print(f"\n{len(runs)} runs in {time.time() - t0:,.0f} s; wrote {out} and the runs under {runs_dir}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
