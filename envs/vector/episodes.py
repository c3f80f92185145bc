"""Episode accounting, once for every vector env and learner.

A step of a vector env is a *real* transition, or not: with next-step autoreset the step after an
episode ends only returns the reset observation (the action is ignored), and a ParallelVectorEnv
sub-env whose agent finished waits for its copy (``info["real"]`` False). Rewards, lengths, costs
and catastrophes count on real transitions only. The envs put each finished episode's figures in
``info["episode"]`` (``add_episode_info``); learners keep their own running figures
(``EpisodeStats``) where they need them per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def real_transitions(info: dict[str, Any], n: int, after_done: np.ndarray | None = None) -> np.ndarray:
    """``(n,)`` bool: which sub-envs' step was a real transition.

    ``after_done`` marks the sub-envs whose previous step ended an episode (with next-step autoreset
    their step now only resets); ``info["real"]`` False marks the rest (``ParallelVectorEnv``).
    """
    real = info_array(info, "real", True, n).astype(bool)
    return real if after_done is None else real & ~after_done


def info_array(info: dict[str, Any], key: str, default: Any, n: int) -> np.ndarray:
    """``info[key]`` as a length-``n`` array, ``default`` where a sub-env did not report it."""
    if key not in info:
        return np.full(n, default)
    values = np.asarray(info[key])
    mask = np.asarray(info.get(f"_{key}", np.ones(n, dtype=bool)))
    return np.where(mask, values, default)


class EpisodeStats:
    """Running per-sub-env episode figures: return, length, summed cost, any catastrophe, any success.

    The envs use it to fill ``info["episode"]``; learners and evaluation use it to collect finished
    episodes from any vector env (``update`` reads the step's info, ``pop`` hands the episodes over).
    """

    def __init__(self, num_envs: int):
        self.ret = np.zeros(num_envs)
        self.length = np.zeros(num_envs, dtype=np.int64)
        self.cost = np.zeros(num_envs)
        self.catastrophe = np.zeros(num_envs, dtype=bool)
        self.success = np.zeros(num_envs, dtype=bool)

    def add(
        self,
        real: np.ndarray,
        reward: np.ndarray,
        cost: np.ndarray,
        catastrophe: np.ndarray,
        success: np.ndarray | None = None,
    ) -> None:
        """Count one step of every sub-env where ``real`` is True."""
        self.ret += np.where(real, reward, 0.0)
        self.length += real
        self.cost += np.where(real, cost, 0.0)
        self.catastrophe |= real & np.asarray(catastrophe, dtype=bool)
        if success is not None:
            self.success |= real & np.asarray(success, dtype=bool)

    def update(self, reward: np.ndarray, info: dict[str, Any], real: np.ndarray | None = None) -> None:
        """Count one vector-env step from its info; ``real`` (if given) further restricts what counts."""
        n = len(reward)
        counted = real_transitions(info, n) & (True if real is None else real)
        self.add(
            counted,
            reward,
            info_array(info, "cost", 0.0, n),
            info_array(info, "catastrophe", False, n),
            info_array(info, "success", False, n),
        )

    def write_info(self, info: dict[str, Any], done: np.ndarray) -> None:
        """Put the finished episodes' return ``r``, length ``l``, summed ``cost`` and ``catastrophe`` into
        ``info["episode"]``, masked by ``info["_episode"]`` (nothing when no episode ended)."""
        if done.any():
            info["episode"] = {
                "r": np.where(done, self.ret, 0.0),
                "l": np.where(done, self.length, 0),
                "cost": np.where(done, self.cost, 0.0),
                "catastrophe": done & self.catastrophe,
            }
            info["_episode"] = done.copy()

    def clear(self, index: Any) -> None:
        """Start fresh figures for the sub-envs ``index`` (a mask or indices)."""
        for arr in (self.ret, self.length, self.cost, self.catastrophe, self.success):
            arr[index] = 0

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
        self.clear(done)
        return finished
