"""Rollout collection: ``n_steps`` of acting per sub-env into the sequence context and the rollout buffer.

Each step: ``net.decide`` on ``context.acting_window(j)`` (for Discrete actions with the shield on, one
core pass yields the state after o_t and the imagined state after each candidate action; actions
whose predicted catastrophe probability is above ``shield_tau`` are masked, and the mask is stored
with the step so that the update compares the same, masked, distributions); the env steps; what the
step led to goes into the rollout buffer at position ``j``, the next observation into the context at
``j + 1``. The intrinsic reward and the monitor are called at fixed points (their hooks), so that
neither a new bonus nor a new figure needs a branch here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from devlearn import distributed
from devlearn.agents.developmental.intrinsic import IntrinsicReward
from devlearn.agents.developmental.monitor import TrainingMonitor
from devlearn.agents.developmental.net import DevelopmentalNet
from devlearn.agents.developmental.rollout import RolloutBuffer
from devlearn.envs.vector.episodes import EpisodeStats, info_array, real_transitions
from devlearn.model.context import SequenceContext, to_device, tree_map


def acting_surprise(net: DevelopmentalNet, C: SequenceContext, j: int, next_obs: Any, real: Tensor) -> Tensor:
    """Surprise of o_{j+1} under the world model that acted (``memory.write=surprise`` gates the store on it).

    ``C``: the context that acted (training's, or an evaluation policy's); ``real``: ``(E,)`` bool, False
    where o_{j+1} begins a new episode. Such a first observation cannot be predicted from the last
    episode: its surprise is infinite, so it is always stored (Recall's fact, Inbox's instruction) and
    never evicted. Surprise reads only the observations, so evaluation (no rewards) measures it too.
    """
    w = C.acting_window(j)  # its last action is now the one taken
    h_act = net.core.states(w.obs, w.act, w.valid, w.memory, last=1)[1]
    obs = tree_map(lambda b: b[:, j : j + 1], C.obs)
    surprise = net.world_model.surprise(h_act, obs, tree_map(lambda x: x[:, None], next_obs))[:, 0]
    return torch.where(real, surprise, torch.inf)


class Collector:
    """Acts in ``env`` one rollout at a time (``collect``) and counts the env steps taken (``num_timesteps``).

    Args:
        net: the network that acts (read only here).
        env: a next-step-autoreset ``VectorEnv``.
        context, rollout: where acting writes; the update reads both.
        gen: the agent's sampling generator (the policy's draws).
        intrinsic: the intrinsic reward's callbacks (``on_reset``, ``on_step``).
        monitor: the run's monitor (``on_decision``: the shield measured against the world).
        surprise_writes: memory stores only what the world model failed to predict: measure surprise.
    """

    def __init__(
        self,
        net: DevelopmentalNet,
        env: Any,
        context: SequenceContext,
        rollout: RolloutBuffer,
        gen: torch.Generator,
        intrinsic: IntrinsicReward,
        monitor: TrainingMonitor,
        surprise_writes: bool,
    ) -> None:
        self.net, self.env, self.context, self.rollout, self.gen = net, env, context, rollout, gen
        self.intrinsic, self.monitor, self.surprise_writes = intrinsic, monitor, surprise_writes
        self.device, self.num_envs = context.act.device, context.num_envs
        self.num_timesteps = 0  # all ranks' env steps
        self.after_done = np.zeros(self.num_envs, dtype=bool)  # the next step of a sub-env only resets
        self.stats = EpisodeStats(self.num_envs)

    def start(self, seed: int) -> None:
        """Reset the envs at ``seed``: every episode begins at the context's first position."""
        obs, _ = self.env.reset(seed=seed)
        with torch.inference_mode():
            self.context.begin(to_device(obs, self.device), self.net.core.encoder)
        self.intrinsic.on_reset()
        self.rollout.begin()
        self.after_done[:] = False
        self.stats = EpisodeStats(self.num_envs)

    def collect(self) -> list[dict[str, Any]]:
        """One rollout of ``n_steps`` per env, and the bootstrap value after it; returns the finished episodes."""
        C, net = self.context, self.net
        finished: list[dict[str, Any]] = []
        with torch.inference_mode():
            C.reencode(net.core.encoder, C.first)  # the parameters changed in the last update
            for t in range(C.n_steps):
                finished += self._step(t)
            self.rollout.last_value = net.decide(C.acting_window(C.length - 1), True, self.gen).value
        return finished

    def _step(self, t: int) -> list[dict[str, Any]]:
        """Act at segment step ``t`` (position ``first + t``), step the envs, record; returns the episodes that ended."""
        C, R, net = self.context, self.rollout, self.net
        j = C.first + t
        d = net.decide(C.acting_window(j), False, self.gen, last_obs=tree_map(lambda b: b[:, j], C.obs))
        C.act[:, j], R.logp[:, j], R.value[:, j] = d.action, d.logp, d.value
        actions = d.action.cpu().numpy()
        if d.danger is not None:  # every action's imagined risk: the update learns from it (imagine.train)
            R.danger[:, j] = d.danger
        if net.shield_on:  # the shield's verdict, re-applied by the update
            R.allowed[:, j] = d.allowed
            R.vetoed[:, j] = d.choice != d.action
        self.monitor.on_decision(self.env, t, d, ~self.after_done)
        obs, reward, terminated, truncated, info = self.env.step(actions)
        real = real_transitions(info, self.num_envs, after_done=self.after_done)
        fell = info_array(info, "catastrophe", False, self.num_envs).astype(bool)
        self.stats.update(reward, info, real=real, terminated=terminated)
        done = (terminated | truncated) & real
        finished = self.stats.pop(done)
        flags = np.stack([reward, terminated, truncated, fell, real]).astype(np.float32)
        flags = torch.as_tensor(flags).to(self.device, non_blocking=True)  # one transfer
        R.reward[:, j] = flags[0]
        R.terminated[:, j], R.truncated[:, j] = flags[1] > 0, flags[2] > 0
        R.catastrophe[:, j], R.real[:, j] = flags[3] > 0, flags[4] > 0
        # after a step that was not real (an autoreset), the observation begins a new episode
        obs = to_device(obs, self.device)
        if self.surprise_writes:
            C.surprise[:, j + 1] = acting_surprise(net, C, j, obs, flags[4] > 0)
        C.put(j + 1, obs, flags[4] == 0, net.core.encoder)
        self.intrinsic.on_step(j, real)
        self.after_done = done
        self.num_timesteps += self.num_envs * distributed.world_size()
        return finished
