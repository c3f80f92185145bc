"""What PPO and the world model learn from, per step, aligned with the context's streams.

``SequenceContext`` (devlearn/model/context.py) holds what the core sees (observations, actions,
episodes). ``RolloutBuffer`` holds, at the same ``(E, L)`` positions, what each step led to and
what acting recorded: position ``j`` describes the transition from o_j. ``carry_over`` shifts
both together, so the world model's k-step targets at a segment's start reach into the previous
segment's steps.

A transition is *real* unless it was a next-step autoreset (the env ignored the action and
returned the reset observation) or a ParallelVectorEnv sub-env waiting for its copy; only real
transitions enter a loss or a statistic.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from devlearn.model.context import SequenceContext


class Transitions(NamedTuple):
    """The transitions an update learns from: flat ``(env, t)`` indices into the segment, their sub-envs and positions."""

    index: Tensor  # (M,) into (E * n_steps)
    env: Tensor  # (M,) index // n_steps
    j: Tensor  # (M,) the context's position, first + index % n_steps


class RolloutBuffer:
    """Per-position rewards, flags, values, log-probabilities and shield records, ``(E, L[, A])``."""

    def __init__(self, context: SequenceContext, n_actions: int) -> None:
        lead, dev = (context.num_envs, context.length), context.act.device
        self.context = context
        self.reward = torch.zeros(lead, device=dev)
        self.terminated = torch.zeros(lead, dtype=torch.bool, device=dev)
        self.truncated = torch.zeros(lead, dtype=torch.bool, device=dev)
        self.catastrophe = torch.zeros(lead, dtype=torch.bool, device=dev)
        self.real = torch.zeros(lead, dtype=torch.bool, device=dev)
        self.value = torch.zeros(lead, device=dev)
        self.logp = torch.zeros(lead, device=dev)
        self.allowed = torch.ones(*lead, n_actions, dtype=torch.bool, device=dev)  # the shield's verdict
        self.danger = torch.zeros(*lead, n_actions, device=dev)  # predicted catastrophe prob per action
        self.vetoed = torch.zeros(lead, dtype=torch.bool, device=dev)  # the policy's own choice was masked
        self.last_value = torch.zeros(context.num_envs, device=dev)  # V(o_n) after the segment: GAE's bootstrap

    def begin(self) -> None:
        """At a reset: nothing before the first observation is a real transition."""
        self.real.zero_()

    def carry_over(self) -> None:
        """Shift the context and these buffers together (see ``SequenceContext.carry_over``)."""
        self.context.carry_over(self.reward, self.terminated, self.truncated, self.catastrophe, self.real)

    def segment(self) -> slice:
        """The positions of this segment's ``n_steps`` transitions."""
        c = self.context
        return slice(c.first, c.first + c.n_steps)

    def at(self, buf: Tensor, pos: Tensor) -> Tensor:
        """``buf`` (``(E, L, ...)``) at flat positions ``pos``."""
        return self.context.flat(buf)[pos]
