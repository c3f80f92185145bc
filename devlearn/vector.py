"""Batched environments for training: the bundled numpy twins, Gymnasium's SyncVectorEnv for any id,
or ``ParallelVectorEnv`` (one sub-env per learner) for PettingZoo ids."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium
import numpy as np

from devlearn.config import ConfigError
from devlearn.parallel_vector import ParallelVectorEnv, default_agents
from devlearn.registry import make, spec


def accepts_kwarg(env_id: str, name: str) -> bool:
    """Whether ``env_id``'s entry point takes the keyword ``name`` (e.g. ``split``)."""
    try:
        params = inspect.signature(spec(env_id).load()).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def make_vector_env(
    env_id: str,
    num_envs: int,
    vectorization: str = "auto",
    wrappers: Sequence[Callable[[gymnasium.Env], gymnasium.Env]] = (),
    **kwargs: Any,
) -> gymnasium.vector.VectorEnv:
    """A next-step-autoreset ``VectorEnv`` of ``num_envs`` copies of ``env_id``.

    ``vectorization="auto"`` takes the id's batched twin (its ``vector_entry_point``) when it has one,
    else Gymnasium's ``SyncVectorEnv``; ``"twin"`` insists on the twin; ``"sync"`` never uses it.
    ``wrappers`` apply to each single env, so asking for them means ``SyncVectorEnv``.

    A PettingZoo id gives a ``ParallelVectorEnv``: its learner agents share one policy, each learner of
    each copy is one sub-env, and ``num_envs`` is rounded down to whole copies (at least one), so the
    returned env's ``num_envs`` may be smaller than asked for.
    """
    entry = spec(env_id)
    if entry.api == "pettingzoo":
        if wrappers:
            raise ConfigError(
                f"{env_id!r} is a PettingZoo environment; observation wrappers only apply to Gymnasium "
                "environments, so it cannot be wrapped (train with an agent that needs no wrappers)."
            )
        if vectorization == "twin":
            raise ConfigError(
                f"env.vectorization=twin, but {env_id!r} is a PettingZoo environment with no batched twin. "
                "Allowed: auto, sync."
            )
        probe = make(env_id, **kwargs)  # checks the keyword arguments once, with a helpful error
        learners_per_copy = len(default_agents(probe))
        probe.close()
        # registry.make builds entry.load()(**{**entry.defaults, **kwargs}) for a PettingZoo id.
        return ParallelVectorEnv(
            lambda: make(env_id, **kwargs), num_copies=max(1, num_envs // learners_per_copy)
        )
    if entry.api != "gymnasium":
        raise ConfigError(f"{env_id!r} is a {entry.api} environment, which devlearn cannot vectorize.")
    has_twin = entry.vector_entry_point is not None
    if vectorization == "twin" and not has_twin:
        raise ConfigError(f"env.vectorization=twin, but {env_id!r} has no batched twin. Allowed: auto, sync.")
    if vectorization in ("auto", "twin") and has_twin and not wrappers:
        return gymnasium.make_vec(
            env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs
        )
    return gymnasium.make_vec(
        env_id, num_envs=num_envs, vectorization_mode="sync", wrappers=wrappers, **kwargs
    )


class EpisodeStats:
    """Running per-sub-env episode figures: return, length, summed cost, any catastrophe, any success."""

    def __init__(self, num_envs: int):
        self.ret = np.zeros(num_envs)
        self.length = np.zeros(num_envs, dtype=np.int64)
        self.cost = np.zeros(num_envs)
        self.catastrophe = np.zeros(num_envs, dtype=bool)
        self.success = np.zeros(num_envs, dtype=bool)

    def update(self, reward: np.ndarray, info: dict[str, Any], live: np.ndarray | None = None) -> None:
        """Add one step; ``live`` masks out sub-envs whose step was a next-step autoreset, not a real step.

        Sub-envs with ``info["active"]`` False (``ParallelVectorEnv``: an autoreset step, or a finished
        agent waiting for its copy) are masked out too.
        """
        live = np.ones(len(reward), dtype=bool) if live is None else live
        live = live & info_array(info, "active", True, len(reward)).astype(bool)
        self.ret += np.where(live, reward, 0.0)
        self.length += live
        self.cost += np.where(live, info_array(info, "cost", 0.0, len(reward)), 0.0)
        self.catastrophe |= live & info_array(info, "catastrophe", False, len(reward)).astype(bool)
        self.success |= live & info_array(info, "success", False, len(reward)).astype(bool)

    def pop(self, done: np.ndarray) -> list[dict[str, float]]:
        """The finished episodes' figures, and a fresh start for those sub-envs."""
        finished = [
            {
                "return": float(self.ret[i]),
                "length": int(self.length[i]),
                "cost": float(self.cost[i]),
                "catastrophe": bool(self.catastrophe[i]),
                "success": bool(self.success[i]),
            }
            for i in np.flatnonzero(done)
        ]
        for arr in (self.ret, self.length, self.cost, self.catastrophe, self.success):
            arr[done] = 0
        return finished


def info_array(info: dict[str, Any], key: str, default: Any, n: int) -> np.ndarray:
    """``info[key]`` as a length-``n`` array, ``default`` where a sub-env did not report it."""
    if key not in info:
        return np.full(n, default)
    values = np.asarray(info[key])
    mask = np.asarray(info.get(f"_{key}", np.ones(n, dtype=bool)))
    return np.where(mask, values, default)
