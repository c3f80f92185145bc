"""Batched environments for training: the bundled numpy twins, Gymnasium's SyncVectorEnv for any id,
or ``ParallelVectorEnv`` (one sub-env per learner) for PettingZoo ids."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium

from devlearn.envs.vector.parallel import ParallelVectorEnv, default_agents
from devlearn.errors import ConfigError
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
