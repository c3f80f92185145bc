"""What a run shows beyond its losses: the shield against the world, memory, the intrinsic reward, pictures.

``TrainingMonitor`` is called as a logger callback at fixed points: ``on_decision`` at every acting
step (the shield's probes, ``agents/developmental/shield.py``), ``rollout_logs`` after a rollout (the
shield's per-rollout figures, the memory's statistics, the intrinsic reward's own figures) and
``after_update`` after a good update (every ``IMAGE_EVERY`` rollouts, and at the run's end, the world
model's predicted-vs-actual picture of the rollout's latest real step).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from devlearn.agents.developmental.intrinsic import IntrinsicReward
from devlearn.agents.developmental.net import Decision, DevelopmentalNet
from devlearn.agents.developmental.rollout import RolloutBuffer
from devlearn.agents.developmental.shield import ShieldMonitor
from devlearn.logging.grid_image import write_predicted_vs_actual
from devlearn.model.context import SequenceContext, tree_map

IMAGE_EVERY = 10  # rollouts between predicted-vs-actual pictures


class TrainingMonitor:
    """The figures and pictures of a developmental run (see the module docstring).

    Args:
        net: the agent's network (read only).
        context, rollout: what acting wrote.
        intrinsic: the intrinsic reward, whose ``rollout_logs`` are logged with the rollout's.
        writer: the run's TensorBoard writer (None: no pictures).
    """

    def __init__(
        self,
        net: DevelopmentalNet,
        context: SequenceContext,
        rollout: RolloutBuffer,
        intrinsic: IntrinsicReward,
        writer: Any,
    ) -> None:
        self.net, self.context, self.rollout, self.intrinsic, self.writer = net, context, rollout, intrinsic, writer
        self.shield = ShieldMonitor()

    def on_decision(self, env: Any, t: int, d: Decision, real: np.ndarray) -> None:
        """Acting decided segment step ``t``; ``real`` ``(E,)``: the sub-envs whose step is a real transition."""
        if d.allowed is not None and self.shield.wants_probe(t, self.context.n_steps):  # ground truth, measuring only
            self.shield.probe(env, d.danger.cpu().numpy(), d.allowed.cpu().numpy(), real, d.plan.cpu().numpy())

    def rollout_logs(self) -> dict[str, float]:
        """The rollout's figures: the shield's (resets its per-rollout counts), the memory's, the intrinsic reward's."""
        C, R = self.context, self.rollout
        logs = {}
        if self.net.shield_on:
            s = R.segment()
            logs = self.shield.scalars(
                R.real[:, s], R.allowed[:, s], R.danger[:, s], R.vetoed[:, s], R.catastrophe[:, s]
            )
        if C.memory is not None:
            logs.update(C.memory_state.pop_stats())
        logs.update(self.intrinsic.rollout_logs())
        return logs

    def after_update(self, rollouts: int, step: int, last: bool) -> None:
        """A good update ended rollout number ``rollouts`` at env step ``step`` (``last``: the run's end)."""
        if rollouts % IMAGE_EVERY == 0 or last:
            self.log_prediction(step)

    def log_prediction(self, step: int) -> bool:
        """Write ``world_model/predicted_vs_actual`` for the rollout's most recent real step.

        Grid leaves become a side-by-side image (predicted | actual, wrong cells framed), byte-string
        leaves a text entry. Returns whether something was written.
        """
        wm = self.net.world_model
        if wm is None or not wm.has_exact or self.writer is None:
            return False
        C, R = self.context, self.rollout
        real = R.real[:, R.segment()]
        if not real.any():
            return False
        # the latest real transition of the rollout (sub-envs may all be resetting at its very end)
        t = int(real.any(0).nonzero().max())
        env = real[:, t].nonzero()[0]
        with torch.inference_mode():
            j = torch.tensor([C.first + t], device=C.act.device)
            w, pos = C.training_window(env, j, self.net.core.encoder)
            h_act = self.net.core.states(w.obs, w.act, w.valid, w.memory, last=1)[1]
            predicted = wm.predict_next(h_act[:, -1:], C.gather_obs(pos[:, -1:]))  # (1, 1, ...)
            actual = C.gather_obs(pos[:, -1:] + 1)
        first = lambda x: None if x is None else x[0, 0].cpu().numpy()  # noqa: E731 (one observation)
        predicted, actual = tree_map(first, predicted), tree_map(first, actual)
        return write_predicted_vs_actual(self.writer, "world_model/predicted_vs_actual", predicted, actual, step)
