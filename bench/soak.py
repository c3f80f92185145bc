"""Soak test of "runs you can trust": SIGKILL training runs at random moments, resume each, and fuzz the CLI.

Kills: ``--runs`` training runs (``deterministic=true``) are each SIGKILLed at a random moment after
their first periodic checkpoint, then continued with ``resume=true`` to completion. Reported per
kill: whether the checkpoint on disk was readable, the step it held, the steps lost (the step the
progress line last showed minus the saved step), whether the resume finished, and whether the
run's counters continued (``rollout/episodes_total`` in TensorBoard never goes back, ``results.json``
counts at least the episodes seen before the kill). One uninterrupted run of the same config is
the reference for the final figures.

Fuzz: ``--fuzz`` random ``devlearn train`` invocations with a wrong type or value for a random key;
each must be answered with one line on stderr, exit code 2 and no traceback (and no run folder).

    python bench/soak.py --runs 5 --steps 768 --fuzz 20      # a few minutes on 2 shared cores
    python bench/soak.py --runs 20 --jobs 8 --fuzz 100       # the issue's N=20, on a 16-core machine

``--jobs`` kill-and-resume runs go at once (each is single-threaded: ``deterministic=true``); leave a
core or two per job for the env and the kill timing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from devlearn.app.resume import check_checkpoint
from devlearn.errors import ConfigError

# `python -m devlearn`, run outside the repo (cwd: the soak's folder): works wherever `import devlearn` does,
# console script on PATH or not (the GPU machine installs devlearn into a --target folder)
DEVLEARN = [sys.executable, "-m", "devlearn"]
SMALL = ["agent.n_steps=32", "agent.batch_size=64", "env.num_envs=4", "log.eval_episodes=2", "log.video=false"]

# (key, wrong values): each is refused by the schema, a range check, or the env's constructor
FUZZ = {
    "seed": ["-1", "abc", "1.5"],
    "agent.total_timesteps": ["-5", "0", "lots", "[1,2]"],
    "agent.learning_rate": ["-1", "0", "fast"],
    "agent.n_steps": ["0", "x"],
    "agent.batch_size": ["-64"],
    "agent.gamma": ["2", "-0.1"],
    "agent.clip_range": ["0"],
    "agent.shield_tau": ["5", "-1", "high"],
    "agent.core.n_heads": ["3", "0"],
    "agent.core.window": ["0"],
    "agent.world_model.k": ["0"],
    "agent.intrinsic_coef": ["-1"],
    "agent.intrinsic": ["novelyt"],
    "env.num_envs": ["0", "-4", "many"],
    "env.vectorization": ["gpu"],
    "env.kwargs.slip": ["2", "-0.5", "slippy"],
    "env.kwargs.split": ["test"],
    "env.kwargs.max_stepz": ["10"],
    "env.id": ["devlearn/CliffEdg-v0", "nope:Env-v0"],
    "env": ["clif", "gymm"],
    "agent": ["ppx"],
    "log.eval_episodes": ["0", "-1"],
    "log.video_max_steps": ["0"],
    "device": ["gpu"],
    "resume": ["maybe"],
    "max_rollbacks": ["0"],
    "checkpoint_every": ["0"],
    "agent.total_timestep": ["5"],
}


def saved_step(run_dir: Path) -> int | None:
    """The step of the checkpoint on disk, or None if it is missing or unreadable."""
    try:
        check_checkpoint(run_dir)
        return int(torch.load(run_dir / "checkpoint.pt", weights_only=True)["num_timesteps"])
    except (ConfigError, FileNotFoundError, RuntimeError, KeyError, EOFError):
        return None


def episodes_curve(run_dir: Path, since: float = 0.0) -> list[float]:
    """``rollout/episodes_total`` as written after wall time ``since`` (the resumed session's points)."""
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    points = sorted((e for e in events.Scalars("rollout/episodes_total") if e.wall_time > since), key=lambda e: e.step)
    return [e.value for e in points]


def saved_episodes(run_dir: Path) -> int | None:
    """The episode counter stored in the checkpoint (what the resumed run must continue from)."""
    try:
        return int(torch.load(run_dir / "checkpoint.pt", weights_only=True)["log"]["episodes_total"])
    except (FileNotFoundError, RuntimeError, KeyError, EOFError):
        return None


def train(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*DEVLEARN, "train", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def kill_and_resume(i: int, base: list[str], root: Path, rng: random.Random) -> dict:
    run_dir = root / "runs" / f"killed-{i}"
    log = open(root / f"killed-{i}.out", "w+")
    proc = subprocess.Popen([*DEVLEARN, "train", *base, f"hydra.run.dir={run_dir}"], cwd=root, stdout=log)
    deadline = time.time() + 600
    while (saved_step(run_dir) or 0) == 0 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)  # wait for a periodic checkpoint beyond the one before the first update
    time.sleep(rng.uniform(0.0, 6.0))  # then a random moment: mid-rollout, mid-update or mid-checkpoint
    finished_first = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.seek(0)
    shown = [int(m.replace(",", "")) for m in re.findall(r"\] ([\d,]+)/", log.read())]
    at_kill = max(shown, default=0)
    saved = saved_step(run_dir)
    before = json.loads((run_dir / "results.json").read_text()) if (run_dir / "results.json").is_file() else None
    episodes_saved = saved_episodes(run_dir)
    resume_start = time.time()
    out = train([*base, f"hydra.run.dir={run_dir}", "resume=true"], root)
    resumed = out.returncode == 0 and (run_dir / "results.json").is_file()
    results = json.loads((run_dir / "results.json").read_text()) if resumed else None
    # The killed session's points past its checkpoint are replayed by the resumed one (those steps are
    # re-trained): continuity means the resumed session starts from the checkpoint's counts and only grows.
    curve = episodes_curve(run_dir, since=resume_start) if resumed else []
    continuous = bool(
        resumed
        and episodes_saved is not None
        and curve
        and curve == sorted(curve)
        and curve[0] >= episodes_saved
        and results["training"]["episodes"] == curve[-1]
        and results["resumes"] == 1
    )
    return {
        "run": i,
        "finished_before_kill": finished_first and before is not None,
        "checkpoint_readable": saved is not None,
        "saved_step": saved,
        "step_shown_at_kill": at_kill,
        # the progress line is printed every 2 s, so this is a lower bound; the bound by construction is
        # checkpoint_every + one rollout (num_envs * n_steps)
        "steps_lost_at_least": max(at_kill - (saved or 0), 0),
        "episodes_in_checkpoint": episodes_saved,
        "resumed": resumed,
        "resume_stderr_tail": out.stderr.strip().splitlines()[-1:] if not resumed else [],
        "counters_continuous": continuous,
        "episodes": results["training"]["episodes"] if results else None,
        "env_steps": results["env_steps"] if results else None,
    }


def fuzz(n: int, root: Path, rng: random.Random) -> dict:
    cases, answered = [], 0
    for _ in range(n):
        key = rng.choice(sorted(FUZZ))
        value = rng.choice(FUZZ[key])
        cwd = Path(tempfile.mkdtemp(dir=root))
        out = train(["agent.total_timesteps=64", *SMALL, f"{key}={value}"], cwd, timeout=300)
        lines = out.stderr.strip().splitlines()
        one_line = (
            out.returncode == 2
            and len(lines) == 1
            and lines[0].startswith("devlearn: error:")
            and not (cwd / "runs").exists()
        )
        answered += one_line
        cases.append({"override": f"{key}={value}", "one_line": one_line, "rc": out.returncode, "stderr": lines[-3:]})
    return {"cases": n, "answered_in_one_line": answered, "not_one_line": [c for c in cases if not c["one_line"]],
            "all": cases}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1, help="kill-and-resume runs at once")
    parser.add_argument("--steps", type=int, default=768)
    parser.add_argument("--checkpoint-every", type=int, default=128)
    parser.add_argument("--agent", default="developmental")
    parser.add_argument("--fuzz", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "soak.json"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="devlearn-soak-"))
    base = [
        f"agent={args.agent}",
        *SMALL,
        f"agent.total_timesteps={args.steps}",
        f"checkpoint_every={args.checkpoint_every}",
        "deterministic=true",
        "log.progress_bar=true",
    ]
    t0 = time.time()
    try:
        ref_dir = root / "runs" / "reference"
        ref = train([*base, f"hydra.run.dir={ref_dir}"], root)
        reference = json.loads((ref_dir / "results.json").read_text()) if ref.returncode == 0 else None
        seeds = [rng.randrange(2**32) for _ in range(args.runs)]  # each run its own kill moment, however scheduled
        def one(i: int) -> dict:
            k = kill_and_resume(i, base, root, random.Random(seeds[i]))
            print(f"run {i}: resumed={k['resumed']} checkpoint_readable={k['checkpoint_readable']} "
                  f"continuous={k['counters_continuous']} steps_lost>={k['steps_lost_at_least']}", flush=True)
            return k

        with ThreadPoolExecutor(max_workers=max(1, args.jobs) + 1) as pool:
            fuzzing = pool.submit(fuzz, args.fuzz, root, rng)  # beside the kills: one more process at a time
            kills = list(pool.map(one, range(args.runs)))
            fuzzed = fuzzing.result()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary = {
        "machine": f"{os.cpu_count()} CPUs, {args.jobs} kill-and-resume runs at once",
        "agent": args.agent,
        "steps": args.steps,
        "checkpoint_every": args.checkpoint_every,
        "runs": args.runs,
        "resumed": sum(k["resumed"] for k in kills),
        "corrupt_checkpoints": sum(not k["checkpoint_readable"] for k in kills),
        "counters_continuous": sum(k["counters_continuous"] for k in kills),
        "steps_lost_per_kill_at_least": [k["steps_lost_at_least"] for k in kills],
        # totals of a killed-and-resumed run against the uninterrupted reference (same seed, deterministic=true):
        # the steps match; episodes may not, since a resume restarts the envs mid-episode (the lost steps replay)
        "env_steps_equal_reference": sum(bool(reference) and k["env_steps"] == reference["env_steps"] for k in kills),
        "episodes_minus_reference": [
            None if not reference or k["episodes"] is None else k["episodes"] - reference["training"]["episodes"]
            for k in kills
        ],
        "steps_lost_bound": args.checkpoint_every + 4 * 32,
        "reference": {"env_steps": reference["env_steps"], "episodes": reference["training"]["episodes"]}
        if reference
        else None,
        "kills": kills,
        "fuzz": fuzzed,
        "seconds": round(time.time() - t0, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    n = args.runs
    print(f"resumed: {summary['resumed']}/{n}")
    print(f"corrupt checkpoints: {summary['corrupt_checkpoints']}")
    print(f"steps lost per kill (at least; bound {summary['steps_lost_bound']}): {summary['steps_lost_per_kill_at_least']}")
    print(
        f"counter continuity: {summary['counters_continuous']}/{n} continuous; env steps equal to the uninterrupted "
        f"run's in {summary['env_steps_equal_reference']}/{n}; episodes minus its: {summary['episodes_minus_reference']}"
    )
    print(
        f"CLI fuzz: {fuzzed['answered_in_one_line']}/{fuzzed['cases']} answered in one line "
        f"({fuzzed['cases'] - fuzzed['answered_in_one_line']} not)"
    )
    print(f"{summary['seconds']:.0f} s; details in {args.out}")


if __name__ == "__main__":
    main()
