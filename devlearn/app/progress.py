"""A line per finished job of a sweep: ``JobProgress``, the Hydra callback behind ``devlearn train -m``.

Launchers run jobs in other processes (joblib workers, SLURM nodes, Ray tasks), so the line is
written where the job ends: printed to the job's stdout and appended to ``<sweep dir>/progress.log``,
which is the one place to follow a SLURM or Ray sweep (``tail -f runs/multirun-.../progress.log``).
This module must stay light: Hydra instantiates it for every run, before torch is imported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

PROGRESS_FILE = "progress.log"


def job_line(results: dict[str, Any], name: str) -> str:
    """The headline figures of one finished run, on one line."""
    table = results.get("eval", {})
    split = "heldout" if "heldout" in table else next(iter(table), None)
    figures = ""
    if split is not None:
        row = table[split]
        figures = (
            f" | {split} return {row['return']:.3f} success {row['success']:.0%} "
            f"catastrophe {row['catastrophe_rate']:.0%}"
        )
    training = results.get("training", {})
    return (
        f"{name}: done{figures} | {training.get('catastrophes', 0)} training catastrophes | "
        f"{results.get('env_steps', 0):,} steps in {results.get('train_seconds', 0):.0f} s "
        f"({results.get('env_steps_per_second', 0):,.0f} steps/s)"
    )


class JobProgress(Callback):
    """Print (and log to ``progress.log``) a line for each job of a multirun when it ends."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return  # a single run prints its own table
        run_dir = Path(hydra_cfg.runtime.output_dir)
        name = f"[job {hydra_cfg.job.num}] {run_dir.name}"
        if job_return.status == JobStatus.FAILED:
            error = str(job_return._return_value).strip().splitlines() or ["?"]  # the exception it raised
            line = f"{name}: FAILED: {type(job_return._return_value).__name__}: {error[-1]}"
        elif (run_dir / "results.json").is_file():
            line = job_line(json.loads((run_dir / "results.json").read_text()), name)
        else:
            line = f"{name}: ended without results.json"
        print(f"devlearn sweep: {line}", flush=True)
        # O_APPEND: concurrent jobs on one machine or a shared file system add whole lines
        sweep_dir = Path(hydra_cfg.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(sweep_dir / PROGRESS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        log = sweep_dir / PROGRESS_FILE
        lines = log.read_text().splitlines() if log.is_file() else []
        failed = sum(": FAILED:" in line for line in lines)
        if "submitit" in str(config.hydra.launcher.get("_target_", "")):
            # submitit jobs print into their own logs under .submitit/, not here: show their lines now
            for line in lines:
                print(f"devlearn sweep: {line}", flush=True)
        print(
            f"devlearn sweep: {len(lines)} jobs ended ({failed} failed) under {sweep_dir}; "
            f"aggregate them with: devlearn report {sweep_dir}",
            flush=True,
        )
