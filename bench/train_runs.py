"""Shared by the training benchmarks: run ``devlearn train`` as a subprocess and describe the machine.

``bench/consequences.py`` and ``bench/train_throughput.py`` import this module (``python bench/X.py``
puts ``bench/`` on ``sys.path``). Each run is ``python -m devlearn train ...`` with the interpreter
running the benchmark, so it works wherever ``import devlearn`` does, the console script on PATH or not;
it runs in its run folder, since from the repo root ``python -m`` would import the bare ``devlearn/``
folder instead of an installed (non-editable) devlearn.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGES = ("devlearn", "torch", "gymnasium", "minigrid", "stable-baselines3", "numpy")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./+-]+")


@dataclass
class RunOutcome:
    """One finished (or failed) ``devlearn train`` subprocess."""

    name: str
    run_dir: Path
    returncode: int
    wall_seconds: float
    results: dict[str, Any] | None  # the run's results.json, None if it failed
    stderr_tail: str = ""
    train_started_at: float | None = None  # time.time() when the run printed "devlearn: training"
    command: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.results is not None


def train_command(
    env: str,
    agent: str,
    seed: int,
    steps: int,
    run_dir: Path,
    device: str,
    eval_episodes: int,
    overrides: Sequence[str] = (),
) -> list[str]:
    """The ``devlearn train`` command line of one benchmark run (no video, no progress bar)."""
    run_dir_value = str(run_dir) if _PLAIN_PATH.fullmatch(str(run_dir)) else repr(str(run_dir))
    return [
        sys.executable,
        "-m",
        "devlearn",
        "train",
        f"env={env}",
        f"agent={agent}",
        f"seed={seed}",
        f"agent.total_timesteps={steps}",
        f"device={device}",
        "log.video=false",
        "log.progress_bar=false",
        f"log.eval_episodes={eval_episodes}",
        f"hydra.run.dir={run_dir_value}",
        *overrides,
    ]


def child_env(threads: int) -> dict[str, str]:
    """This process's environment with the thread pools capped at ``threads`` (0: leave them as they are)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="1")
    if threads > 0:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
            env[var] = str(threads)
    return env


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file ("" if it does not exist)."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_train(
    name: str,
    command: list[str],
    run_dir: Path,
    threads: int,
    timeout: float | None = None,
) -> RunOutcome:
    """Run one ``devlearn train`` command; its stdout and stderr go to ``run_dir/bench-{stdout,stderr}.log``.

    Never raises for a failed run: the outcome carries the return code and the tail of stderr.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = run_dir / "bench-stdout.log", run_dir / "bench-stderr.log"
    started: list[float] = []
    t0 = time.time()
    with stdout_path.open("w") as out, stderr_path.open("w") as err:
        # cwd: not the repo root, whose devlearn/ folder (no envs/, no agents/) would shadow an installed devlearn
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=err, env=child_env(threads), text=True, cwd=run_dir
        )

        def copy_stdout() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if not started and line.startswith("devlearn: training"):
                    started.append(time.time())
                out.write(line)

        reader = threading.Thread(target=copy_stdout, daemon=True)
        reader.start()
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            returncode = proc.wait()
            err.write(f"\nbench: killed after {timeout} s\n")
        reader.join()
    wall = time.time() - t0
    results_path = run_dir / "results.json"
    results = None
    if returncode == 0 and results_path.exists():
        results = json.loads(results_path.read_text())
    stderr_tail = "" if results is not None else (tail(stderr_path) or tail(stdout_path))
    return RunOutcome(
        name=name,
        run_dir=run_dir,
        returncode=returncode,
        wall_seconds=round(wall, 1),
        results=results,
        stderr_tail=stderr_tail,
        train_started_at=started[0] if started else None,
        command=command,
    )


def median_ci(values: Sequence[float], resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """A percentile-bootstrap 95% confidence interval of the median of ``values`` (seeds resampled with replacement)."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    draws = np.random.default_rng(seed).choice(x, size=(resamples, len(x)), replace=True)
    low, high = np.percentile(np.median(draws, axis=1), [2.5, 97.5])
    return float(low), float(high)


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """Median, min, max and the median's bootstrap 95% CI of ``values`` (all None when there are none), and their count."""
    if not values:
        return {"median": None, "min": None, "max": None, "ci_low": None, "ci_high": None, "n": 0}
    low, high = median_ci(values)
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "ci_low": low,
        "ci_high": high,
        "n": len(values),
    }


def versions() -> dict[str, str | None]:
    """Installed versions of the packages a training run depends on (None where one is missing)."""
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine_facts(device: str) -> dict[str, Any]:
    """Platform, CPU count and Python of this machine, and the GPU's name when ``device`` may use one."""
    facts: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "device": device,
    }
    if device != "cpu":
        import torch

        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
            facts["gpu_memory_mib"] = torch.cuda.get_device_properties(0).total_memory // 2**20
            facts["cuda"] = torch.version.cuda
    return facts


def run_all(
    tasks: Sequence[tuple[str, Callable[[], RunOutcome]]], jobs: int, report: Callable[[RunOutcome], None]
) -> list[RunOutcome]:
    """Run ``tasks`` (name, thunk) ``jobs`` at a time; ``report`` each outcome as it finishes. Keeps task order."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    outcomes: dict[str, RunOutcome] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(thunk): name for name, thunk in tasks}
        for future in as_completed(futures):
            outcome = future.result()
            outcomes[futures[future]] = outcome
            report(outcome)
    return [outcomes[name] for name, _ in tasks]
