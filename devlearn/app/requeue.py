"""Hydra's submitit launchers, requeueing a preempted or timed-out job so that it resumes its run.

submitit's protocol (its docs/checkpointing.md): before the time limit (SIGUSR2, ``signal_delay_s`` ahead) or
on preemption, submitit calls the job's ``checkpoint()`` for the submission to requeue, and requeues it.
Hydra's launcher requeues the job with the arguments it first had, so the job would start its run again;
here ``checkpoint()`` adds ``resume=true`` when the job's folder holds a checkpoint, and the requeued job
continues from it (``devlearn.app.run.train``: a sweep job resumes its own folder first).

The order in the job (``devlearn/app/signals.py``): devlearn's handler asks training to stop at its next safe
point; the checkpoint is saved and the one-line message printed; then submitit's handler runs, calls
``checkpoint()`` and requeues. ``configs/hydra/launcher/slurm.yaml`` selects ``SlurmLauncher``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra_plugins.hydra_submitit_launcher import submitit_launcher

from devlearn.app.checkpoints import checkpoint_file


def resumed(overrides: list[str], job_dir: Path) -> list[str]:
    """A job's overrides for its requeued run: ``resume=true`` once its folder holds a checkpoint (else as they were:
    the job was stopped before it saved anything, and starts afresh)."""
    if checkpoint_file(job_dir) is None or any(o.lstrip("+").startswith("resume=") for o in overrides):
        return list(overrides)  # resume=force stays force
    return [*overrides, "resume=true"]


class _Requeueing:
    def checkpoint(self, sweep_overrides: list[str], *args: Any, **kwargs: Any) -> Any:
        """The submission submitit requeues: this job again, continuing its run (called in the job, in its run)."""
        import submitit  # deferred: as Hydra's launcher does (plugin discovery stays fast)

        job_dir = Path(HydraConfig.get().runtime.output_dir)
        return submitit.helpers.DelayedSubmission(self, resumed(sweep_overrides, job_dir), *args, **kwargs)


class SlurmLauncher(_Requeueing, submitit_launcher.SlurmLauncher):
    """``hydra/launcher=slurm``: one SLURM job per run; a preempted or timed-out job is requeued and resumes."""


class LocalLauncher(_Requeueing, submitit_launcher.LocalLauncher):
    """submitit's local executor with the same requeue (what the tests run: no SLURM here)."""
