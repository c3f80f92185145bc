"""Does memory carry a fact across an episode? Recall-v0 accuracy against the delay, per memory variant, trained with RL.

Every (delay, variant, seed) is one ``devlearn train env=recall env.kwargs.delay=D`` run of the
developmental agent with ``memory=V`` (or ``agent=recurrent_ppo``, sb3-contrib's LSTM, the baseline
of the issue), ``--jobs`` at a time, each with its thread pools capped. From each run's
``results.json`` it reads the held-out accuracy (success) of the argmax and the sampled policy
and env steps/s, and prints per delay and variant the median over seeds with the min-max.
Chance is ``1 / num_facts`` (0.25 with the default 4 facts): a variant that cannot remember step 0
scores it at best.

Results go to ``bench/results/memory-<tag>.json`` (each run's results.json under ``memory-<tag>-runs/``).

    python bench/memory.py                                   # delays 20, 200; every variant; 3 seeds
    python bench/memory.py --delays 20 200 1000 --steps 200000 --jobs 16 --tag h100host
    python bench/memory.py --gym-id MiniGrid-MemoryS7-v0 --tag memorys7   # a public memory task (MiniGrid)
    python bench/memory.py --quick                           # a smoke run
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from train_runs import RunOutcome, machine_facts, run_all, run_train, spread, train_command, versions

RESULTS = Path(__file__).parent / "results"
VARIANTS = ["none", "window", "ssm", "retrieval", "hybrid", "recurrent_ppo"]


def overrides(variant: str, delay: int, extra: list[str], gym_id: str | None = None) -> tuple[str, list[str]]:
    """The agent and the overrides of one run (``recurrent_ppo`` is an agent, the rest are memories)."""
    env = [f"env.id={gym_id}"] if gym_id else [f"env.kwargs.delay={delay}"]
    if variant == "recurrent_ppo":
        return "recurrent_ppo", env
    return "developmental", [*env, f"memory={variant}", *extra]


def figures(results: dict[str, Any]) -> dict[str, float]:
    """Held-out success (an env with no held-out split, such as a plain Gymnasium id: its evaluation episodes)."""
    split = "heldout" if "heldout" in results["eval"] else "train"
    return {
        "heldout_argmax": results["eval"][split]["success"],
        "heldout_sampled": results["eval_sampled"][split]["success"],
        "train_last100": results["training"]["last100_success_rate"],
        "env_steps_per_second": results["env_steps_per_second"],
    }


def summarize(results: dict[str, dict[str, Any]], delays: list[int], variants: list[str]) -> dict[str, Any]:
    """Per delay and variant, the spread over seeds of each figure; ``results``: run name -> results.json."""
    table: dict[str, Any] = {}
    for delay in delays:
        table[str(delay)] = {}
        for variant in variants:
            runs = [figures(r) for name, r in results.items() if name.startswith(f"d{delay}-{variant}-")]
            keys = ("heldout_argmax", "heldout_sampled", "train_last100", "env_steps_per_second")
            table[str(delay)][variant] = {k: spread([r[k] for r in runs]) for k in keys}
    return table


def print_table(table: dict[str, Any]) -> None:
    def cell(s: dict[str, Any], fmt: str) -> str:
        if not s["n"]:
            return "-"
        m = fmt.format(s["median"])
        return m if s["n"] == 1 else f"{m} [{fmt.format(s['min'])}-{fmt.format(s['max'])}]"

    heads = ("held-out argmax", "held-out sampled", "train last100", "env steps/s")
    print(f"\n{'delay':>7} {'variant':<14}{'seeds':>6}" + "".join(f"{h:>22}" for h in heads))
    for delay, by_variant in table.items():
        for variant, s in by_variant.items():
            cells = [
                cell(s[k], f)
                for k, f in (
                    ("heldout_argmax", "{:.2f}"),
                    ("heldout_sampled", "{:.2f}"),
                    ("train_last100", "{:.2f}"),
                    ("env_steps_per_second", "{:,.0f}"),
                )
            ]
            print(
                f"{delay:>7} {variant:<14}{s['heldout_argmax']['n']:>6}" + "".join(f"{c:>22}" for c in cells)
            )
    print("(success = the answer named the fact; median over seeds [min-max]; chance 0.25 with 4 facts)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--delays", type=int, nargs="+", default=[20, 200])
    p.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="threads per run")
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tag", default="cpu")
    p.add_argument(
        "--override", action="append", default=[], help="extra override for the developmental runs"
    )
    p.add_argument("--quick", action="store_true", help="1 seed, 2 variants, 2,048 steps, not saved")
    p.add_argument(
        "--from-runs",
        action="store_true",
        help="no training: tabulate memory-<tag>-runs/ (a cut-short sweep)",
    )
    p.add_argument(
        "--gym-id",
        default=None,
        help="train on this Gymnasium id (env=gym) instead of Recall, e.g. MiniGrid-MemoryS7-v0",
    )
    args = p.parse_args()
    if args.from_runs:
        found = {
            f.stem: json.loads(f.read_text())
            for f in sorted((RESULTS / f"memory-{args.tag}-runs").glob("*.json"))
        }
        print_table(summarize(found, args.delays, args.variants))
        return
    if args.gym_id:  # one "delay": the env's own
        args.delays = [0]
    if args.quick:
        args.delays, args.variants, args.seeds, args.steps, args.eval_episodes = (
            [5],
            ["window", "hybrid"],
            1,
            2048,
            4,
        )

    root = Path(tempfile.mkdtemp(prefix="devlearn-memory-"))
    tasks = []
    for delay in args.delays:
        for variant in args.variants:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                name = f"d{delay}-{variant}-{seed}"
                agent, extra = overrides(variant, delay, args.override, args.gym_id)
                command = train_command(
                    "gym" if args.gym_id else "recall",
                    agent,
                    seed,
                    args.steps,
                    root / name,
                    args.device,
                    args.eval_episodes,
                    extra,
                )
                tasks.append((name, partial(run_train, name, command, root / name, args.threads)))

    runs_dir = RESULTS / f"memory-{args.tag}-runs"
    if not args.quick:  # each run's results.json as it finishes: a sweep cut short keeps what it did
        runs_dir.mkdir(parents=True, exist_ok=True)

    def report(o: RunOutcome) -> None:
        if o.ok and not args.quick:
            (runs_dir / f"{o.name}.json").write_text(json.dumps(o.results, indent=1))
        if o.ok:
            f = figures(o.results)
            print(
                f"{o.name}: held-out {f['heldout_argmax']:.2f} argmax / {f['heldout_sampled']:.2f} sampled, "
                f"{f['env_steps_per_second']:,.0f} steps/s, {o.wall_seconds:.0f} s",
                flush=True,
            )
        else:
            print(f"{o.name}: FAILED (exit {o.returncode})\n{o.stderr_tail}", flush=True)

    t0 = time.time()
    outcomes = run_all(tasks, args.jobs, report)
    table = summarize({o.name: o.results for o in outcomes if o.ok}, args.delays, args.variants)
    print_table(table)
    if args.quick:
        shutil.rmtree(root, ignore_errors=True)
        return
    out = {
        "benchmark": "memory", "env": args.gym_id or "recall", "steps": args.steps, "seeds": args.seeds, "delays": args.delays,
        "overrides": args.override, "wall_seconds": round(time.time() - t0, 1),
        "machine": machine_facts(args.device), "versions": versions(), "table": table,
    }  # fmt: skip
    path = RESULTS / f"memory-{args.tag}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
