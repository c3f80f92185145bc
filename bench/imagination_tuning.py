"""Which imagination settings make the shield fire where danger is real, and the agent stop falling (CliffEdge).

Each variant is the developmental agent with a few ``agent.imagine.*`` / ``agent.shield_tau`` overrides, trained
``--steps`` env steps on the training layouts for each seed, one thread a run, ``--jobs`` at a time. Per run:
training catastrophes, train and held-out success and catastrophe rate, env steps/s, and the shield's figures at
the end of training (recall, precision, AUROC, fire rate, silent rollouts). Tuning reads the training layouts
only: the held-out figures are reported, never chosen on.

    python bench/imagination_tuning.py --steps 60000 --seeds 0 1 --jobs 16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

from train_runs import machine_facts, run_all, run_train, train_command, versions

NOVELTY = ["agent.intrinsic=novelty", "agent.intrinsic_coef=0.001"]
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "h3": ("developmental", []),
    "h1": ("developmental", ["agent.imagine.horizon=1"]),
    "h3-no-replay": ("developmental", ["agent.imagine.replay=0"]),
    "h3-shield-only": ("developmental", ["agent.imagine.train=false"]),
    "h3-coef5": ("developmental", ["agent.imagine.coef=5"]),
    "h3-tau0.2": ("developmental", ["agent.shield_tau=0.2"]),
    "no-imagination": (
        "developmental",
        ["agent.imagine.horizon=1", "agent.imagine.train=false", "agent.imagine.replay=0"],
    ),
    "h3-coef0.1": ("developmental", ["agent.imagine.coef=0.1"]),
    "h1-shield-only": ("developmental", ["agent.imagine.horizon=1", "agent.imagine.train=false"]),
    "ablation": ("ablation", []),
}
SHIELD = ("shield/recall", "shield/precision", "shield/auroc", "shield/fire_rate", "shield/silent", "shield/h_recall")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--env", default="cliff")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "imagination_tuning.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="devlearn-imagination-"))
    tasks = []
    for name in args.variants:
        agent, overrides = VARIANTS[name]
        for seed in args.seeds:
            run = f"{name}-{seed}"
            command = train_command(args.env, agent, seed, args.steps, work / run, "cpu", args.eval_episodes, [*NOVELTY, *overrides])
            tasks.append((run, partial(run_train, run, command, work / run, 1, None)))
    t0 = time.time()
    rows: list[dict] = []

    def report(outcome) -> None:
        row = {"run": outcome.name, "ok": outcome.ok, "seconds": round(outcome.wall_seconds)}
        if outcome.ok:
            r = outcome.results
            row |= {
                "train_catastrophes": r["training"]["catastrophes"],
                "train_success": r["eval"]["train"]["success"],
                "heldout_success": r["eval"]["heldout"]["success"],
                "heldout_catastrophe_rate": r["eval"]["heldout"]["catastrophe_rate"],
                "steps_per_s": r["env_steps_per_second"],
                **{k: r.get("monitors", {}).get(k) for k in SHIELD},
            }
        else:
            row["stderr"] = outcome.stderr_tail[-1500:]
        rows.append(row)
        print(json.dumps(row), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"steps": args.steps, "env": args.env, "machine": machine_facts("cpu"),
                                        "versions": versions(), "variants": {v: VARIANTS[v] for v in args.variants},
                                        "complete": len(rows) == len(tasks), "runs": rows}, indent=1))

    run_all(tasks, args.jobs, report)
    print(f"{len(rows)} runs in {time.time() - t0:.0f} s")
    for name in args.variants:
        got = [r for r in rows if r["run"].rsplit("-", 1)[0] == name and r["ok"]]
        if got:
            med = {k: statistics.median(r[k] for r in got) for k in ("train_catastrophes", "train_success", "heldout_success", "heldout_catastrophe_rate", "steps_per_s")}
            print(name, json.dumps(med))


if __name__ == "__main__":
    main()
