"""Grokking benchmark: steps to 99% validation accuracy per schedule, against constant-LR AdamW (wd 1.0).

For every task (operation, modulus, train fraction, split) and schedule, ``--seeds`` seeds train full-batch
through ``devlearn.app.grok.train_seed`` with the config ``devlearn grok`` composes (``configs/grok.yaml`` plus
``schedule=<name>``, so the benchmark measures exactly what the command runs). Baseline: ``schedule=constant``
(AdamW, lr 1e-3, weight decay 1.0, betas 0.9/0.98: the usual grokking setting), in the same run, same seeds.

Per task and schedule it reports the median over seeds of the steps to reach the target (a seed that does not
reach it within the budget counts as infinitely slow), the final validation accuracy, the ratio
constant-median / schedule-median (> 1: the schedule is faster), and the seeds' ensemble accuracy against the
mean member. Each seed stops once it reaches the target (``stop_at_target``) unless ``--no-stop``; its final
accuracy is then the accuracy at that step. Curves (seed 0) go to ``docs/grokking-*.png``, results to
``bench/results/grokking-<tag>.json`` (tag: the device unless ``--tag``), and one line per finished seed, as it
finishes, to ``bench/results/grokking-<tag>.runs.jsonl``.

    python bench/grokking.py                          # the reduced CPU grid (REDUCED: d_model 64, 1,000 steps)
    python bench/grokking.py --device cuda --full     # the full grid on a GPU (d_model 128, 20,000 steps)
    python bench/grokking.py --device cuda --full --only add-p97-frac0.5 mul-p97-frac0.5   # part of it
    python bench/grokking.py --quick                  # a smoke run (p=23, 300 steps; writes to a temporary folder)
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path
from typing import Any

from train_runs import machine_facts, versions

from devlearn.app.grok import summary
from devlearn.logging.plot import Panel, Series, line_chart
from devlearn.schedules import SCHEDULES

HERE = Path(__file__).parent
RESULTS = HERE / "results"
DOCS = HERE.parent / "docs"
BASELINE = "constant"

# (op, p, train_fraction, split)
FULL = [(op, p, frac, "random") for op in ("add", "mul") for p in (97, 113) for frac in (0.3, 0.5)] + [
    (op, 97, 0.5, "operand") for op in ("add", "mul")
]
# the 2-core CPU: the target task only, a smaller model (d_model 64), 1,000 steps; ~40 min with 3 workers on a shared machine
REDUCED = [("add", 97, 0.5, "random")]
REDUCED_OVERRIDES = ["d_model=64", "eval_every=25"]
QUICK = [("add", 23, 0.5, "random")]


def compose(overrides: list[str]) -> Any:
    """The config ``devlearn grok <overrides>`` would run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from devlearn.config import register_configs

    register_configs()
    with initialize_config_module("devlearn.configs", version_base="1.3"):
        return hydra_compose("grok", overrides=overrides)


def run_one(overrides: list[str], seed: int, device: str, threads: int) -> dict[str, Any]:
    """One seed of one (task, schedule) in a worker process."""
    import torch

    from devlearn.app.grok import train_seed, validate_grok

    torch.set_num_threads(threads)
    cfg = compose(overrides)
    validate_grok(cfg)
    return train_seed(cfg, seed, progress=cfg.progress_bar, device=device)


def median_steps(members: list[dict[str, Any]]) -> float:
    steps = [m["steps_to_target"] if m["steps_to_target"] is not None else math.inf for m in members]
    return statistics.median(steps)


def task_name(task: tuple) -> str:
    op, p, frac, split = task
    return f"{op}-p{p}-frac{frac}" + ("" if split == "random" else f"-{split}")


def plot_task(task: tuple, by_schedule: dict[str, list[dict[str, Any]]], docs: Path) -> Path:
    """Train (dashed) and validation (solid) accuracy, and validation loss, of seed 0 per schedule.

    (The schedules themselves are drawn by ``plot_schedules``: sampled every ``eval_every`` steps, short
    peaks would fall between the points.)
    """
    acc = Panel(
        f"{task_name(task)}: accuracy (train dashed, val solid)", ylabel="accuracy", logx=True, ylim=(0, 1)
    )
    loss = Panel("validation loss", ylabel="nats", logx=True)
    for i, (name, members) in enumerate(by_schedule.items()):
        c = members[0]["curve"]
        acc.series.append(Series(name, c["step"], c["val_acc"], i))
        acc.series.append(Series(name, c["step"], c["train_acc"], i, dashed=True))
        loss.series.append(Series(name, c["step"], c["val_loss"], i))
    return line_chart([acc, loss], docs / f"grokking-{task_name(task)}.png")


def plot_schedules(common: list[str], docs: Path, steps: int = 800) -> Path:
    """LR and weight-decay multipliers of every schedule over the first ``steps`` steps, as ``devlearn grok`` sets them."""
    from devlearn.schedules import schedule_value

    panels = []
    for name in SCHEDULES:
        cfg = compose([f"schedule={name}", *common])
        # cosine spans the whole budget; the cyclical ones repeat, so their first cycles say it all
        xs = (
            list(range(0, cfg.steps + 1, max(1, cfg.steps // steps)))
            if name == "cosine"
            else list(range(steps))
        )
        values = [schedule_value(cfg.schedule, x, cfg.steps) for x in xs]
        panel = Panel(f"schedule={name}", ylabel="x base", ylim=(0, 10.5))
        panel.series.append(Series("LR", xs, [v.lr for v in values], 0))
        panel.series.append(Series("weight decay", xs, [v.weight_decay for v in values], 3))
        panels.append(panel)
    return line_chart(panels, docs / "schedules.png", panel_size=(400, 300))


def markdown(results: dict[str, Any]) -> str:
    """The table for docs/benchmarks.md."""
    lines = [
        "| task | schedule | steps to 99% val (per seed) | median | × constant | final val acc (mean) | ensemble gain |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        seeds = ", ".join(str(s["steps_to_target"]) if s["steps_to_target"] else "—" for s in row["seeds"])
        median = row["median_steps_to_target"]
        speedup = row["speedup_vs_constant"]
        lines.append(
            f"| {row['task']} | {row['schedule']} | {seeds} | {median if median is not None else 'not within budget'} | "
            f"{'—' if speedup is None else f'{speedup:.2f}'} | {row['mean_final_val_acc']:.3f} | "
            f"{row['ensemble']['gain']:+.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--full", action="store_true", help="the full grid: p 97 and 113, both ops, both fractions"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: p=23, 300 steps, temporary output")
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=SCHEDULES)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--steps", type=int, default=None, help="budget per seed (default 20000 full, 6000 reduced)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="parallel processes (default: 2 cpu, 12 cuda)"
    )
    parser.add_argument("--no-stop", action="store_true", help="train every seed for the whole budget")
    parser.add_argument("--set", nargs="*", default=[], help="extra devlearn grok overrides, e.g. d_model=64")
    parser.add_argument("--tag", default=None, help="results file suffix (default: the device)")
    parser.add_argument("--progress", action="store_true", help="each worker prints its progress line")
    parser.add_argument("--only", nargs="+", default=None, help="run only these tasks, e.g. add-p97-frac0.5")
    args = parser.parse_args()

    tasks = QUICK if args.quick else FULL if args.full else REDUCED
    if args.only:
        unknown = sorted(set(args.only) - {task_name(t) for t in tasks})
        if unknown:
            parser.error(
                f"--only {' '.join(unknown)}: no such task; the grid has {', '.join(map(task_name, tasks))}"
            )
        tasks = [t for t in tasks if task_name(t) in args.only]
    steps = args.steps or (300 if args.quick else 20_000 if args.full else 1_000)
    workers = args.workers or (3 if args.device == "cpu" else 12)
    threads = 1  # the workers are the parallelism: one intra-op thread each
    out_dir = Path(tempfile.mkdtemp()) if args.quick else RESULTS
    docs = out_dir if args.quick else DOCS
    preset = ["d_model=64", "eval_every=20"] if args.quick else [] if args.full else REDUCED_OVERRIDES
    given = {o.split("=")[0] for o in args.set}
    common = [
        f"steps={steps}",
        f"stop_at_target={not args.no_stop}",
        f"progress_bar={args.progress}",
        "tensorboard=false",
        f"device={args.device}",
        *(o for o in preset if o.split("=")[0] not in given),  # --set wins over the preset
        *args.set,
    ]

    jobs = []
    for task in tasks:
        op, p, frac, split = task
        for name in args.schedules:
            overrides = [
                f"schedule={name}",
                f"op={op}",
                f"p={p}",
                f"train_fraction={frac}",
                f"split={split}",
                *common,
            ]
            for seed in range(args.seeds):
                jobs.append((task, name, overrides, seed))
    print(
        f"{len(jobs)} runs ({len(tasks)} tasks x {len(args.schedules)} schedules x {args.seeds} seeds), "
        f"budget {steps:,} steps, {workers} workers on {args.device}",
        flush=True,
    )

    tag = args.tag or args.device
    # one line per finished seed, as it finishes: what a run cut short (a time limit) still leaves behind
    runs_log = out_dir / f"grokking-{tag}.runs.jsonl"
    runs_log.write_text("")
    t0 = time.time()
    done: dict[tuple, dict[str, list]] = {
        task: {name: [None] * args.seeds for name in args.schedules} for task in tasks
    }
    # spawn: a forked child must not inherit CUDA state, and this way CPU and GPU runs start alike
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {
            pool.submit(run_one, o, seed, args.device, threads): (task, name, seed)
            for task, name, o, seed in jobs
        }
        for future in as_completed(futures):
            task, name, seed = futures[future]
            r = future.result()
            done[task][name][seed] = r
            keys = ("steps_to_target", "final_val_acc", "final_train_acc", "steps", "seconds")
            line = {"task": task_name(task), "schedule": name, "seed": seed, **{k: r[k] for k in keys}}
            with runs_log.open("a") as f:
                f.write(json.dumps(line) + "\n")
            print(
                f"{task_name(task):<24} {name:<15} seed {seed}: steps to target {r['steps_to_target']}, "
                f"val acc {r['final_val_acc']:.3f} after {r['steps']} steps ({r['seconds']:.0f} s) "
                f"[{time.time() - t0:.0f} s]",
                flush=True,
            )
    wall = time.time() - t0

    base_cfg = compose(common)
    rows = []
    for task in tasks:
        base = median_steps(done[task][BASELINE]) if BASELINE in done[task] else None
        for name, members in done[task].items():
            cfg = compose(
                [
                    f"schedule={name}",
                    f"op={task[0]}",
                    f"p={task[1]}",
                    f"train_fraction={task[2]}",
                    f"split={task[3]}",
                    *common,
                ]
            )
            row = {"task": task_name(task), **summary(cfg, members)}
            med = median_steps(members)
            row["speedup_vs_constant"] = (
                None if base is None or math.isinf(med) else (math.inf if math.isinf(base) else base / med)
            )
            if row["speedup_vs_constant"] is not None and math.isinf(row["speedup_vs_constant"]):
                row["speedup_vs_constant"] = None
                row["note"] = (
                    "constant did not reach the target within the budget: the speed-up is > budget / median"
                )
            row["mean_final_val_acc"] = statistics.mean(m["final_val_acc"] for m in members)
            curve = members[0]["curve"]  # seed 0's curve, at most ~200 points, so plots can be redrawn
            every = max(1, len(curve["step"]) // 200)
            row["curve_seed0"] = {k: v[::every] for k, v in curve.items()}
            row["schedule_config"] = {k: v for k, v in dict(cfg.schedule).items()}
            rows.append(row)
        plot_task(task, {n: done[task][n] for n in args.schedules}, docs)
    plot_schedules(common, docs)
    results = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": machine_facts(args.device),
        "versions": versions(),
        "command": "python bench/grokking.py " + " ".join(sys.argv[1:]),
        "budget_steps": steps,
        "seeds": args.seeds,
        "wall_seconds": round(wall, 1),
        "model": {
            k: base_cfg[k]
            for k in (
                "d_model",
                "n_layers",
                "n_heads",
                "init_scale",
                "lr",
                "weight_decay",
                "beta1",
                "beta2",
                "eval_every",
            )
        },
        "rows": rows,
    }
    path = out_dir / f"grokking-{tag}.json"
    path.write_text(json.dumps(results, indent=2))
    print(markdown(results))
    print(f"wall time {wall:.0f} s; wrote {path} and the curves in {docs}")


if __name__ == "__main__":
    main()
