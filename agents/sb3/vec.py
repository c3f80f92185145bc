"""Serve a Gymnasium ``VectorEnv`` to Stable-Baselines3, which expects its own ``VecEnv`` API.

Gymnasium 1.x vector envs autoreset on the *next* step; SB3 expects the reset observation in the
*same* step, with the last observation in ``info["terminal_observation"]``. This adapter resets
finished sub-envs at once with ``reset(options={"reset_mask": done})``, keeps the final observation,
and gives SB3 Monitor-style ``info["episode"]`` (plus devlearn's ``cost``, ``catastrophe`` and
``success`` per finished episode) so nothing a logger needs is dropped. Every step's info also carries
``step_cost``, the step's own ``info["cost"]`` (0 on a step that is not a real transition), which
PPO-Lagrangian's cost critic learns from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from copy import deepcopy
from functools import partial
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import FilterObservation, FlattenObservation
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvWrapper

from devlearn.envs.vector.episodes import EpisodeStats, info_array, real_transitions
from devlearn.model.novelty import EpisodicNovelty, byte_keys


def sb3_observation_wrappers(space: gymnasium.spaces.Space) -> list[Callable[[gymnasium.Env], gymnasium.Env]]:
    """Wrappers that make a Gymnasium observation space usable by SB3's MLP policy, or none if it already is.

    Entries that cannot be flattened to numbers (``Text``, MiniGrid's mission string) are dropped, and a
    ``Dict`` is flattened: SB3's ``MultiInputPolicy`` sends uint8 images to a CNN that rejects MiniGrid's 7x7 views.
    """
    wrappers = drop_non_numeric(space)
    if isinstance(space, spaces.Dict):
        wrappers.append(FlattenObservation)
    return wrappers


def drop_non_numeric(space: gymnasium.spaces.Space) -> list[Callable[[gymnasium.Env], gymnasium.Env]]:
    """A wrapper dropping the ``Dict`` entries that are not numbers (MiniGrid's mission string), if any."""
    if isinstance(space, spaces.Dict):
        keep = [key for key, sub in space.spaces.items() if _numeric(sub)]
        if len(keep) < len(space.spaces):
            return [partial(FilterObservation, filter_keys=keep)]
    return []


def _numeric(space: spaces.Space) -> bool:
    try:
        return space.is_np_flattenable and not isinstance(space, spaces.Text)
    except NotImplementedError:  # custom spaces (MiniGrid's MissionSpace) do not say
        return False


def _index(obs: Any, i: int) -> Any:
    if isinstance(obs, dict):
        return {k: _index(v, i) for k, v in obs.items()}
    return np.array(obs[i])


class SB3VecEnv(VecEnv):
    """A Stable-Baselines3 ``VecEnv`` over a Gymnasium next-step-autoreset ``VectorEnv``."""

    def __init__(self, env: gymnasium.vector.VectorEnv):
        self.env = env  # before super().__init__, which asks get_attr("render_mode")
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self.stats = EpisodeStats(env.num_envs)
        self._actions: np.ndarray | None = None
        self._t0 = time.time()

    def reset(self):
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
        obs, _ = self.env.reset(seed=seed)
        self._reset_seeds()
        self.stats = EpisodeStats(self.num_envs)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        self.stats.update(reward, info, terminated=terminated)
        done = terminated | truncated
        n = self.num_envs
        step_cost = np.where(real_transitions(info, n), info_array(info, "cost", 0.0, n).astype(float), 0.0)
        infos: list[dict[str, Any]] = [{"step_cost": float(c)} for c in step_cost]
        if done.any():
            finished = self.stats.pop(done)
            final_obs = deepcopy(obs)
            obs, _ = self.env.reset(options={"reset_mask": done})
            for i, ep in zip(np.flatnonzero(done), finished, strict=True):
                infos[i] |= {
                    "terminal_observation": _index(final_obs, i),
                    "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                    "episode": {"r": ep["return"], "l": ep["length"], "t": round(time.time() - self._t0, 6)},
                    **{k: ep[k] for k in ("cost", "catastrophe", "success")},
                }
        return obs, reward.astype(np.float32), done, infos

    def close(self) -> None:
        self.env.close()

    # SB3 calls these for wrappers and rendering; the vector env holds no per-sub-env Python objects.
    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.env, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        return [getattr(self.env, method_name)(*args, **kwargs)] * len(self._indices(indices))

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices: Any) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else indices


class NoveltyBonus(VecEnvWrapper):
    """Adds ``coef`` x episodic novelty of the next observation to SB3's rewards (``agent.intrinsic=novelty``).

    A state is its observation's raw bytes (``byte_keys``: SB3's baselines have no latent). The bonus of a
    step is that of the state it reached: the new observation, or ``info["terminal_observation"]`` when the
    episode ended (the returned observation then begins the next episode, which earns nothing). ``info``,
    and with it Monitor's ``info["episode"]`` return, stays the env's: only the learner's rewards change.
    """

    def __init__(self, venv: VecEnv, coef: float) -> None:
        super().__init__(venv)
        self.coef = float(coef)
        self.novelty = EpisodicNovelty(self.num_envs)

    def reset(self):
        obs = self.venv.reset()
        self.novelty.bonus(byte_keys(obs, self.num_envs), np.ones(self.num_envs, dtype=bool))
        return obs

    def step_wait(self):
        obs, reward, done, infos = self.venv.step_wait()
        reached = obs
        if done.any():  # the state each finished episode ended in, in place of the next episode's first
            reached = deepcopy(obs)
            for i in np.flatnonzero(done):
                _assign(reached, i, infos[i]["terminal_observation"])
        bonus = self.novelty.bonus(byte_keys(reached, self.num_envs), np.zeros(self.num_envs, dtype=bool))
        if done.any():  # the new episodes begin: their first observations are seen, and earn nothing
            self.novelty.bonus(byte_keys(obs, self.num_envs), done)
        return obs, (reward + self.coef * bonus).astype(np.float32), done, infos


def _assign(obs: Any, i: int, value: Any) -> None:
    if isinstance(obs, dict):
        for k in obs:
            _assign(obs[k], i, value[k])
    else:
        obs[i] = value
