"""The developmental agent's network: core, policy and value heads, and the world model; and how it acts.

``decide`` (acting) and ``evaluate`` (the update) both read a ``Window`` built by
``devlearn.model.context.SequenceContext``, so the update recomputes exactly what acting computed.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.nn import functional as F

from devlearn.agents.developmental.imagine import can_imagine, imagine
from devlearn.agents.developmental.shield import allowed_actions
from devlearn.model.context import Window
from devlearn.model.core import Core
from devlearn.model.memory import Memory
from devlearn.model.world_model import WorldModel

MASKED = -1e9  # logit of a shielded action: finite, so entropies stay NaN-free
CATASTROPHE_PRIOR_LOGIT = -4.0  # an untrained head says p ~ 0.02, not 0.5: the shield starts open


def _head(d_in: int, d_out: int, std: float) -> nn.Sequential:
    """A small MLP head; the last layer's scale follows CleanRL (0.01 for logits, 1 for values)."""
    head = nn.Sequential(nn.Linear(d_in, d_in), nn.Tanh(), nn.Linear(d_in, d_out))
    nn.init.orthogonal_(head[0].weight, np.sqrt(2))
    nn.init.orthogonal_(head[2].weight, std)
    nn.init.zeros_(head[0].bias)
    nn.init.zeros_(head[2].bias)
    return head


def masked_log_softmax(logits: Tensor, allowed: Tensor | None) -> Tensor:
    """Log-probabilities with shielded actions (``allowed`` False) at probability 0."""
    return F.log_softmax(logits if allowed is None else logits.masked_fill(~allowed, MASKED), dim=-1)


class Decision(NamedTuple):
    """One acting step for a batch of windows."""

    action: Tensor  # (B,) the action taken (shielded)
    choice: Tensor  # (B,) what the policy would have taken without the shield, same random draw
    logp: Tensor  # (B,) log-probability of ``action`` under the shielded policy
    value: Tensor  # (B,)
    allowed: Tensor | None  # (B, A) the shield's verdict, None when it is off
    danger: Tensor | None  # (B, A) imagined risk per action (agents/developmental/imagine.py), None without imagining
    plan: Tensor | None = None  # (B, A, H) each candidate's imagined action sequence


class Evaluation(NamedTuple):
    """The update's view of a batch of windows (with gradients)."""

    logp: Tensor  # (B,) log-probability of the stored action under the (re-applied) shield
    entropy: Tensor  # (B,)
    value: Tensor  # (B,)
    h_act: Tensor  # (B, W, d) states after each (o_t, a_t) (the last ``last`` only): the world model's input
    logits: Tensor  # (B, A) the policy's logits, unshielded (what imagination teaches)


class DevelopmentalNet(nn.Module):
    """Core, memory, policy and value heads, and (when ``cfg`` has a ``world_model`` section) the world model.

    The ablation's config has no world model, so none is built: no parameters, no shield.
    """

    def __init__(self, obs_space: spaces.Space, act_space: spaces.Discrete, cfg: Any) -> None:
        super().__init__()
        self.core = Core(obs_space, act_space, cfg.core)
        d = cfg.core.d_model
        # memory beyond the window (ssm, retrieval, hybrid); none and window need no module
        self.memory: Memory | None = None
        if cfg.memory.variant not in ("none", "window"):
            self.memory = Memory(d, cfg.memory)
        self.actor = _head(d, int(act_space.n), std=0.01)
        self.critic = _head(d, 1, std=1.0)
        self.world_model: WorldModel | None = None
        self.shield_tau: float | None = None  # nothing imagines consequences without a world model: no shield
        self.horizon, self.imagine_gamma, self.imagines = 1, 1.0, False
        if "world_model" in cfg:  # the ablation's schema has no world model, nor its weight or the shield's tau
            self.world_model = WorldModel(d, self.core.encoder, act_space, cfg.world_model)
            nn.init.constant_(self.world_model.catastrophe_head[-1].bias, CATASTROPHE_PRIOR_LOGIT)
            self.shield_tau = float(cfg.shield_tau)
            # imagining past one step needs whole decoded observations; it runs when it shields or teaches
            self.horizon = int(cfg.imagine.horizon) if can_imagine(self.world_model) else 1
            self.imagine_gamma = float(cfg.imagine.gamma)
            self.imagines = self.shield_on or bool(cfg.imagine.train)
        self.register_buffer("candidates", torch.arange(int(act_space.n)), persistent=False)

    @property
    def shield_on(self) -> bool:
        """Whether ``decide`` masks the actions whose imagined consequence is likely a catastrophe (tau < 1)."""
        return self.shield_tau is not None and self.shield_tau < 1.0

    def decide(self, w: Window, deterministic: bool, gen: torch.Generator, last_obs: Any = None) -> Decision:
        """Act on a batch of windows: imagine every action's consequence (shield), then sample or argmax.

        ``last_obs``: the windows' last raw observations; without them imagination looks one step ahead.
        """
        danger = allowed = plan = None
        if self.imagines:
            horizon = self.horizon if last_obs is not None else 1
            im = imagine(
                self.core, self.world_model, self.actor, w, last_obs, self.candidates, horizon, self.imagine_gamma
            )
            h, danger, plan = im.h_obs, im.risk, im.plan
            if self.shield_on:
                allowed = allowed_actions(danger, self.shield_tau)
        else:
            h = self.core.states(w.obs, w.act, w.valid, w.memory, last=1)[0][:, -1]
        logits = self.actor(h)
        logp_all = masked_log_softmax(logits, allowed)
        noise = 0.0
        if not deterministic:  # Gumbel-max: one draw samples both the shielded and the unshielded choice
            u = torch.rand(logits.shape, generator=gen, device=logits.device)
            noise = -torch.log(-torch.log(u))
        action = (logp_all + noise).argmax(-1)
        choice = (logits + noise).argmax(-1)
        logp = logp_all.gather(-1, action[:, None]).squeeze(-1)
        return Decision(action, choice, logp, self.critic(h).squeeze(-1), allowed, danger, plan)

    def evaluate(self, w: Window, allowed: Tensor | None, last: int | None = None) -> Evaluation:
        """Log-probability of the windows' last actions (under the stored shield mask), entropy, value.

        ``last``: ``h_act`` of the last ``last`` steps only (what the world-model loss reads; cheaper).
        """
        h_obs, h_act = self.core.states(w.obs, w.act, w.valid, w.memory, last=last)
        h = h_obs[:, -1]
        logits = self.actor(h)
        logp_all = masked_log_softmax(logits, allowed)
        logp = logp_all.gather(-1, w.act[:, -1:]).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return Evaluation(logp, entropy, self.critic(h).squeeze(-1), h_act, logits)
