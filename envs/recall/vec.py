"""The numpy batched twin of Recall-v0: every sub-env's step is array arithmetic (the distractor hash
included); only a reset draws from a sub-env's own generator, exactly as the single env does."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from devlearn.envs.recall.args import RENDER_MODES, RecallArgs
from devlearn.envs.recall.env import (
    DISTRACTOR,
    ENV_ID,
    FACT,
    KINDS,
    QUESTION,
    distractors,
    draw_episode,
    observation_space,
    symbol_counts,
)
from devlearn.envs.vector.batched import BatchedEnv


class RecallVecEnv(BatchedEnv):
    """``num_envs`` copies of ``RecallEnv`` as arrays, equal step for step to a ``SyncVectorEnv`` of it.

    Same constructor arguments, observations, rewards, termination and info keys as ``RecallEnv``;
    next-step autoreset and ``info["episode"]`` statistics come from ``BatchedEnv``. ``facts`` holds
    each sub-env's current fact (for analysis). With ``render_mode="ansi"``, ``render()`` returns
    one line per sub-env.

    Takes ``num_envs`` and then ``RecallEnv``'s keyword arguments, validated by the same ``RecallArgs``
    (kept as ``self.args``), so a bad value fails here exactly as it fails there.
    """

    metadata: dict[str, Any] = {**BatchedEnv.metadata, "render_modes": RENDER_MODES, "render_fps": 4}

    def __init__(
        self,
        num_envs: int,
        split: str = "train",
        delay: int = 100,
        num_facts: int = 4,
        num_distractors: int = 16,
        render_mode: str | None = None,
    ):
        args = RecallArgs(split, delay, num_facts, num_distractors, render_mode)
        obs_space = observation_space(args.num_facts, args.num_distractors)
        super().__init__(num_envs, obs_space, spaces.Discrete(args.num_facts), ENV_ID)
        self.args = args
        self.render_mode = args.render_mode  # VectorEnv's own attribute, read by wrappers and recorders
        n = self.num_envs
        self._question = symbol_counts(args.num_facts, args.num_distractors)[2]
        self.facts = np.full(n, -1, dtype=np.int64)
        self._keys = np.zeros(n, dtype=np.uint64)
        self._t = np.zeros(n, dtype=np.int64)  # the step on screen, as in the single env

    def _reset_envs(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        for i in idx.tolist():  # one draw per sub-env, from its own generator, as the single env's reset
            self.facts[i], self._keys[i] = draw_episode(self.np_randoms[i], self.args.num_facts)
        self._t[idx] = 0
        return {"success": np.zeros(len(idx), dtype=bool)}

    def _step_envs(self, actions: np.ndarray, idx: np.ndarray):
        answered = self._t[idx] == self.args.delay
        success = answered & (actions[idx].astype(np.int64) == self.facts[idx])
        self._t[idx] += 1
        k = len(idx)
        zeros = np.zeros(k)
        info = {"success": success}
        return success.astype(np.float64), answered, np.zeros(k, dtype=bool), zeros, zeros.astype(bool), info

    def _observe(self) -> np.ndarray:
        t, args = self._t, self.args
        symbol = distractors(self._keys, t, args.split, args.num_facts, args.num_distractors)
        kind = np.where(t == 0, FACT, np.where(t >= args.delay, QUESTION, DISTRACTOR))
        symbol = np.where(t == 0, self.facts, np.where(t >= args.delay, self._question, symbol))
        return np.stack([kind, symbol], axis=1).astype(np.int64)

    def render(self) -> tuple[str, ...] | None:
        """One line per sub-env (``None`` without ``render_mode="ansi"``)."""
        if self.render_mode != "ansi":
            return None
        obs = self._observe()
        return tuple(
            f"step {min(int(t), self.args.delay)}/{self.args.delay}: {KINDS[kind]} {symbol}\n"
            for t, (kind, symbol) in zip(self._t, obs.tolist(), strict=True)
        )
