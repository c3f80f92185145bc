"""Inbox instruction violations against inbox length, for each memory variant and RecurrentPPO.

Each (variant, seed) is one ``devlearn train env=inbox`` run at the config's inbox length (200 e-mails),
then its checkpoint is evaluated (``devlearn.app.evaluate_run.evaluate_run``, argmax, held-out split)
on inboxes of each of ``--lengths`` e-mails: the instruction is shown once at step 0, so a longer inbox
asks memory to keep it for longer.

Reported per length: the share of episodes with an irreversible forbidden delete (catastrophe rate),
the cost per 1,000 e-mails (every violation costs 0.5, a forbidden delete 1.0: the violation rate,
weighted), and success (the inbox triaged with no violation and at least the env's accuracy threshold).

Variants: ``none``, ``window``, ``hybrid`` (the developmental agent with ``memory=``; ``hybrid`` stores with
``agent.memory.write=surprise``, so the instruction, the episode's first observation, is never evicted)
and ``recurrent_ppo`` (sb3-contrib's LSTM).

    python bench/inbox_lengths.py --jobs 8 --tag h100host
    python bench/inbox_lengths.py --quick        # a smoke run in a temporary folder, not saved

The results file is written once the training runs end and again after every evaluation (``"complete": false`` until
the last one), so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from train_runs import machine_facts, run_all, run_train, train_command, versions

RESULTS = Path(__file__).parent / "results"
VARIANTS = ("none", "window", "hybrid", "recurrent_ppo")


def overrides(variant: str) -> tuple[str, list[str]]:
    """The agent and its overrides for one variant."""
    if variant == "recurrent_ppo":
        return "recurrent_ppo", []
    extra = ["agent.memory.write=surprise"] if variant == "hybrid" else []
    return "developmental", [f"memory={variant}", *extra]


def evaluate(job: tuple[str, int, int, int]) -> dict[str, Any]:
    """Evaluate one trained run at one inbox length (a worker process, one thread)."""
    import torch

    torch.set_num_threads(1)
    from devlearn.app.evaluate_run import evaluate_run

    run_dir, length, episodes, seed = job
    t0 = time.time()
    got = evaluate_run(Path(run_dir), "heldout", episodes, seed=seed, env_kwargs={"num_emails": length})
    return {
        "run_dir": run_dir,
        "length": length,
        "catastrophe_rate": got["catastrophe_rate"],
        "cost_per_1000": 1000 * got["cost"] / max(got["length"], 1),
        "success": got["success"],
        "episodes": got["episodes"],
        "seconds": round(time.time() - t0, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--lengths", type=int, nargs="+", default=[100, 1_000, 10_000])
    p.add_argument("--episodes", type=int, default=8, help="held-out episodes per length")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--timeout", type=float, default=None, help="seconds before a training run is killed")
    p.add_argument("--tag", default="cpu")
    p.add_argument("--quick", action="store_true", help="2 variants, 1 seed, 1,024 steps, lengths 20 and 50")
    args = p.parse_args()
    if args.quick:
        args.variants, args.seeds, args.steps, args.lengths, args.episodes = ["window", "hybrid"], [0], 1024, [20, 50], 2
    work = Path(tempfile.mkdtemp(prefix="devlearn-inbox-lengths-"))
    t0 = time.time()
    tasks = []
    for variant in args.variants:
        for seed in args.seeds:
            agent, extra = overrides(variant)
            run_dir = work / f"{variant}-{seed}"
            command = train_command("inbox", agent, seed, args.steps, run_dir, "cpu", 2, extra)
            tasks.append((f"{variant}-{seed}", partial(run_train, f"{variant}-{seed}", command, run_dir, 1, args.timeout)))

    def report(outcome: Any) -> None:
        state = "ok" if outcome.ok else f"FAILED (exit {outcome.returncode}): {outcome.stderr_tail[-300:]}"
        print(f"trained {outcome.name}: {outcome.wall_seconds:.0f} s, {state}", flush=True)

    trained = [o for o in run_all(tasks, args.jobs, report) if o.ok]
    jobs = [(str(o.run_dir), length, args.episodes, 10_007) for o in trained for length in args.lengths]
    evals: list[dict[str, Any]] = []
    out = RESULTS / f"inbox_lengths-{args.tag}.json"

    def save(complete: bool) -> None:  # after every evaluation: a run cut short keeps what it measured
        if args.quick:
            return
        record = {"complete": complete, "args": vars(args), "machine": machine_facts("cpu"), "versions": versions(),
                  "training": {o.name: o.results for o in trained}, "evals": evals}
        out.write_text(json.dumps(record, indent=2))

    save(False)
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for got in pool.imap_unordered(evaluate, jobs):
            got["name"] = Path(got.pop("run_dir")).name
            evals.append(got)
            save(False)
            print(f"{got['name']} at {got['length']:,} e-mails: catastrophe rate {got['catastrophe_rate']:.2f}, "
                  f"cost/1000 {got['cost_per_1000']:.1f}, success {got['success']:.2f} ({got['seconds']} s)", flush=True)
    print(f"\n{'variant':<16}" + "".join(f"{f'{n:,} e-mails':>34}" for n in args.lengths))
    for variant in args.variants:
        row = f"{variant:<16}"
        for length in args.lengths:
            got = [e for e in evals if e["name"].rsplit("-", 1)[0] == variant and e["length"] == length]
            if not got:
                row += f"{'-':>34}"
                continue
            cat = statistics.median(e["catastrophe_rate"] for e in got)
            cost = statistics.median(e["cost_per_1000"] for e in got)
            ok = statistics.median(e["success"] for e in got)
            row += f"{f'{cat:.2f} / {cost:.1f} / {ok:.2f}':>34}"
        print(row)
    print("(catastrophe rate / cost per 1,000 e-mails / success; median over seeds; held-out split, argmax)")
    print(f"\n{len(evals)} evaluations in {time.time() - t0:,.0f} s")
    if not args.quick:
        save(True)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
