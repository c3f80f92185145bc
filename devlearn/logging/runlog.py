"""The run's log: finished episodes -> consequence figures in TensorBoard and a console progress line.

Every agent reports the same things the same way: ``rollout/return``, ``rollout/success_rate``,
``rollout/catastrophe_rate``, ``rollout/cost`` (means over the last ``window`` episodes),
``rollout/catastrophes_total`` and ``time/steps_per_s``. Agents add their own tags
(``train/``, ``world_model/``, ``memory/``) through ``scalars``.

The run's counters (episodes, catastrophes, cost, rollbacks, training wall time, the recent
episodes) travel inside the agent's checkpoint (``state_dict`` / ``load_state_dict``), so a resumed
run continues them instead of counting from zero. ``rollback`` stops a run whose update diverges
``max_rollbacks`` times in a row with ``Diverged``.

The log also says when the agent checkpoints: ``checkpoint_due`` every ``checkpoint_every`` env steps or
every ``checkpoint_every_s`` seconds, whichever comes first; and when it stops: ``request_stop`` (a
stop signal, ``devlearn/app/signals.py``) makes ``stop_requested`` true, and the agent's learn loop
ends at its next safe point (after an update), saving its checkpoint there.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import Any

import numpy as np
from torch.utils.tensorboard import SummaryWriter

from devlearn.logging.progress import bar


class Diverged(RuntimeError):
    """Every recent update diverged and was rolled back: the run stops instead of spinning in place."""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, bool, np.number, np.bool_))


COUNTERS = ("episodes_total", "catastrophes_total", "cost_total", "rollbacks_total", "resumes")


MONITORS = ("world_model/", "shield/", "memory/")  # the tags results.json's ``monitors`` summarizes
LATE_VALUES = 10


class RunLog:
    """Consequence bookkeeping for one run, written to ``writer``.

    Args:
        max_rollbacks: rollbacks in a row (no successful update between them) that stop the run.
    """

    def __init__(
        self,
        writer: SummaryWriter | None,
        total_timesteps: int,
        progress: bool = True,
        window: int = 100,
        max_rollbacks: int = 5,
        checkpoint_every_s: float = float("inf"),
    ):
        self.writer = writer
        self.total = total_timesteps
        self.progress = progress
        self.recent: deque[dict[str, Any]] = deque(maxlen=window)
        self.window = window
        self.max_rollbacks = max_rollbacks
        self.checkpoint_every_s = checkpoint_every_s  # inf: by steps only (devlearn train sets the schema's)
        self._checkpoint_step, self._checkpoint_time = 0, time.time()  # the checkpoint on disk
        self.stop_signal: int | None = None  # set by request_stop
        # What the run trains on (env id, observation space; set by devlearn train): saved in the checkpoint, so a
        # checkpoint loaded into another env's model is answered in words, not with a size mismatch.
        self.trained_on: dict[str, str] = {}
        self.episodes_total = 0
        self.catastrophes_total = 0
        self.cost_total = 0.0
        self.rollbacks_total = 0
        self.resumes = 0
        self.consecutive_rollbacks = 0
        self._rolled_back = False  # a rollback since the last rollout_end
        self._wall_before = 0.0  # training seconds of the run's earlier sessions (before a resume)
        self._t0 = time.time()
        self._t0_step = 0
        self._session_t0 = time.time()
        self._next_print = 0.0
        # the last LATE_VALUES values of each monitor tag, for results.json's ``monitors`` (this session's)
        self._late: dict[str, deque[float]] = {}

    # --- counters that survive a resume ------------------------------------------------------
    def train_seconds(self) -> float:
        """Training wall time of the whole run: earlier sessions plus this one."""
        return self._wall_before + (time.time() - self._session_t0)

    def state_dict(self) -> dict[str, Any]:
        """The counters, in types ``torch.load(weights_only=True)`` accepts (saved inside the checkpoint)."""
        return {
            **{k: getattr(self, k) for k in COUNTERS},
            "train_seconds": self.train_seconds(),
            "recent": [{k: float(v) for k, v in ep.items() if _number(v)} for ep in self.recent],
            "trained_on": dict(self.trained_on),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the counters of a checkpoint (the clock restarts from its training time)."""
        for key in COUNTERS:
            setattr(self, key, type(getattr(self, key))(state[key]))
        self._wall_before = float(state["train_seconds"])
        self._session_t0 = time.time()
        self.recent.clear()
        self.recent.extend(state["recent"])

    def rollback(self, step: int, why: str) -> None:
        """Count a rolled-back update; raise ``Diverged`` after ``max_rollbacks`` in a row."""
        self.rollbacks_total += 1
        if not self._rolled_back:
            self.consecutive_rollbacks += 1
        self._rolled_back = True
        if self.writer is not None:
            self.writer.add_scalar("train/rollbacks", self.rollbacks_total, step)
        if self.consecutive_rollbacks >= self.max_rollbacks:
            raise Diverged(
                f"training diverged: {self.consecutive_rollbacks} updates in a row ended in {why} at step {step:,} "
                "and were rolled back. Try a smaller agent.learning_rate (or agent.max_grad_norm), "
                "or raise max_rollbacks."
            )

    # --- when to checkpoint, when to stop -------------------------------------------------------
    def checkpointed(self, step: int) -> None:
        """The checkpoint on disk now holds ``step``: both checkpoint clocks restart here."""
        self._checkpoint_step, self._checkpoint_time = step, time.time()

    def checkpoint_due(self, step: int, every: int) -> bool:
        """Whether to checkpoint at ``step``: ``every`` env steps or ``checkpoint_every_s`` seconds since the last one.

        True restarts both clocks (the caller saves now).
        """
        since = time.time() - self._checkpoint_time
        # nothing new since the checkpoint (SB3 asks at the start of its first rollout): not due
        due = step > self._checkpoint_step and (step - self._checkpoint_step >= every or since >= self.checkpoint_every_s)
        if due:
            self.checkpointed(step)
        return due

    def request_stop(self, signum: int) -> None:
        """Stop at the next safe point: the learn loop ends after its current update and saves its checkpoint."""
        self.stop_signal = signum

    @property
    def stop_requested(self) -> bool:
        return self.stop_signal is not None

    def restart_clock(self, step: int) -> None:
        """Measure steps/s from ``step`` on (after a resume, or once warm-up is over)."""
        self._t0, self._t0_step = time.time(), step

    def episodes(self, finished: list[dict[str, Any]]) -> None:
        """Record finished episodes: dicts with return, length, cost, catastrophe, success."""
        for ep in finished:
            self.recent.append(ep)
            self.episodes_total += 1
            self.catastrophes_total += int(ep["catastrophe"])
            self.cost_total += float(ep["cost"])

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
            if tag.startswith(MONITORS):
                self._late.setdefault(tag, deque(maxlen=LATE_VALUES)).append(float(value))
        if self.writer is None:
            return
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def monitors(self) -> dict[str, float]:
        """The mean of each ``world_model/``, ``shield/`` and ``memory/`` scalar's last ``LATE_VALUES`` values.

        What the run's model ended as, in results.json, so a benchmark can report it without reading
        TensorBoard (NaN-free: a tag with no finite value is left out). Counts this session only.
        """
        out = {}
        for tag, values in sorted(self._late.items()):
            finite = [v for v in values if np.isfinite(v)]
            if finite:
                out[tag] = float(np.mean(finite))
        return out

    def rollout_end(self, step: int) -> None:
        """Write the headline figures at ``step`` and refresh the progress line."""
        if not self._rolled_back:  # an update since the last rollout went through
            self.consecutive_rollbacks = 0
        self._rolled_back = False
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
        tail = ""
        if figures:
            tail = f" | return {figures['return']:.3f} | catastrophe {figures['catastrophe_rate']:.0%}"
        end = "\r" if sys.stdout.isatty() else "\n"
        line = f"{bar(step / self.total)} {step:,}/{self.total:,} steps | {self.steps_per_second(step):,.0f} steps/s{tail}"
        print(line, end=end, flush=True)
