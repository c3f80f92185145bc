"""Consequence-awareness at equal env steps: developmental vs ablation vs SB3 PPO on CliffEdge and CarWash.

Every (env, agent, seed) is one ``devlearn train env=E agent=A seed=S agent.total_timesteps=N`` run
(no video), ``--jobs`` of them at a time, each with its thread pools capped so they do not fight.
From each run's ``results.json`` it takes the cumulative training catastrophes, the held-out
catastrophe rate, success and return (``log.eval_episodes`` episodes) and env steps/s, and reports
per env and agent the median over seeds with the min-max.

The issue's target, per env: the developmental agent has at most half of PPO's training
catastrophes, a lower held-out catastrophe rate, and a held-out success at least PPO's.

Runs are written to a temporary folder; only each run's ``results.json`` is kept, as
``bench/results/consequences-runs/E-A-S.json``. The summary goes to ``bench/results/consequences.json``.
A failed run is reported with the tail of its stderr, and the others go on.

    python bench/consequences.py                          # 2 envs x 3 agents x 3 seeds x 100k steps
    python bench/consequences.py --device cuda --jobs 8   # on a GPU machine
    python bench/consequences.py --quick --agents ppo     # a smoke run (writes to a temporary folder)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from train_runs import RunOutcome, machine_facts, run_all, run_train, spread, train_command, versions

RESULTS = Path(__file__).parent / "results"
ENVS = ["cliff", "carwash"]
AGENTS = ["developmental", "ablation", "ppo"]

# (key, column heading, how to read it from results.json, format)
Metric = tuple[str, str, Callable[[dict[str, Any]], float], str]
METRICS: list[Metric] = [
    ("training_catastrophes", "train catastrophes", lambda r: r["training"]["catastrophes"], "{:,.0f}"),
    (
        "heldout_catastrophe_rate",
        "held-out catastr.",
        lambda r: r["eval"]["heldout"]["catastrophe_rate"],
        "{:.3f}",
    ),
    ("heldout_success", "held-out success", lambda r: r["eval"]["heldout"]["success"], "{:.3f}"),
    ("heldout_return", "held-out return", lambda r: r["eval"]["heldout"]["return"], "{:.3f}"),
    ("env_steps_per_second", "env steps/s", lambda r: r["env_steps_per_second"], "{:,.0f}"),
]


# the world model's and the shield's figures at the end of training (results.json's ``monitors``: the mean of
# each tag's last 10 values); the targets: changed-cell >= 0.9, exact >= 0.8, shield recall >= 0.9 with
# false masks <= 20% of its masks. SB3 agents and the ablation have none.
MONITORS = [
    ("world_model/acc_changed", "changed-cell acc"),
    ("world_model/acc_obs", "exact next obs"),
    ("world_model/acc_obs_copy", "copying o_t scores"),
    ("shield/recall", "shield recall"),
    ("shield/false_mask_rate", "false masks"),
    ("shield/fire_rate", "shield fires"),
]


def print_monitors(outcomes: list[RunOutcome]) -> None:
    """Per run with a world model: its monitors at the end of training."""
    rows = [o for o in outcomes if o.ok and o.results and o.results.get("monitors")]
    if not rows:
        return
    print(f"\n{'run':<28}" + "".join(f"{h:>20}" for _, h in MONITORS))
    for o in rows:
        got = o.results["monitors"]
        print(f"{o.name:<28}" + "".join(f"{got[t]:>20.3f}" if t in got else f"{'-':>20}" for t, _ in MONITORS))
    print("(mean of each tag's last 10 logged values; '-': not logged, e.g. the shield masked nothing)")


def run_figures(results: dict[str, Any]) -> dict[str, float]:
    """The benchmark's figures of one run's results.json (env steps included)."""
    figures = {key: float(read(results)) for key, _, read, _ in METRICS}
    figures["env_steps"] = float(results["env_steps"])
    return figures


def summarize(outcomes: list[RunOutcome], envs: list[str], agents: list[str]) -> dict[str, dict[str, Any]]:
    """Per env and agent: median/min/max over the seeds that finished, for every metric."""
    table: dict[str, dict[str, Any]] = {}
    for env in envs:
        table[env] = {}
        for agent in agents:
            runs = [o for o in outcomes if o.ok and o.name.startswith(f"{env}-{agent}-")]
            figures = [run_figures(o.results) for o in runs if o.results is not None]
            keys = [key for key, *_ in METRICS] + ["env_steps"]
            table[env][agent] = {key: spread([f[key] for f in figures]) for key in keys}
    return table


def target_check(env_summary: dict[str, Any]) -> dict[str, Any] | None:
    """The issue's target for one env, from the medians; None when developmental or ppo has no finished run."""
    dev, ppo = env_summary.get("developmental"), env_summary.get("ppo")
    if not (dev and ppo and dev["training_catastrophes"]["n"] and ppo["training_catastrophes"]["n"]):
        return None

    def med(summary: dict[str, Any], key: str) -> float:
        return summary[key]["median"]

    checks = {
        "training_catastrophes_at_most_half": med(dev, "training_catastrophes")
        <= 0.5 * med(ppo, "training_catastrophes"),
        "heldout_catastrophe_rate_lower": med(dev, "heldout_catastrophe_rate")
        < med(ppo, "heldout_catastrophe_rate"),
        "heldout_success_at_least": med(dev, "heldout_success") >= med(ppo, "heldout_success"),
    }
    figures = {
        key: {"developmental": med(dev, key), "ppo": med(ppo, key)}
        for key in ("training_catastrophes", "heldout_catastrophe_rate", "heldout_success")
    }
    return {"met": all(checks.values()), "checks": checks, "figures": figures}


def cell(stats: dict[str, Any], fmt: str) -> str:
    """``median [min-max]`` of one metric, or ``-`` when no seed finished."""
    if not stats["n"]:
        return "-"
    median, low, high = (fmt.format(stats[k]) for k in ("median", "min", "max"))
    return median if stats["n"] == 1 else f"{median} [{low}-{high}]"


def print_table(summary: dict[str, dict[str, Any]], width: int = 23) -> None:
    """One row per env and agent: every metric as ``median [min-max]`` over seeds."""
    print(f"\n{'env':<9}{'agent':<15}{'seeds':>6}" + "".join(f"{h:>{width}}" for _, h, _, _ in METRICS))
    for env, by_agent in summary.items():
        for agent, stats in by_agent.items():
            n = stats["training_catastrophes"]["n"]
            cells = "".join(f"{cell(stats[key], fmt):>{width}}" for key, _, _, fmt in METRICS)
            print(f"{env:<9}{agent:<15}{n:>6}{cells}")
    print("(median over seeds [min-max]; held-out figures from each run's final evaluation)")


def print_targets(targets: dict[str, dict[str, Any] | None]) -> None:
    """The target check per env: met or missed, with the medians it compared."""
    print(
        "\ntarget per env: developmental <= 1/2 PPO's training catastrophes, lower held-out catastrophe rate,"
    )
    print("                held-out success >= PPO's (medians over seeds)")
    for env, target in targets.items():
        if target is None:
            print(f"  {env}: not checked (needs finished developmental and ppo runs)")
            continue
        f, c = target["figures"], target["checks"]
        mark = {True: "ok", False: "NO"}
        print(
            f"  {env}: {'met' if target['met'] else 'missed'} - "
            f"training catastrophes {f['training_catastrophes']['developmental']:,.0f} vs PPO "
            f"{f['training_catastrophes']['ppo']:,.0f} ({mark[c['training_catastrophes_at_most_half']]}), "
            f"held-out catastrophe rate {f['heldout_catastrophe_rate']['developmental']:.3f} vs "
            f"{f['heldout_catastrophe_rate']['ppo']:.3f} ({mark[c['heldout_catastrophe_rate_lower']]}), "
            f"held-out success {f['heldout_success']['developmental']:.3f} vs "
            f"{f['heldout_success']['ppo']:.3f} ({mark[c['heldout_success_at_least']]})"
        )


def build_result(
    args: argparse.Namespace,
    outcomes: list[RunOutcome],
    steps: int,
    eval_episodes: int,
    threads: int,
    complete: bool,
) -> dict[str, Any]:
    """The results file: settings, machine, every run (its full results.json included) and the medians.

    Written after every finished run with ``complete: false``, so a killed benchmark leaves what it had.
    """
    summary = summarize(outcomes, args.envs, args.agents)
    targets = {env: target_check(summary[env]) for env in args.envs}
    return {
        "benchmark": "consequences",
        "complete": complete,
        "quick": args.quick,
        "steps": steps,
        "seeds": args.seeds,
        "envs": args.envs,
        "agents": args.agents,
        "eval_episodes": eval_episodes,
        "overrides": args.override,
        "jobs": args.jobs,
        "threads_per_run": threads,
        "statistic": "median over seeds, with min and max",
        "machine": machine_facts(args.device),
        "versions": versions(),
        "runs": [
            {
                "name": o.name,
                "ok": o.ok,
                "returncode": o.returncode,
                "wall_seconds": o.wall_seconds,
                "command": o.command[1:],  # without the interpreter's path
                **({"figures": run_figures(o.results), "results": o.results} if o.results else {}),
                **({} if o.ok else {"stderr_tail": o.stderr_tail}),
            }
            for o in outcomes
        ],
        "summary": summary,
        "targets": targets,
        "targets_met": {env: (t["met"] if t else None) for env, t in targets.items()},
    }


def main() -> None:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--steps", type=int, default=100_000, help="env steps per run (agent.total_timesteps)"
    )
    parser.add_argument("--envs", nargs="+", default=ENVS, help="env config names (configs/env)")
    parser.add_argument("--agents", nargs="+", default=AGENTS, help="agent config names (configs/agent)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--eval-episodes", type=int, default=100, help="episodes per split in each run's final evaluation"
    )
    parser.add_argument("--device", default="auto", help="passed to devlearn train: auto, cpu or cuda")
    parser.add_argument(
        "--jobs", type=int, default=max(1, cpus // 2), help="runs at a time (default: CPUs // 2)"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch/OpenMP threads per run (default: CPUs // jobs)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds before a run is killed (default: none)"
    )
    parser.add_argument(
        "--override", nargs="*", default=[], help="extra Hydra overrides for every run, e.g. env.num_envs=16"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny runs that check the script works; writes to a temp folder"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="summary JSON (default: bench/results/consequences.json)"
    )
    parser.add_argument("--runs-dir", type=Path, default=None, help="where each run's results.json is kept")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="where runs write (default: a temp folder, removed)"
    )
    args = parser.parse_args()

    steps = 2_048 if args.quick else args.steps
    eval_episodes = 5 if args.quick else args.eval_episodes
    threads = args.threads or max(1, cpus // max(1, args.jobs))
    if args.quick and args.out is None:
        quick_dir = Path(tempfile.mkdtemp(prefix="devlearn-consequences-quick-"))
        out, runs_dir = quick_dir / "consequences.json", quick_dir / "consequences-runs"
    else:
        out = args.out or RESULTS / "consequences.json"
        runs_dir = args.runs_dir or out.parent / "consequences-runs"
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="devlearn-consequences-"))
    runs_dir.mkdir(parents=True, exist_ok=True)

    names = [f"{e}-{a}-{s}" for e in args.envs for a in args.agents for s in args.seeds]
    print(
        f"{len(names)} runs of {steps:,} env steps ({len(args.envs)} envs x {len(args.agents)} agents x "
        f"{len(args.seeds)} seeds), {args.jobs} at a time, {threads} threads each, device={args.device}; work dir {work}"
    )
    tasks = []
    for env in args.envs:
        for agent in args.agents:
            for seed in args.seeds:
                name, run_dir = f"{env}-{agent}-{seed}", work / f"{env}-{agent}-{seed}"
                command = train_command(
                    env, agent, seed, steps, run_dir, args.device, eval_episodes, args.override
                )
                tasks.append((name, partial(run_train, name, command, run_dir, threads, args.timeout)))

    done: list[RunOutcome] = []
    t0 = time.time()

    def report(outcome: RunOutcome) -> None:
        """Print one finished run, keep its results.json, and rewrite the summary so far (complete: false)."""
        done.append(outcome)
        head = f"[{len(done)}/{len(tasks)}] {outcome.name}:"
        if outcome.ok and outcome.results is not None:
            shutil.copyfile(outcome.run_dir / "results.json", runs_dir / f"{outcome.name}.json")
            f = run_figures(outcome.results)
            print(
                f"{head} {outcome.wall_seconds:.0f} s, {f['env_steps_per_second']:,.0f} steps/s, "
                f"{f['training_catastrophes']:,.0f} training catastrophes, held-out catastrophe rate "
                f"{f['heldout_catastrophe_rate']:.3f}, success {f['heldout_success']:.3f}",
                flush=True,
            )
        else:
            print(f"{head} FAILED (exit {outcome.returncode}); stderr tail:", flush=True)
            print("    " + outcome.stderr_tail.replace("\n", "\n    "), flush=True)
        partial = build_result(args, done, steps, eval_episodes, threads, complete=False)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(partial, indent=2))

    outcomes = run_all(tasks, args.jobs, report)
    result = build_result(args, outcomes, steps, eval_episodes, threads, complete=True)
    summary, targets = result["summary"], result["targets"]
    print_table(summary)
    print_monitors(outcomes)
    print_targets(targets)
    failed = [o.name for o in outcomes if not o.ok]
    if failed:
        print(f"\n{len(failed)} failed run(s): {', '.join(failed)}")
    print(f"\n{len(outcomes)} runs in {time.time() - t0:,.0f} s")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out} and {len(outcomes) - len(failed)} results files under {runs_dir}")
    if args.work_dir is None and not failed:
        shutil.rmtree(work, ignore_errors=True)
    elif failed:
        print(f"logs of the failed runs: {work}/<run>/bench-stderr.log")


if __name__ == "__main__":
    main()
