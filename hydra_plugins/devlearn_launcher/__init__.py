"""devlearn's Hydra launchers (Hydra loads launchers only from the ``hydra_plugins`` namespace): the submitit
launchers, requeueing a preempted or timed-out job so that it resumes its run (``devlearn/app/requeue.py``).

Importable without the ``cluster`` extra: Hydra imports every plugin module when it starts, and a missing
``hydra-submitit-launcher`` must not warn on every ``devlearn train``; the launchers then simply do not exist.
"""

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
except ImportError:  # no hydra-submitit-launcher: nothing to requeue through
    submitit_launcher = None

if submitit_launcher is not None:
    from devlearn.app.requeue import Requeueing

    class SlurmLauncher(Requeueing, submitit_launcher.SlurmLauncher):
        """``hydra/launcher=slurm``: one SLURM job per run; a preempted or timed-out job is requeued and resumes."""

    class LocalLauncher(Requeueing, submitit_launcher.LocalLauncher):
        """submitit's local executor with the same requeue (what the tests run: no SLURM here)."""
