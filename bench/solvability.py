"""Solvable, then revealing: SB3 PPO and a random policy on CliffEdge and CarWash, every metric both ways.

For each env it trains ``devlearn train env=E agent=ppo seed=S`` (the default budget unless ``--steps``)
for every seed, several runs at a time, and reads the run's own final evaluation (``results.json``):
success, catastrophe rate and catastrophes per success on the train and held-out splits, by argmax and
by sampled actions (CarWash's held-out rows also in range / out of range). It then scores a uniform
random policy on the same splits and episodes' seeds (the "dumbest agent" baseline) with the same
evaluation code. Everything goes to one JSON file.

    python bench/solvability.py                                   # cliff + carwash, seeds 0 1 2, 100k steps
    python bench/solvability.py --envs carwash --seeds 0 --override env.kwargs.curriculum=200
    python bench/solvability.py --quick                           # a smoke run into a temporary folder
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from train_runs import machine_facts, run_all, run_train, train_command, versions

RESULTS = Path(__file__).parent / "results"
ENV_IDS = {"cliff": "devlearn/CliffEdge-v0", "carwash": "devlearn/CarWash-v0"}


def random_baseline(env_name: str, episodes: int, seed: int, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """A uniform random policy's summary per split (argmax and sampled are the same policy here)."""
    import gymnasium

    import devlearn  # noqa: F401  (registers the ids)
    from devlearn.app.evaluate import run_episodes, summarize

    rng = np.random.default_rng(seed)
    env_id = ENV_IDS[env_name]
    out = {}
    for split in ("train", "heldout"):
        probe = gymnasium.make(env_id, split=split, **env_kwargs)
        n_actions = int(probe.action_space.n)
        probe.close()

        def policy(obs: Any, start: np.ndarray, n: int = n_actions) -> np.ndarray:
            return rng.integers(n, size=len(start))

        out[split] = summarize(run_episodes(policy, env_id, episodes, seed=seed, split=split, **env_kwargs))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=list(ENV_IDS), choices=list(ENV_IDS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--steps", type=int, default=100_000, help="env steps per run (agent.total_timesteps)"
    )
    parser.add_argument("--eval-episodes", type=int, default=100, help="episodes per split and policy")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1) // 2))
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads per run (default: CPUs // jobs)"
    )
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every run")
    parser.add_argument("--tag", default="", help="a label stored in the results (e.g. the variant tried)")
    parser.add_argument("--quick", action="store_true", help="tiny runs that check the script works")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/solvability.json")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="where runs write (default: a temp folder)"
    )
    args = parser.parse_args()

    steps = 2_048 if args.quick else args.steps
    episodes = 5 if args.quick else args.eval_episodes
    out = args.out or (Path(tempfile.mkdtemp()) if args.quick else RESULTS) / "solvability.json"
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="devlearn-solvability-"))
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    tasks = []
    for env in args.envs:
        for seed in args.seeds:
            name, run_dir = f"{env}-ppo-{seed}", work / f"{env}-ppo-{seed}"
            command = train_command(env, "ppo", seed, steps, run_dir, "cpu", episodes, args.override)
            tasks.append((name, partial(run_train, name, command, run_dir, threads, None)))
    t0 = time.time()
    outcomes = run_all(
        tasks, args.jobs, lambda o: print(f"{o.name}: {'ok' if o.ok else 'FAILED'}", flush=True)
    )
    runs = []
    for o in outcomes:
        entry: dict[str, Any] = {
            "name": o.name,
            "ok": o.ok,
            # Without the interpreter's path, and with the (temporary) work folder as a placeholder.
            "command": [part.replace(str(work), "<work-dir>") for part in o.command[1:]],
            "wall_seconds": o.wall_seconds,
        }
        if o.results is not None:
            r = o.results
            entry |= {k: r[k] for k in ("env", "seed", "env_steps", "env_steps_per_second", "training")}
            entry |= {"argmax": r["eval"], "sampled": r.get("eval_sampled")}
        else:
            entry["stderr_tail"] = o.stderr_tail
        runs.append(entry)
    # The random policy gets the env kwargs a run evaluates with: the config's, curriculum off.
    random = {}
    for env in args.envs:
        kwargs = {"curriculum": 0} if env == "carwash" else {}
        random[env] = random_baseline(env, episodes, 10_000, kwargs)
    result = {
        "benchmark": "solvability",
        "tag": args.tag,
        "steps": steps,
        "seeds": args.seeds,
        "eval_episodes": episodes,
        "overrides": args.override,
        "wall_seconds": round(time.time() - t0, 1),
        "machine": machine_facts("cpu"),
        "versions": versions(),
        "ppo_runs": runs,
        "random_policy": random,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    for entry in runs:
        if entry["ok"]:
            for split, s in entry["argmax"].items():
                t = entry["sampled"][split]
                print(
                    f"{entry['name']:<16} {split:<8} success argmax {s['success']:.2f} sampled {t['success']:.2f}"
                    f" | catastrophe argmax {s['catastrophe_rate']:.2f} sampled {t['catastrophe_rate']:.2f}"
                )
    for env, by_split in random.items():
        for split, s in by_split.items():
            print(
                f"{env + '-random':<16} {split:<8} success {s['success']:.2f} catastrophe {s['catastrophe_rate']:.2f}"
            )


if __name__ == "__main__":
    main()
