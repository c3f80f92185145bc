"""Intrinsic rewards as callbacks: the collector and the update call the same hooks, whatever the bonus is.

As Stable-Baselines3's callbacks, an ``IntrinsicReward`` is bound to the agent once (``bind``: it may
read the agent's context, rollout buffer, network and update) and then called at fixed points of a run:

* ``on_reset``: the envs were reset; every episode begins at the context's first position;
* ``on_step(j, real)``: acting stored o_{j+1} at position ``j + 1``; transition ``j`` was real where ``real``;
* ``rollout_logs``: the bonus's figures for the rollout just collected;
* ``reward_bonus(reward, batch)``: the update adds the bonus into the env's ``reward`` ``(E, n_steps)``,
  in place, before GAE (the world model's reward head and the logged episode returns never see it);
* ``on_update_end``: the update is over (the parameters changed).

The base class pays nothing (``agent.intrinsic=none``, or ``intrinsic_coef=0``). ``agent.intrinsic``
picks one of ``INTRINSIC_REWARDS`` by name; a new bonus is one more subclass there, and no new branch
in the collector or the update.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from devlearn.agents.developmental.rollout import Transitions
from devlearn.errors import ConfigError
from devlearn.model.novelty import EpisodicNovelty, SimHash


class IntrinsicReward:
    """No bonus; the hooks every intrinsic reward may override (see the module docstring).

    Args:
        cfg: the agent's config; ``intrinsic_coef`` weighs the bonus against the env's reward.
    """

    name = "none"

    def __init__(self, cfg: Any) -> None:
        self.coef = float(cfg.intrinsic_coef)

    def bind(self, agent: Any) -> None:
        """Called once, when the ``DevelopmentalAgent``'s parts are built."""
        self.agent = agent

    def on_reset(self) -> None:
        """The envs were reset: every episode begins at the context's first position."""

    def on_step(self, j: int, real: np.ndarray) -> None:
        """Acting stored o_{j+1}; ``real`` ``(E,)``: whether transition ``j`` was real (else o_{j+1} begins an episode)."""

    def rollout_logs(self) -> dict[str, float]:
        """Figures of the rollout just collected."""
        return {}

    def reward_bonus(self, reward: Tensor, batch: Transitions) -> dict[str, Tensor]:
        """Add the bonus into ``reward`` ``(E, n_steps)`` in place; returns figures logged once per update."""
        return {}

    def on_update_end(self) -> None:
        """The update (or its rollback) is over: the parameters changed."""


class NoveltyBonus(IntrinsicReward):
    """``coef`` for each step that reaches a state new to its episode (``devlearn/model/novelty.py``).

    A state is the SimHash of the core encoder's o_t (the world model's latent), taken from the mean
    encoding of the stored observations: encodings of different observations share most of their
    direction (mean cosine 0.8 on CliffEdge), so hashed from the origin hundreds of distinct views fall
    on a few dozen keys; from their mean they spread. The centre follows the encoder after every update.
    """

    name = "novelty"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.bits = cfg.novelty_bits

    def bind(self, agent: Any) -> None:
        super().bind(agent)
        d, C = agent.cfg.core.d_model, agent.context
        self.context, self.rollout, self.encoder = C, agent.rollout, agent.net.core.encoder
        self.simhash = SimHash(d, self.bits, agent.seed, agent.device)
        self.novelty = EpisodicNovelty(C.num_envs)
        self.center = torch.zeros(d, device=agent.device)
        # 1 where transition j reached a state new to its episode, at the context's positions
        self.new = torch.zeros(C.num_envs, C.length, device=agent.device)

    def on_reset(self) -> None:
        # every episode starts here: its first state is seen, and earns nothing
        self._center()
        self.novelty.bonus(self._keys(self.context.first), np.ones(self.context.num_envs, dtype=bool))

    def on_step(self, j: int, real: np.ndarray) -> None:
        # The bonus belongs to the transition's next state, 1 on o_{j+1}'s first visit in its episode. After a
        # step that was not real, o_{j+1} begins a new episode: its set is cleared and o_{j+1} recorded, but no
        # action reached it, so no bonus.
        new = self.novelty.bonus(self._keys(j + 1), ~real)
        self.new[:, j] = torch.as_tensor(new * real).to(self.new.device)

    def rollout_logs(self) -> dict[str, float]:
        """``rollout/novelty_rate``: the share of real steps that reached a state new to their episode."""
        R = self.rollout
        s = R.segment()
        real = R.real[:, s]
        return {"rollout/novelty_rate": float(self.new[:, s][real].mean()) if real.any() else 0.0}

    def reward_bonus(self, reward: Tensor, batch: Transitions) -> dict[str, Tensor]:
        reward += self.coef * self.new[:, self.rollout.segment()]  # zero on transitions that were not real
        return {}

    def on_update_end(self) -> None:
        self._center()  # the encoder changed

    def _keys(self, j: int) -> Tensor:
        """Each env's state at position ``j``: the SimHash of its encoding o_j, centred."""
        return self.simhash(self.context.enc[:, j] - self.center)

    def _center(self) -> None:
        """The mean encoding of the stored observations under the current encoder."""
        C = self.context
        index = C.flat(C.episode >= 0).nonzero().squeeze(1)
        with torch.inference_mode():
            self.center = self.encoder(C.gather_obs(index)).mean(0)


class SurpriseBonus(IntrinsicReward):
    """``coef`` x the surprise of each real transition under the world model that acted (its prediction error)."""

    name = "surprise"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        if "world_model" not in cfg or cfg.world_model_coef <= 0:
            raise ConfigError(
                "agent.intrinsic=surprise with agent.intrinsic_coef > 0 needs agent.world_model_coef > 0 "
                "(surprise comes from the world model). Use agent.intrinsic=novelty, or set agent.world_model_coef."
            )

    def reward_bonus(self, reward: Tensor, batch: Transitions) -> dict[str, Tensor]:
        surprise = self.agent.updater.surprise(batch.env, batch.j)
        reward.view(-1)[batch.index] += self.coef * surprise
        # the acting model's surprise, next to the trained one's (world_model/surprise_mean)
        return {"world_model/intrinsic_surprise_mean": surprise.mean()}


# agent.intrinsic's choices (devlearn.config.INTRINSIC), by name
INTRINSIC_REWARDS: dict[str, type[IntrinsicReward]] = {
    kind.name: kind for kind in (IntrinsicReward, NoveltyBonus, SurpriseBonus)
}


def make_intrinsic(cfg: Any) -> IntrinsicReward:
    """The intrinsic reward ``cfg.intrinsic`` names; none at ``intrinsic_coef=0``, whatever the kind."""
    return INTRINSIC_REWARDS[cfg.intrinsic if cfg.intrinsic_coef > 0 else "none"](cfg)
