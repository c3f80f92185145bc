"""Evaluate a policy over many episodes: return, success, catastrophe rate and cost, kept apart."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from devlearn.envs.vector.episodes import EpisodeStats
from devlearn.envs.vector.make import make_vector_env

METRICS = ("return", "success", "catastrophe_rate", "cost", "length")


def run_episodes(
    policy: Callable[[Any, np.ndarray], np.ndarray],
    env_id: str,
    episodes: int,
    num_envs: int = 8,
    seed: int = 0,
    vectorization: str = "auto",
    wrappers: Sequence[Callable[[Any], Any]] = (),
    **env_kwargs: Any,
) -> list[dict[str, float]]:
    """Run ``episodes`` full episodes of ``policy(obs, episode_start) -> actions`` (all batched).

    Every sub-env plays the same number of episodes, so short episodes (falls, say) are not
    over-represented as they would be by taking the first ``episodes`` to finish. A policy with an
    ``observe(next_obs, reward, terminated, truncated, info, resetting)`` method is told each step's outcome
    (dynamic evaluation learns from it).
    """
    observe = getattr(policy, "observe", None)
    env = make_vector_env(env_id, max(1, min(num_envs, episodes)), vectorization, wrappers, **env_kwargs)
    num_envs = env.num_envs  # a multi-agent env may round to whole copies
    quota = -(-episodes // num_envs)
    stats, results = EpisodeStats(num_envs), []
    played = np.zeros(num_envs, dtype=np.int64)
    obs, _ = env.reset(seed=seed)
    start = np.ones(num_envs, dtype=bool)  # this observation begins an episode
    resetting = np.zeros(num_envs, dtype=bool)  # this step is a next-step autoreset, not a real step
    try:
        while (played < quota).any():
            obs, reward, terminated, truncated, info = env.step(policy(obs, start))
            if observe is not None:
                observe(obs, reward, terminated, truncated, info, resetting)
            stats.update(reward, info, real=~resetting)
            done = (terminated | truncated) & ~resetting
            for i, ep in zip(np.flatnonzero(done), stats.pop(done), strict=True):
                if played[i] < quota:
                    results.append(ep)
                played[i] += 1
            start, resetting = resetting, done
    finally:
        env.close()
    return results[:episodes]


def summarize(episodes: list[dict[str, float]]) -> dict[str, float]:
    """Means over episodes, named as in the tables: return, success, catastrophe_rate, cost, length."""
    if not episodes:
        return {m: float("nan") for m in METRICS} | {"episodes": 0}
    col = {k: np.array([e[k] for e in episodes], dtype=float) for k in episodes[0]}
    return {
        "return": float(col["return"].mean()),
        "success": float(col["success"].mean()),
        "catastrophe_rate": float(col["catastrophe"].mean()),
        "cost": float(col["cost"].mean()),
        "length": float(col["length"].mean()),
        "episodes": len(episodes),
    }


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A console table, one row per split."""
    header = f"{'split':<10}" + "".join(f"{m:>18}" for m in METRICS) + f"{'episodes':>10}"
    lines = [header, "-" * len(header)]
    for split, r in rows.items():
        lines.append(f"{split:<10}" + "".join(f"{r[m]:>18.3f}" for m in METRICS) + f"{r['episodes']:>10d}")
    return "\n".join(lines)
