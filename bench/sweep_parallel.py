"""Wall time of one 6-run sweep (3 seeds x 2 agents), sequential ``-m`` against ``hydra/launcher=joblib``.

    python bench/sweep_parallel.py                     # all variants -> bench/results/sweep_parallel.json
    python bench/sweep_parallel.py --variants sequential_1thread joblib   # re-measure some, keep the others

Each variant is the same ``devlearn train -m`` command a user types, timed from start to exit (process
start, every run, their evaluation), in a fresh folder, one variant after the other:

- ``sequential``: plain ``-m``; torch uses its default thread count (one per core);
- ``sequential_1thread``: plain ``-m`` with ``OMP_NUM_THREADS=1``, the per-run thread count joblib gives
  its workers, so that the comparison with ``joblib`` measures running runs side by side and nothing else;
- ``joblib``: ``hydra/launcher=joblib hydra.launcher.n_jobs=2`` (joblib's loky workers get
  cores / n_jobs = 1 thread each).

The machine is shared, so the load is recorded beside the times (``os.getloadavg`` before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from train_runs import machine_facts, versions

SWEEP = ["seed=0,1,2", "agent=developmental,ppo"]
BUDGET = [
    "agent.total_timesteps={steps}",
    "env.num_envs=4",
    "log.eval_episodes=2",
    "log.video=false",
    "log.progress_bar=false",
]
VARIANTS: dict[str, tuple[list[str], dict[str, str]]] = {  # name -> (extra overrides, extra environment)
    "sequential": ([], {}),
    "sequential_1thread": ([], {"OMP_NUM_THREADS": "1"}),
    "joblib": (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], {}),
}


def time_sweep(extra: list[str], env: dict[str, str], steps: int) -> dict:
    """Run the sweep in a fresh folder; return its command, wall seconds, load and the runs' steps/s."""
    budget = [b.format(steps=steps) for b in BUDGET]
    command = [sys.executable, "-m", "devlearn", "train", "-m", *SWEEP, *budget, *extra]
    with tempfile.TemporaryDirectory() as cwd:
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        out = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **env})
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"sweep failed ({out.returncode}): {' '.join(command)}\n{out.stderr[-3000:]}")
        runs = [json.loads(p.read_text()) for p in Path(cwd, "runs").rglob("results.json")]
    return {
        "command": "".join(f"{k}={v} " for k, v in env.items())
        + "devlearn train -m "
        + " ".join([*SWEEP, *budget, *extra]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_seconds": round(wall, 1),
        "runs": len(runs),
        "run_train_seconds": sorted(r["train_seconds"] for r in runs),
        "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sweep_parallel.json"))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=2048, help="agent.total_timesteps of each run")
    args = parser.parse_args()
    out = Path(args.out)
    previous = json.loads(out.read_text())["sweeps"] if out.is_file() else {}
    results = {**previous, **{name: time_sweep(*VARIANTS[name], args.steps) for name in args.variants}}
    for name, r in results.items():
        print(
            f"{name:<20} {r['wall_seconds']:>7.1f} s  ({r['runs']} runs; load {r['loadavg_1m_before_after']})"
        )
    ratios = {
        f"joblib_over_{name}": round(results["joblib"]["wall_seconds"] / results[name]["wall_seconds"], 3)
        for name in ("sequential", "sequential_1thread")
        if name in results and "joblib" in results
    }
    for name, ratio in ratios.items():
        print(f"{name} = {ratio:.2f} (target <= 0.6)")
    record = {
        "machine": machine_facts("cpu"),
        "versions": versions(),
        "note": "2-core machine; loadavg before and after each sweep shows what else ran",
        "sweeps": results,
        **ratios,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
