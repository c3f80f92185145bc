"""Hydra's submitit launchers, requeueing a preempted or timed-out job so that it resumes its run.

submitit's protocol (its docs/checkpointing.md): before the time limit (SIGUSR2, ``signal_delay_s`` ahead) or
on preemption, submitit calls the job's ``checkpoint()`` for the submission to requeue, and requeues it.
Hydra's launcher requeues the job with the arguments it first had, so the job would start its run again;
here ``checkpoint()`` adds ``resume=true`` when the job's folder holds a checkpoint, and the requeued job
continues from it (``devlearn.app.run.train``: a sweep job resumes its own folder first).

The order in the job (``devlearn/app/signals.py``): devlearn's handler asks training to stop at its next safe
point; the checkpoint is saved and the one-line message printed; then submitit's handler runs, calls
``checkpoint()`` and requeues. ``configs/hydra/launcher/slurm.yaml`` selects
``hydra_plugins.devlearn_launcher.SlurmLauncher``, this mixin on Hydra's ``SlurmLauncher``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig

from devlearn.app.checkpoints import checkpoint_file


def resumed(overrides: list[str], job_dir: Path) -> list[str]:
    """A job's overrides for its requeued run: ``resume=true`` once its folder holds a checkpoint (else as they were:
    the job was stopped before it saved anything, and starts afresh)."""
    if checkpoint_file(job_dir) is None or any(o.lstrip("+").startswith("resume=") for o in overrides):
        return list(overrides)  # resume=force stays force
    return [*overrides, "resume=true"]


class Requeueing:
    """Mixed into Hydra's submitit launchers (``hydra_plugins/devlearn_launcher``: Hydra loads launchers only from
    that namespace): the requeued submission continues the job's run."""

    def checkpoint(self, sweep_overrides: list[str], *args: Any, **kwargs: Any) -> Any:
        """The submission submitit requeues: this job again, continuing its run (called in the job, in its run)."""
        import submitit  # deferred: as Hydra's launcher does (plugin discovery stays fast)

        job_dir = Path(HydraConfig.get().runtime.output_dir)
        return submitit.helpers.DelayedSubmission(self, resumed(sweep_overrides, job_dir), *args, **kwargs)


def register_launchers() -> None:
    """Make devlearn's launchers known to Hydra: its plugin scan finds ``hydra_plugins/devlearn_launcher`` in an
    installed wheel, not in an editable install (``pip install -e``), whose namespace path it cannot list."""
    from hydra.core.plugins import Plugins  # deferred: only a sweep that names a launcher needs them

    import hydra_plugins.devlearn_launcher as launchers  # deferred, likewise (it loads the submitit plugin)

    for name in ("SlurmLauncher", "LocalLauncher"):
        if hasattr(launchers, name):  # absent without the cluster extra
            Plugins.instance().register(getattr(launchers, name))
