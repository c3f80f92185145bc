"""Dynamic evaluation: the world model keeps learning within an episode, at evaluation time.

Within one episode the same rooms, objects and rules come back; a world model that takes a few
gradient steps on the episode so far predicts the rest of it better (dynamic evaluation of language
models, Krause et al. 2018). ``DynamicEvalPolicy`` acts like ``DevelopmentalPolicy`` and, after every
real transition, trains a *copy* of the network:

1. score the transition (o_t, a_t) -> o_{t+1} under the copy *before* learning from it, and under the
   saved network (the prequential figures: ``loss_dynamic`` and ``loss_static``, same transitions);
2. take ``steps`` AdamW steps (its own ``lr``) on the world-model loss of the episode's last
   ``batch`` transitions, each predicted from its own window, as in training;
3. optionally "sleep": move the trained weights a fraction ``sleep`` back towards the pre-episode
   weights, so the episode's lessons cannot drift far from what training found.

Only the world model trains unless ``train_core`` (then the core too, and so the policy's own view).
Each episode starts again from the saved weights. The agent's network is never written to: the copy
is made once, reset from a snapshot of the agent's state at each episode start, and the checkpoint
file is not opened for writing at all.

One env at a time (``num_envs=1``): each episode needs its own copy of the weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from devlearn.envs.vector.episodes import info_array
from devlearn.errors import ConfigError
from devlearn.model.context import Window, to_device, tree_map


@dataclass
class DynamicEvalConfig:
    """How the world model keeps learning within an episode (``devlearn eval ... dynamic_eval=true``)."""

    lr: float = 1e-3  # its own AdamW LR (no weight decay: ``sleep`` is the pull back)
    steps: int = 1  # gradient steps per env step
    batch: int = 32  # the episode's most recent transitions each step learns from
    sleep: float = 0.0  # after each env step, move the weights this fraction back to the pre-episode ones
    train_core: bool = False  # also train the core (and so change what the policy sees)


def validate_dynamic_eval(cfg: DynamicEvalConfig) -> None:
    """Raise ``ConfigError`` naming the option and its allowed range."""
    if not cfg.lr > 0:
        raise ConfigError(f"dynamic_lr={cfg.lr!r} must be > 0.")
    if cfg.steps < 1 or cfg.batch < 1:
        raise ConfigError(f"dynamic_steps={cfg.steps!r} and dynamic_batch={cfg.batch!r} must be >= 1.")
    if not 0 <= cfg.sleep <= 1:
        raise ConfigError(
            f"dynamic_sleep={cfg.sleep!r} must be in [0, 1] (0: no pull back, 1: no learning kept)."
        )


class DynamicEvalPolicy:
    """A ``Policy`` (``policy(obs, episode_start) -> actions``) whose world model learns within each episode.

    ``observe(next_obs, reward, terminated, truncated, info, after_done)`` must follow each env step
    (``run_episodes`` calls it): it is where the transition is scored and learned from.
    ``losses_static`` and ``losses_dynamic`` list the per-transition world-model loss of every real
    transition seen, under the saved and the adapting network.
    """

    def __init__(self, agent: Any, cfg: DynamicEvalConfig | None = None, deterministic: bool = True) -> None:
        self.cfg = cfg = cfg or DynamicEvalConfig()
        validate_dynamic_eval(cfg)
        if agent.wm is None:
            raise ConfigError(f"dynamic evaluation needs a world model; agent={agent.cfg.name} has none.")
        if agent.net.memory is not None:  # its windows are its own and carry no memory tokens
            raise ConfigError(
                f"dynamic evaluation does not replay memory; this run has memory={agent.net.memory.cfg.variant}. "
                "Evaluate it without dynamic_eval, or train with memory=window."
            )
        self.agent, self.deterministic, self.device = agent, deterministic, agent.device
        self.static = agent.net  # read only
        self.net = copy.deepcopy(agent.net)  # the copy that learns
        self.net.train(False)
        # the snapshot each episode starts from: clones, so nothing here aliases the agent's tensors
        self.initial = {k: v.detach().clone() for k, v in agent.net.state_dict().items()}
        modules = [self.net.world_model] + ([self.net.core] if cfg.train_core else [])
        self.params = list({id(p): p for m in modules for p in m.parameters() if p.requires_grad}.values())
        self.initial_params = [p.detach().clone() for p in self.params]
        self.window = int(agent.cfg.core.window)
        self.k = min(int(agent.cfg.world_model.k), self.window)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(agent.seed + 1)
        self.losses_static: list[float] = []
        self.losses_dynamic: list[float] = []
        self._begin(None)

    # --- episode bookkeeping -------------------------------------------------------------------
    def _begin(self, obs: Any) -> None:
        """A new episode: the saved weights, a fresh optimizer, an empty record."""
        self.net.load_state_dict(self.initial)
        self.optimizer = torch.optim.AdamW(self.params, lr=self.cfg.lr, weight_decay=0.0)
        self.obs: list[Any] = [] if obs is None else [obs]
        self.act: list[int] = []
        self.flags: list[tuple[float, bool, bool, bool]] = []  # reward, terminated, catastrophe, done

    def observe(
        self, next_obs: Any, reward: Any, terminated: Any, truncated: Any, info: dict, after_done: Any
    ) -> None:
        """The outcome of the last action (``run_episodes`` calls it right after ``env.step``): learn from it.

        ``after_done`` marks a next-step autoreset (the last step ended an episode), which is no transition.
        """
        if bool(np.asarray(after_done)[0]):
            return
        if len(self.obs) != len(self.act):
            raise RuntimeError(
                "observe() must follow each call of the policy exactly once (see run_episodes)."
            )
        fell = bool(info_array(info, "catastrophe", False, 1)[0])
        term, trunc = bool(np.asarray(terminated)[0]), bool(np.asarray(truncated)[0])
        self.obs.append(tree_map(lambda x: x[0], to_device(next_obs, self.device)))
        self.flags.append((float(np.asarray(reward)[0]), term, fell, term or trunc))
        self._learn()

    def __call__(self, obs: Any, episode_start: np.ndarray) -> np.ndarray:
        if len(episode_start) != 1:
            raise ValueError(
                f"dynamic evaluation runs one env at a time (got {len(episode_start)}): use num_envs=1."
            )
        if bool(episode_start[0]) or not self.obs:
            self._begin(tree_map(lambda x: x[0], to_device(obs, self.device)))
        elif len(self.obs) != len(self.act) + 1:
            raise RuntimeError("call observe() after each env step (run_episodes does).")
        return self._act()

    # --- windows -------------------------------------------------------------------------------
    def _stacked(self) -> tuple[Any, Tensor]:
        """The episode's observations ``(T + 1, ...)`` and actions ``(T,)`` as tensors."""
        obs = tree_map(lambda *xs: torch.stack(xs), *self.obs)
        return obs, torch.as_tensor(self.act, dtype=torch.long, device=self.device)

    def _windows(self, ends: Tensor, obs: Any, act: Tensor) -> tuple[Tensor, Any, Tensor, Tensor]:
        """Positions ``(B, W)`` of the windows ending at steps ``ends``, their raw observations,
        actions (padded with 0) and validity (False before the episode's start)."""
        pos = ends[:, None] + torch.arange(-self.window + 1, 1, device=self.device)
        valid = pos >= 0
        pos = pos.clamp(min=0)
        padded = torch.cat([act, act.new_zeros(1)])  # the acting step's action is a placeholder
        return pos, tree_map(lambda x: x[pos], obs), padded[pos], valid

    def _loss(self, net: Any, ends: Tensor, obs: Any, act: Tensor) -> tuple[Tensor, Tensor]:
        """World-model loss (mean) and per-transition surprise of the transitions ending windows at ``ends``."""
        pos, o, a, valid = self._windows(ends, obs, act)
        k = self.k
        h_act = net.core.states(net.core.encoder(o), a, valid, last=k)[1]
        nxt = (pos[:, -k:] + 1).clamp(max=len(self.obs) - 1)
        flags = torch.as_tensor(self.flags, dtype=torch.float32, device=self.device)[pos[:, -k:]]  # (B, k, 4)
        batch = {
            "obs": tree_map(lambda x: x[pos[:, -k:]], obs),
            "next_obs": tree_map(lambda x: x[nxt], obs),
            "reward": flags[..., 0],
            "terminated": flags[..., 1] > 0,
            "catastrophe": flags[..., 2] > 0,
            "done": flags[..., 3] > 0,
            "mask": valid[:, -k:],
            "action": a[:, -k:],
        }
        total, _, surprise = net.world_model.loss(h_act[:, -k:], batch)
        return total, surprise

    def _learn(self) -> None:
        """Score the newest transition under both networks, then train the copy on the recent ones."""
        obs, act = self._stacked()
        t = len(self.flags) - 1
        newest = torch.tensor([t], device=self.device)
        with torch.no_grad():
            self.losses_static.append(float(self._loss(self.static, newest, obs, act)[0]))
            self.losses_dynamic.append(float(self._loss(self.net, newest, obs, act)[0]))
        ends = torch.arange(max(0, t + 1 - self.cfg.batch), t + 1, device=self.device)
        for _ in range(self.cfg.steps):
            loss = self._loss(self.net, ends, obs, act)[0]
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.optimizer.step()
        if self.cfg.sleep > 0:
            with torch.no_grad():
                for p, p0 in zip(self.params, self.initial_params, strict=True):
                    p.lerp_(p0, self.cfg.sleep)

    def _act(self) -> np.ndarray:
        obs, act = self._stacked()
        t = len(self.obs) - 1
        with torch.no_grad():
            _, o, a, valid = self._windows(torch.tensor([t], device=self.device), obs, act)
            w = Window(self.net.core.encoder(o), a, valid)
            action = self.net.decide(w, self.deterministic, self.gen).action
        self.act.append(int(action[0]))
        return action.cpu().numpy()

    def summary(self) -> dict[str, float]:
        """Mean world-model loss per real transition, without and with dynamic evaluation."""
        n = len(self.losses_static)
        static = float(np.mean(self.losses_static)) if n else float("nan")
        dynamic = float(np.mean(self.losses_dynamic)) if n else float("nan")
        return {"wm_loss_static": static, "wm_loss_dynamic": dynamic, "wm_transitions": n}
