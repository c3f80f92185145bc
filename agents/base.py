"""The one small interface training and evaluation know agents by.

An agent learns from a batched Gymnasium ``VectorEnv`` (next-step autoreset), reports finished
episodes to the run's ``RunLog``, checkpoints itself into the run directory, and hands out
policies for evaluation. Nothing else of an agent is visible to ``devlearn.app.run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from devlearn.logging.runlog import RunLog


class Policy(Protocol):
    """Batched observations -> batched actions; keeps its own per-sub-env state (LSTM, context window)."""

    def __call__(self, obs: Any, episode_start: np.ndarray) -> np.ndarray: ...


class Agent(Protocol):
    """What ``devlearn train`` and ``devlearn eval`` need of a learner."""

    num_timesteps: int

    def learn(self, total_timesteps: int, log: RunLog, run_dir: Path, checkpoint_every: int) -> None:
        """Train until ``num_timesteps >= total_timesteps``, checkpointing into ``run_dir`` every
        ``checkpoint_every`` env steps; a non-finite update is rolled back to the last checkpoint."""
        ...

    def policy(self, deterministic: bool = True) -> Policy:
        """A fresh policy for evaluation (its recurrent state starts empty)."""
        ...

    def save(self, run_dir: Path) -> None:
        """Write the checkpoint (model, optimizer, counters, RNG) atomically into ``run_dir``."""
        ...

    def load(self, run_dir: Path) -> None:
        """Restore the checkpoint from ``run_dir`` in place."""
        ...


def has_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds an agent checkpoint (any agent kind)."""
    return any((run_dir / name).is_file() for name in ("checkpoint.pt", "checkpoint.zip"))
