"""Consequence-awareness at equal env steps: does imagining "what happens if I do this?" change what the agent does?

Rows (every row gets the same episodic novelty bonus, ``agent.intrinsic=novelty agent.intrinsic_coef=0.001``):

* ``developmental``: the developmental agent as it ships (multi-step imagination shields and teaches);
* ``developmental-no-imagination``: the same agent imagining one step and learning nothing from it (the agent
  before imagination: ``agent.imagine.horizon=1 agent.imagine.train=false agent.imagine.replay=0``);
* ``ablation``: the same core and PPO with no world model;
* ``ppo``: Stable-Baselines3 PPO; ``ppo-lagrangian``: PPO-Lagrangian on the same ``info["cost"]``.

Every (env, row, seed) is one ``devlearn train`` run (no video), ``--jobs`` of them at a time, each with its
thread pools capped. From each run's ``results.json``: the training catastrophes (whole run), the training-layout
and held-out success and catastrophe rate (``log.eval_episodes`` episodes, argmax), env steps/s, and the shield's
figures at the end of training. Per env and row: the median over seeds with its percentile-bootstrap 95% CI.

Results: ``bench/results/consequences-imagination.json``, ``{"envs": {ENV_ID: {ROW: {"seeds": N,
"train_catastrophes": {"median", "ci_low", "ci_high", ...}, "train_success": ..., "heldout_success": ...,
"heldout_catastrophe_rate": ..., "env_steps_per_second": ...}}}, "targets": ..., "runs": [...]}``, rewritten after
every finished run (``complete: false`` until the last).

    python bench/consequences.py --seeds 0 1 2 3 4 5 6 7 8 9 --jobs 16 --threads 1   # a 16-core host
    python bench/consequences.py --quick --rows developmental ppo                     # a smoke run
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
NOVELTY = ["agent.intrinsic=novelty", "agent.intrinsic_coef=0.001"]  # the same bonus for every row
# row -> (agent config, its overrides)
ROWS: dict[str, tuple[str, list[str]]] = {
    "developmental": ("developmental", []),
    "developmental-no-imagination": (
        "developmental",
        ["agent.imagine.horizon=1", "agent.imagine.train=false", "agent.imagine.replay=0"],
    ),
    "ablation": ("ablation", []),
    "ppo": ("ppo", []),
    "ppo-lagrangian": ("ppo_lagrangian", []),
}
BASELINES = ("ablation", "ppo", "ppo-lagrangian")

# (key, column heading, how to read it from results.json, format)
Metric = tuple[str, str, Callable[[dict[str, Any]], float], str]
METRICS: list[Metric] = [
    ("train_catastrophes", "train catastrophes", lambda r: r["training"]["catastrophes"], "{:,.0f}"),
    ("train_success", "train success", lambda r: r["eval"]["train"]["success"], "{:.2f}"),
    ("heldout_success", "held-out success", lambda r: r["eval"]["heldout"]["success"], "{:.2f}"),
    ("heldout_catastrophe_rate", "held-out catastr.", lambda r: r["eval"]["heldout"]["catastrophe_rate"], "{:.3f}"),
    ("env_steps_per_second", "env steps/s", lambda r: r["env_steps_per_second"], "{:,.0f}"),
]


# the world model's and the shield's figures at the end of training (results.json's ``monitors``: the mean of
# each tag's last 10 values); the targets: changed-cell >= 0.9, exact >= 0.8, shield recall >= 0.9 with
# false masks <= 20% of its masks. SB3 agents and the ablation have none.
MONITORS = [
    ("world_model/acc_changed", "changed-cell acc"),
    ("world_model/acc_obs", "exact next obs"),
    ("shield/recall", "shield recall"),
    ("shield/precision", "shield precision"),
    ("shield/auroc", "shield AUROC"),
    ("shield/fire_rate", "shield fires"),
    ("shield/silent", "silent rollouts"),
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


def summarize(outcomes: list[RunOutcome], envs: list[str], rows: list[str]) -> dict[str, dict[str, Any]]:
    """Per env (by id) and row: the median over the seeds that finished, with its bootstrap 95% CI, per metric."""
    table: dict[str, dict[str, Any]] = {}
    for env in envs:
        runs_of_env = [o for o in outcomes if o.ok and o.name.startswith(f"{env}-") and o.results]
        env_id = runs_of_env[0].results["env"] if runs_of_env else env
        table[env_id] = {}
        for row in rows:
            figures = [run_figures(o.results) for o in runs_of_env if o.name.rsplit("-", 1)[0] == f"{env}-{row}"]
            keys = [key for key, *_ in METRICS] + ["env_steps"]
            table[env_id][row] = {"seeds": len(figures), **{key: spread([f[key] for f in figures]) for key in keys}}
    return table


def separated_below(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether ``a``'s median CI lies wholly below ``b``'s."""
    return a["n"] > 0 and b["n"] > 0 and a["ci_high"] < b["ci_low"]


def target_check(env_id: str, rows: dict[str, Any]) -> dict[str, Any] | None:
    """The issue's targets for one env, from the medians and their CIs; None without the developmental row."""
    dev = rows.get("developmental")
    if not dev or not dev["seeds"]:
        return None
    med = lambda row, key: rows[row][key]["median"]  # noqa: E731
    have = [b for b in BASELINES if b in rows and rows[b]["seeds"]]
    checks: dict[str, bool] = {"every_seed_learns": dev["train_success"]["min"] >= 0.9}
    for base, factor in (("ablation", 0.2), ("ppo-lagrangian", 0.5)):
        if base in have:
            checks[f"train_catastrophes_at_most_{factor}x_{base}"] = med("developmental", "train_catastrophes") <= (
                factor * med(base, "train_catastrophes")
            ) and separated_below(dev["train_catastrophes"], rows[base]["train_catastrophes"])
    if "ablation" in have:
        checks["train_success_at_least_ablation"] = med("developmental", "train_success") >= med("ablation", "train_success")
    if "CliffEdge" in env_id:
        checks["heldout_catastrophe_rate_at_most_0.02"] = med("developmental", "heldout_catastrophe_rate") <= 0.02
        if have:
            best = max(med(b, "heldout_success") for b in have)
            checks["heldout_success_at_least_best_baseline"] = med("developmental", "heldout_success") >= best
    if "CarWash" in env_id and have:
        checks["heldout_success_above_every_baseline_separated"] = all(
            separated_below(rows[b]["heldout_success"], dev["heldout_success"]) for b in have
        )
    return {"met": all(checks.values()), "checks": checks}


def cell(stats: dict[str, Any], fmt: str) -> str:
    """``median [min-max]`` of one metric, or ``-`` when no seed finished."""
    if not stats["n"]:
        return "-"
    median, low, high = (fmt.format(stats[k]) for k in ("median", "min", "max"))
    return median if stats["n"] == 1 else f"{median} [{low}-{high}]"


def print_table(summary: dict[str, dict[str, Any]], width: int = 24) -> None:
    """One row per env and row: every metric as ``median [95% CI]`` over seeds."""
    print(f"\n{'env':<24}{'row':<30}{'seeds':>6}" + "".join(f"{h:>{width}}" for _, h, _, _ in METRICS))
    for env, by_row in summary.items():
        for row, stats in by_row.items():
            cells = "".join(f"{ci_cell(stats[key], fmt):>{width}}" for key, _, _, fmt in METRICS)
            print(f"{env:<24}{row:<30}{stats['seeds']:>6}{cells}")
    print("(median over seeds [percentile-bootstrap 95% CI]; held-out figures from each run's final evaluation)")


def ci_cell(stats: dict[str, Any], fmt: str) -> str:
    """``median [ci_low, ci_high]`` of one metric, or ``-`` when no seed finished."""
    if not stats["n"]:
        return "-"
    median, low, high = (fmt.format(stats[k]) for k in ("median", "ci_low", "ci_high"))
    return median if stats["n"] == 1 else f"{median} [{low}, {high}]"


def print_targets(targets: dict[str, dict[str, Any] | None]) -> None:
    """Each env's targets: met or missed, check by check."""
    for env, target in targets.items():
        if target is None:
            print(f"  {env}: not checked (no finished developmental run)")
            continue
        checks = ", ".join(f"{k} {'ok' if v else 'NO'}" for k, v in target["checks"].items())
        print(f"  {env}: {'met' if target['met'] else 'missed'}: {checks}")


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
    summary = summarize(outcomes, args.envs, args.rows)
    targets = {env_id: target_check(env_id, rows) for env_id, rows in summary.items()}
    return {
        "benchmark": "consequences",
        "complete": complete,
        "quick": args.quick,
        "steps": steps,
        "seeds": args.seeds,
        "env_configs": args.envs,
        "rows": {row: {"agent": ROWS[row][0], "overrides": [*NOVELTY, *ROWS[row][1]]} for row in args.rows},
        "eval_episodes": eval_episodes,
        "overrides": args.override,
        "jobs": args.jobs,
        "threads_per_run": threads,
        "statistic": "median over seeds, with its percentile-bootstrap 95% CI (seeds resampled)",
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
        "envs": summary,
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
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), help="which rows to run")
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
        out = args.out or RESULTS / "consequences-imagination.json"
        runs_dir = args.runs_dir or out.parent / "consequences-runs"
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="devlearn-consequences-"))
    runs_dir.mkdir(parents=True, exist_ok=True)

    names = [f"{e}-{r}-{s}" for e in args.envs for r in args.rows for s in args.seeds]
    print(
        f"{len(names)} runs of {steps:,} env steps ({len(args.envs)} envs x {len(args.rows)} rows x "
        f"{len(args.seeds)} seeds), {args.jobs} at a time, {threads} threads each, device={args.device}; work dir {work}"
    )
    tasks = []
    for env in args.envs:
        for row in args.rows:
            agent, overrides = ROWS[row]
            for seed in args.seeds:
                name, run_dir = f"{env}-{row}-{seed}", work / f"{env}-{row}-{seed}"
                extra = [*NOVELTY, *overrides, *args.override]
                command = train_command(env, agent, seed, steps, run_dir, args.device, eval_episodes, extra)
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
                f"{f['train_catastrophes']:,.0f} training catastrophes, train success {f['train_success']:.2f}, "
                f"held-out catastrophe rate "
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
    summary, targets = result["envs"], result["targets"]
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
