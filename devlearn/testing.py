"""Conformance checks for environments, usable on your own envs as well as the bundled ones."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return np.array_equal(np.asarray(a), np.asarray(b))


def check_batched_twin(
    env_id: str,
    num_envs: int = 4,
    steps: int = 300,
    seed: int = 0,
    info_keys: tuple[str, ...] = ("cost", "catastrophe"),
    **env_kwargs: Any,
) -> int:
    """Step ``env_id``'s batched twin and a ``SyncVectorEnv`` of the single env side by side.

    Both get the same seed and the same random actions; observations, rewards, terminations,
    truncations and ``info_keys`` (where the SyncVectorEnv reports them) must match at every
    step, autoresets included. Returns how many episodes ended, so callers can insist that
    autoreset was exercised. Raises ``AssertionError`` describing the first mismatch.
    """
    twin = gymnasium.make_vec(
        env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **env_kwargs
    )
    sync = gymnasium.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync", **env_kwargs)
    try:
        obs_t, info_t = twin.reset(seed=seed)
        obs_s, info_s = sync.reset(seed=seed)
        if not _equal(obs_t, obs_s):
            raise AssertionError(f"{env_id}: reset observations differ")
        sync.action_space.seed(seed)
        episodes = 0
        for t in range(steps):
            action = sync.action_space.sample()
            out_t, out_s = twin.step(action), sync.step(action)
            for name, a, b in zip(
                ("observation", "reward", "terminated", "truncated"), out_t[:4], out_s[:4], strict=True
            ):
                if not _equal(a, b):
                    raise AssertionError(f"{env_id}: {name} differs at step {t}:\ntwin={a}\nsync={b}")
            info_t, info_s = out_t[4], out_s[4]
            for key in info_keys:
                if key not in info_s:
                    continue
                mask = info_s[f"_{key}"]
                if not _equal(np.asarray(info_t[key])[mask], np.asarray(info_s[key])[mask]):
                    raise AssertionError(f"{env_id}: info[{key!r}] differs at step {t}")
            episodes += int(np.sum(out_t[2] | out_t[3]))
        return episodes
    finally:
        twin.close()
        sync.close()
