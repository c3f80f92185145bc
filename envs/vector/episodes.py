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


# How an episode's success was decided (``success_rule`` of each finished episode), as tables state it.
SUCCESS_RULES: dict[str, str] = {
    "info": "info['success'] (set by the env)",
    "termination": "ended by termination with reward > 0 (the env sets no info['success'])",
}


def episode_success(
    reported: Any, info_success: Any, terminated: Any, final_reward: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Whether episodes succeeded, for any env, and by which rule: ``(success, rule)`` arrays.

    An env that reports ``info["success"]`` decides it: the episode succeeded if it was True on one of
    its steps (envs set it on the step the task is done). An env that never reports it succeeded if the
    episode ended by *termination* on a step with positive reward (MiniGrid's goal, say); a time-limit
    truncation is never a success under this rule. ``rule`` is ``"info"`` or ``"termination"`` (keys of
    ``SUCCESS_RULES``). Arguments broadcast: scalars for one episode, arrays for many.
    """
    reported = np.asarray(reported, dtype=bool)
    by_termination = np.asarray(terminated, dtype=bool) & (np.asarray(final_reward, dtype=float) > 0)
    success = np.where(reported, np.asarray(info_success, dtype=bool), by_termination)
    return success, np.where(reported, "info", "termination")


def reports(info: dict[str, Any], key: str, n: int) -> np.ndarray:
    """``(n,)`` bool: which sub-envs reported ``info[key]`` this step (its ``_key`` mask, else all if present)."""
    if key not in info:
        return np.zeros(n, dtype=bool)
    return np.asarray(info.get(f"_{key}", np.ones(n, dtype=bool)), dtype=bool)


class EpisodeStats:
    """Running per-sub-env episode figures: return, length, summed cost, any catastrophe, success.

    The envs use it to fill ``info["episode"]``; learners and evaluation use it to collect finished
    episodes from any vector env (``update`` reads the step's info, ``pop`` hands the episodes over).
    It is the one place an episode's success is decided (``episode_success``), so training logs and
    evaluation tables agree: pass ``terminated`` to ``update`` so envs without ``info["success"]`` count.
    """

    def __init__(self, num_envs: int):
        self.ret = np.zeros(num_envs)
        self.length = np.zeros(num_envs, dtype=np.int64)
        self.cost = np.zeros(num_envs)
        self.catastrophe = np.zeros(num_envs, dtype=bool)
        self.success = np.zeros(num_envs, dtype=bool)  # info["success"] was True on some step
        self.reported = np.zeros(num_envs, dtype=bool)  # the env reported info["success"] this episode
        self.out_of_range = np.zeros(num_envs, dtype=bool)  # info["out_of_range"]: beyond training's layouts
        self.final_reward = np.zeros(num_envs)  # the last real step's reward
        self.terminated = np.zeros(num_envs, dtype=bool)  # the last real step terminated the episode

    def add(
        self,
        real: np.ndarray,
        reward: np.ndarray,
        cost: np.ndarray,
        catastrophe: np.ndarray,
        success: np.ndarray | None = None,
        terminated: np.ndarray | None = None,
        reported: np.ndarray | None = None,
    ) -> None:
        """Count one step of every sub-env where ``real`` is True.

        ``reported`` says where ``success`` came from the env (default: everywhere ``success`` is given).
        Without ``terminated`` a step counts as terminating when it carries positive reward (the
        termination rule then reads "ended with positive reward"); callers that know should pass it.
        """
        reward = np.asarray(reward, dtype=float)
        self.ret += np.where(real, reward, 0.0)
        self.length += real
        self.cost += np.where(real, cost, 0.0)
        self.catastrophe |= real & np.asarray(catastrophe, dtype=bool)
        if success is not None:
            self.success |= real & np.asarray(success, dtype=bool)
            self.reported |= real & (True if reported is None else np.asarray(reported, dtype=bool))
        self.final_reward = np.where(real, reward, self.final_reward)
        ended = reward > 0 if terminated is None else np.asarray(terminated, dtype=bool)
        self.terminated = np.where(real, ended, self.terminated)

    def update(
        self,
        reward: np.ndarray,
        info: dict[str, Any],
        real: np.ndarray | None = None,
        terminated: np.ndarray | None = None,
    ) -> None:
        """Count one vector-env step from its info; ``real`` (if given) further restricts what counts.

        ``terminated`` is the step's termination flags (for envs that do not report ``info["success"]``).
        """
        n = len(reward)
        counted = real_transitions(info, n) & (True if real is None else real)
        self.out_of_range |= counted & info_array(info, "out_of_range", False, n).astype(bool)
        self.add(
            counted,
            reward,
            info_array(info, "cost", 0.0, n),
            info_array(info, "catastrophe", False, n),
            info_array(info, "success", False, n),
            terminated,
            reports(info, "success", n),
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
        for arr in (
            self.ret,
            self.length,
            self.cost,
            self.catastrophe,
            self.success,
            self.reported,
            self.out_of_range,
            self.final_reward,
            self.terminated,
        ):
            arr[index] = 0

    def pop(self, done: np.ndarray) -> list[dict[str, Any]]:
        """The finished episodes' figures, and a fresh start for those sub-envs.

        Each is a dict: ``return``, ``length``, ``cost``, ``catastrophe``, ``success`` (``episode_success``),
        ``success_rule`` (which rule decided it) and ``out_of_range`` (the env flagged the layout as
        beyond training's).
        """
        success, rule = episode_success(self.reported, self.success, self.terminated, self.final_reward)
        finished = [
            {
                "return": float(self.ret[i]),
                "length": int(self.length[i]),
                "cost": float(self.cost[i]),
                "catastrophe": bool(self.catastrophe[i]),
                "success": bool(success[i]),
                "success_rule": str(rule[i]),
                "out_of_range": bool(self.out_of_range[i]),
            }
            for i in np.flatnonzero(done)
        ]
        self.clear(done)
        return finished
