"""The run's log: finished episodes -> consequence figures in TensorBoard and a console progress line.

Every agent reports the same things the same way: ``rollout/return``, ``rollout/success_rate``,
``rollout/catastrophe_rate``, ``rollout/cost`` (means over the last ``window`` episodes),
``rollout/catastrophes_total`` and ``time/steps_per_s``. Agents add their own tags
(``train/``, ``world_model/``, ``memory/``) through ``scalars``.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import Any

import numpy as np
from torch.utils.tensorboard import SummaryWriter


class RunLog:
    """Consequence bookkeeping for one run, written to ``writer``."""

    def __init__(self, writer: SummaryWriter, total_timesteps: int, progress: bool = True, window: int = 100):
        self.writer = writer
        self.total = total_timesteps
        self.progress = progress
        self.recent: deque[dict[str, Any]] = deque(maxlen=window)
        self.window = window
        self.episodes_total = 0
        self.catastrophes_total = 0
        self._t0 = time.time()
        self._t0_step = 0
        self._next_print = 0.0

    def restart_clock(self, step: int) -> None:
        """Measure steps/s from ``step`` on (after a resume, or once warm-up is over)."""
        self._t0, self._t0_step = time.time(), step

    def episodes(self, finished: list[dict[str, Any]]) -> None:
        """Record finished episodes: dicts with return, length, cost, catastrophe, success."""
        for ep in finished:
            self.recent.append(ep)
            self.episodes_total += 1
            self.catastrophes_total += int(ep["catastrophe"])

    def headline(self) -> dict[str, float]:
        """Means over the last ``window`` episodes (empty before the first one ends)."""
        if not self.recent:
            return {}
        col = {k: np.array([ep[k] for ep in self.recent], dtype=float) for k in ("return", "length", "cost")}
        return {
            "return": float(col["return"].mean()),
            "length": float(col["length"].mean()),
            "cost": float(col["cost"].mean()),
            "catastrophe_rate": float(np.mean([ep["catastrophe"] for ep in self.recent])),
            "success_rate": float(np.mean([ep["success"] for ep in self.recent])),
        }

    def steps_per_second(self, step: int) -> float:
        return (step - self._t0_step) / max(time.time() - self._t0, 1e-9)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def rollout_end(self, step: int) -> None:
        """Write the headline figures at ``step`` and refresh the progress line."""
        figures = self.headline()
        self.scalars({f"rollout/{k}": v for k, v in figures.items()}, step)
        self.scalars(
            {
                "rollout/catastrophes_total": self.catastrophes_total,
                "rollout/episodes_total": self.episodes_total,
                "time/steps_per_s": self.steps_per_second(step),
            },
            step,
        )
        if self.progress and (time.time() >= self._next_print or step >= self.total):
            self._next_print = time.time() + 2.0
            self.print_progress(step, figures)

    def print_progress(self, step: int, figures: dict[str, float]) -> None:
        done = min(step / self.total, 1.0)
        bar = "#" * int(30 * done) + "." * (30 - int(30 * done))
        tail = ""
        if figures:
            tail = f" | return {figures['return']:.3f} | catastrophe {figures['catastrophe_rate']:.0%}"
        end = "\r" if sys.stdout.isatty() else "\n"
        line = f"[{bar}] {step:,}/{self.total:,} steps | {self.steps_per_second(step):,.0f} steps/s{tail}"
        print(line, end=end, flush=True)
