"""The developmental agent's rollout storage: one stream of steps per sub-env, windows cut from it.

Each sub-env's stream holds, on the training device, the last ``W - 1`` steps before the rollout
(context for the first windows), the rollout's ``n_steps`` steps and the observation after the
last one: ``L = W - 1 + n_steps + 1`` positions. Position ``j`` holds the observation o_j, the
action taken from it, and what that action led to (reward, flags, catastrophe). The window of
step ``j`` is positions ``j - W + 1 .. j`` and the next observation of position ``j`` is
position ``j + 1``, so acting, PPO and the world model all read the same storage and no
observation is stored twice.

Next-step autoreset: after an episode ends at o_j (a final observation, which the stream keeps:
its value bootstraps a truncated episode), the transition from o_j is *fake* (the env ignores the
action and returns the reset observation with reward 0). ``fake`` marks it; it is excluded from
every loss and statistic. Every position carries an episode id; a window slot is valid only if it
belongs to the same episode as the window's last step, so windows never span episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

Tree = Any  # a tensor, or a dict of trees (Dict observations)


def tree_map(fn: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """Apply ``fn`` leaf-wise to one or several trees of the same structure."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v, *(r[k] for r in rest)) for k, v in tree.items()}
    return fn(tree, *rest)


def to_device(obs: Any, device: torch.device) -> Tree:
    """A batch of (numpy) observations -> a tree of tensors on ``device``."""
    return tree_map(lambda x: torch.as_tensor(np.asarray(x)).to(device, non_blocking=True), obs)


def _zeros_like_space(space: spaces.Space, lead: tuple[int, ...], device: torch.device) -> Tree:
    if isinstance(space, spaces.Dict):
        return {k: _zeros_like_space(s, lead, device) for k, s in space.spaces.items()}
    dtype = torch.from_numpy(np.zeros(0, dtype=space.dtype)).dtype
    return torch.zeros(*lead, *space.shape, dtype=dtype, device=device)


class Rollout:
    """Per-sub-env streams of ``L = window - 1 + n_steps + 1`` positions (see the module docstring).

    Rollout step ``t`` lives at position ``first + t`` with ``first = window - 1``.
    """

    def __init__(
        self,
        obs_space: spaces.Space,
        n_actions: int,
        num_envs: int,
        n_steps: int,
        window: int,
        d_model: int,
        device: torch.device,
    ) -> None:
        self.num_envs, self.n_steps, self.window = num_envs, n_steps, window
        self.first = window - 1
        self.length = window - 1 + n_steps + 1
        lead, dev = (num_envs, self.length), device
        self.obs = _zeros_like_space(obs_space, lead, dev)
        self.enc = torch.zeros(*lead, d_model, device=dev)  # encoded observations (acting only)
        self.act = torch.zeros(lead, dtype=torch.long, device=dev)
        self.episode = torch.full(lead, -1, dtype=torch.long, device=dev)
        self.fake = torch.zeros(lead, dtype=torch.bool, device=dev)
        # reward, terminated, truncated, catastrophe of the transition from each position
        self.reward = torch.zeros(lead, device=dev)
        self.terminated = torch.zeros(lead, dtype=torch.bool, device=dev)
        self.truncated = torch.zeros(lead, dtype=torch.bool, device=dev)
        self.catastrophe = torch.zeros(lead, dtype=torch.bool, device=dev)
        self.value = torch.zeros(lead, device=dev)
        self.logp = torch.zeros(lead, device=dev)
        self.allowed = torch.ones(*lead, n_actions, dtype=torch.bool, device=dev)  # the shield's verdict
        self.danger = torch.zeros(*lead, n_actions, device=dev)  # predicted catastrophe prob per action
        self.vetoed = torch.zeros(lead, dtype=torch.bool, device=dev)  # the policy's own choice was masked
        self._offsets = torch.arange(-window + 1, 1, device=dev)

    def begin(self, obs: Tree) -> None:
        """Start the streams at a reset: ``obs`` is every sub-env's first observation."""
        self.episode.fill_(-1)  # the context before the first observation belongs to no episode
        self.fake.zero_()
        self.put_obs(self.first, obs, torch.ones(self.num_envs, dtype=torch.bool, device=self.act.device))

    def put_obs(self, j: int, obs: Tree, start: Tensor) -> None:
        """Store o_j; ``start`` marks the sub-envs where it begins an episode."""
        tree_map(lambda buf, x: buf[:, j].copy_(x), self.obs, obs)
        self.episode[:, j] = self.episode[:, j - 1] + start.long()

    def window_at(self, j: int) -> tuple[Tensor, Tensor, Tensor]:
        """Encoded observations ``(E, W, d)``, actions ``(E, W)`` and validity ``(E, W)`` of step ``j``'s window."""
        s = slice(j - self.window + 1, j + 1)
        valid = self.episode[:, s] == self.episode[:, j : j + 1]
        return self.enc[:, s], self.act[:, s], valid

    def carry_over(self) -> None:
        """After an update: the last ``W`` positions become the next rollout's context and first observation."""
        keep = slice(self.length - self.window, self.length)
        for buf in (
            self.enc,
            self.act,
            self.episode,
            self.fake,
            self.reward,
            self.terminated,
            self.truncated,
            self.catastrophe,
        ):
            buf[:, : self.window] = buf[:, keep].clone()
        tree_map(lambda buf: buf[:, : self.window].copy_(buf[:, keep].clone()), self.obs)

    def positions(self, env: Tensor, j: Tensor) -> Tensor:
        """Flat indices ``(M, W)`` into ``(E * L)`` of the windows of steps at positions ``j`` of sub-envs ``env``."""
        return env[:, None] * self.length + j[:, None] + self._offsets

    def flat(self, buf: Tensor) -> Tensor:
        """``(E, L, ...)`` -> ``(E * L, ...)`` (a view, for indexing with ``positions``)."""
        return buf.reshape(-1, *buf.shape[2:])

    def gather_obs(self, index: Tensor) -> Tree:
        """Observations at flat indices ``index`` (any shape)."""
        return tree_map(lambda buf: self.flat(buf)[index], self.obs)


def gae(
    reward: Tensor,
    value: Tensor,
    last_value: Tensor,
    terminated: Tensor,
    done: Tensor,
    gamma: float,
    lam: float,
) -> Tensor:
    """Generalised advantage estimates ``(E, n)`` for a rollout.

    ``value[:, t]`` is V(o_t) and ``last_value`` V(o_n), the observation after the rollout. A
    terminated step bootstraps nothing; a truncated one bootstraps from V(o_{t+1}), the value of
    its final observation (with next-step autoreset the stream holds it, and acted from it); the
    advantage chain stops at every episode end. Fake steps get values too, but are never used.
    """
    n = reward.shape[1]
    adv = torch.zeros_like(reward)
    running = torch.zeros_like(last_value)
    next_value = last_value
    keep_value = (~terminated).float()
    keep_chain = (~done).float()
    for t in range(n - 1, -1, -1):
        delta = reward[:, t] + gamma * next_value * keep_value[:, t] - value[:, t]
        running = delta + gamma * lam * keep_chain[:, t] * running
        adv[:, t] = running
        next_value = value[:, t]
    return adv
