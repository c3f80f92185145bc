"""The shared machinery of the numpy batched twins.

A twin runs ``num_envs`` copies of one environment as arrays and must behave exactly like
``gymnasium.vector.SyncVectorEnv`` over the single env: the same seeds give the same layouts,
the same actions give the same observations, rewards, flags and infos, autoreset included.
This base owns what is common to every twin:

* one ``np.random.Generator`` per sub-env, seeded as ``SyncVectorEnv`` seeds its sub-envs
  (``seed + i``), so layout generation can call the single env's own generator code;
* next-step autoreset (Gymnasium 1.x's default): the step after an episode ends returns the
  reset observation, reward 0 and the reset info for that sub-env;
* episode statistics: on the step an episode ends, ``info["episode"]`` holds its return ``r``,
  length ``l``, summed ``cost`` and whether a ``catastrophe`` happened, masked by
  ``info["_episode"]``, so loggers never lose a finished episode's figures.

Subclasses implement ``_reset_envs``, ``_step_envs`` and ``_observe``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from devlearn.envs.actions import InvalidActionError
from devlearn.envs.vector.episodes import EpisodeStats


class BatchedEnv(VectorEnv):
    """Base class for a numpy twin of a single Gymnasium env (see the module docstring)."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int,
        single_observation_space: spaces.Space,
        single_action_space: spaces.Space,
        env_id: str,
    ):
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}.")
        self.num_envs = int(num_envs)
        self.env_id = env_id
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = batch_space(single_observation_space, self.num_envs)
        self.action_space = batch_space(single_action_space, self.num_envs)
        self.np_randoms: list[np.random.Generator] = [seeding.np_random()[0] for _ in range(self.num_envs)]
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)
        self._episodes = EpisodeStats(self.num_envs)

    # --- what a twin implements -------------------------------------------------------------
    def _reset_envs(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Start new episodes in sub-envs ``idx`` with ``self.np_randoms[i]``.

        Returns reset-info arrays of length ``len(idx)`` (``cost`` and ``catastrophe`` are added here).
        """
        raise NotImplementedError

    def _step_envs(
        self, actions: np.ndarray, idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Step sub-envs ``idx`` with ``actions[idx]``.

        Returns ``reward, terminated, truncated, cost, catastrophe, info``: arrays of length ``len(idx)``.
        """
        raise NotImplementedError

    def _observe(self) -> Any:
        """The batched observation of all sub-envs."""
        raise NotImplementedError

    # --- the shared contract -----------------------------------------------------------------
    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset the sub-envs; ``seed=s`` seeds sub-env ``i`` with ``s + i``, as SyncVectorEnv does.

        ``options={"reset_mask": mask}`` resets only the sub-envs where ``mask`` is True (Gymnasium 1.x's
        convention), which is how same-step-autoreset learners such as Stable-Baselines3 are served.
        """
        mask = np.ones(self.num_envs, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"])
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},).")
        if seed is not None:
            seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"Got {len(seeds)} seeds for {self.num_envs} environments.")
            for i, s in enumerate(seeds):
                if s is not None and mask[i]:
                    self.np_randoms[i], _ = seeding.np_random(s)
        idx = np.flatnonzero(mask)
        extra = self._start_episodes(idx)
        info: dict[str, np.ndarray] = {}
        self._merge(info, {"cost": np.zeros(len(idx)), "catastrophe": np.zeros(len(idx), dtype=bool)}, idx)
        self._merge(info, extra, idx)
        return self._observe(), info

    def step(self, actions: Any):
        actions = np.asarray(actions)
        if actions.shape != self.action_space.shape or not self.action_space.contains(
            actions.astype(self.action_space.dtype, copy=False)
        ):
            raise InvalidActionError(
                f"{self.env_id}: actions {actions.tolist()!r} are not in the batched action space "
                f"{self.action_space} ({self.num_envs} sub-envs, each {self.single_action_space})."
            )
        n = self.num_envs
        reward = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        cost = np.zeros(n, dtype=np.float64)
        catastrophe = np.zeros(n, dtype=bool)
        info: dict[str, np.ndarray] = self._everyone({"cost": cost, "catastrophe": catastrophe})

        real = ~self._needs_reset  # a sub-env that ended last step only resets now (next-step autoreset)
        resetting, stepping = np.flatnonzero(~real), np.flatnonzero(real)
        if len(resetting):
            self._merge(info, self._start_episodes(resetting), resetting)
        if len(stepping):
            r, te, tr, c, cat, extra = self._step_envs(actions, stepping)
            reward[stepping], terminated[stepping], truncated[stepping] = r, te, tr
            cost[stepping], catastrophe[stepping] = c, cat
            self._merge(info, extra, stepping)
            self._episodes.add(real, reward, cost, catastrophe)

        done = terminated | truncated
        self._episodes.write_info(info, done)
        self._needs_reset = done
        return self._observe(), reward, terminated, truncated, info

    def _start_episodes(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        extra = self._reset_envs(idx)
        self._needs_reset[idx] = False
        self._episodes.clear(idx)
        return extra

    def _everyone(self, info: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Keys every sub-env reports get an all-True mask (Gymnasium's `_key` info convention).
        return {**info, **{f"_{k}": np.ones(self.num_envs, dtype=bool) for k in info}}

    def _merge(self, info: dict[str, np.ndarray], extra: dict[str, Any], idx: np.ndarray) -> None:
        """Write per-sub-env values for ``idx`` into ``info`` and set their ``_key`` masks, as SyncVectorEnv does."""
        for key, values in extra.items():
            values = np.asarray(values)
            if key not in info:
                if values.dtype.kind in "UOS":  # strings stay whole: object arrays, like SyncVectorEnv
                    info[key] = np.full(self.num_envs, None, dtype=object)
                else:
                    info[key] = np.zeros((self.num_envs, *values.shape[1:]), dtype=values.dtype)
                info[f"_{key}"] = np.zeros(self.num_envs, dtype=bool)
            info[key][idx] = values
            info[f"_{key}"][idx] = True
