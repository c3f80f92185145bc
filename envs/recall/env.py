"""Recall-v0: remember one fact across a long stretch of distractors.

Step 0 shows a fact, one of ``num_facts`` symbols. Steps ``1 .. delay - 1`` show distractors. Step
``delay`` shows a question cue, the same in every episode; the action taken on it is the answer:
reward 1 if it names the fact, else 0, and the episode ends. Nothing after step 0 carries
information about the fact, so an agent without memory of step 0 answers at chance (``1 / num_facts``).

Distractors are generated lazily: the symbol at step ``t`` is a hash of (the episode's key, ``t``),
so an episode of any length needs O(1) memory, and the batched twin computes every sub-env's
distractor in one array operation. The ``"train"`` and ``"heldout"`` splits draw distractors from
disjoint symbol ranges.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from devlearn.envs.actions import check_action
from devlearn.envs.recall.args import RENDER_MODES, SPLITS, RecallArgs

ENV_ID = "devlearn/Recall-v0"
FACT, DISTRACTOR, QUESTION = 0, 1, 2  # the observation's first element: what is on screen
KINDS = ("fact", "distractor", "question")


def symbol_counts(num_facts: int, num_distractors: int) -> tuple[int, int, int]:
    """Where each kind of symbol starts: ``(train distractors, heldout distractors, question)``.

    Symbols ``0 .. num_facts - 1`` are facts, then ``num_distractors`` train distractors, then as
    many held-out distractors, then the one question symbol: the splits share no distractor.
    """
    train = num_facts
    heldout = train + num_distractors
    return train, heldout, heldout + num_distractors


def observation_space(num_facts: int, num_distractors: int) -> spaces.MultiDiscrete:
    """``MultiDiscrete([3, n_symbols])``: (what is on screen, its symbol)."""
    *_, question = symbol_counts(num_facts, num_distractors)
    return spaces.MultiDiscrete([len(KINDS), question + 1])


def distractors(
    key: np.ndarray, t: np.ndarray, split: str, num_facts: int, num_distractors: int
) -> np.ndarray:
    """The distractor symbols at steps ``t`` of the episodes with keys ``key`` (arrays of one shape).

    A SplitMix64 hash of ``key + t * golden`` (uint64 arithmetic, wrapping): each episode's
    distractors are a fixed pseudo-random sequence that can be computed at any step in O(1).
    """
    x = key.astype(np.uint64) + t.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    train, heldout, _ = symbol_counts(num_facts, num_distractors)
    first = train if split == "train" else heldout
    return (first + x % np.uint64(num_distractors)).astype(np.int64)


def draw_episode(rng: np.random.Generator, num_facts: int) -> tuple[int, np.uint64]:
    """The fact and the distractor key of a new episode (the single env and the twin draw the same)."""
    fact = int(rng.integers(num_facts))
    key = rng.integers(0, 2**63, dtype=np.uint64)
    return fact, key


class RecallEnv(gym.Env[np.ndarray, np.int64]):
    """Name the fact shown at step 0 when asked at step ``delay``.

    ## Description

    A memory test rather than a consequence: step 0 shows a fact, one of ``num_facts`` symbols; steps
    ``1 .. delay - 1`` show distractors; step ``delay`` shows the question cue, the same in every
    episode, and the action taken on it is the answer. Nothing after step 0 carries information about
    the fact, so an agent without memory of step 0 answers at chance (``1 / num_facts``). ``env.fact``
    is this episode's fact (for analysis).

    ## Action Space

    ``Discrete(num_facts)``: the answer. Actions before the question are ignored.

    ## Observation Space

    ``MultiDiscrete([3, num_facts + 2 * num_distractors + 1])``, a pair (kind, symbol): kind 0 = fact
    (symbol: the fact, ``0 .. num_facts - 1``), 1 = distractor (symbol from the split's range),
    2 = question (symbol: the one question symbol, the last).

    ## Rewards

    1 for the action on the question if it equals the fact, else 0; 0 on every other step.

    ## Starting State

    ``reset`` draws the fact and the episode's distractor key from the env's generator and shows the
    fact (step 0).

    ## Episode End

    Terminated after the answer, i.e. after ``delay + 1`` steps (the observation returned with it is
    the question again, which nobody acts on); stepping again before ``reset`` raises ``RuntimeError``.
    Never truncated.

    ## Info

    At reset and every step: ``cost`` (always 0.0) and ``catastrophe`` (always False): a wrong answer
    harms nothing; ``success`` (this step's action was the right answer to the question).

    ## Splits

    ``"train"`` and ``"heldout"`` draw their distractors from disjoint symbol ranges (see
    ``symbol_counts``); facts and the question symbol are shared.

    ## Arguments

    Validated by ``RecallArgs`` (the same checks and messages as the twin) and kept as ``env.args``:

    * ``split``: ``"train"`` (default) or ``"heldout"``: disjoint distractor symbols.
    * ``delay``: the step of the question, in [1, 1_000_000] (default 100; 10 .. 100,000 is the
      intended range): the fact is ``delay`` steps back when asked, with ``delay - 1`` distractors between.
    * ``num_facts``: how many facts there are, in [2, 256] (default 4; chance level ``1 / num_facts``).
    * ``num_distractors``: distractor symbols per split, in [1, 4096] (default 16).
    * ``render_mode``: ``None`` or ``"ansi"`` (one line: the step and what is on screen).

    ## Batched Twin

    ``RecallVecEnv`` (``vec.py``), what ``gymnasium.make_vec("devlearn/Recall-v0", num_envs=N)`` returns:
    every sub-env's step is array arithmetic (the distractor hash included), equal step for step to
    ``SyncVectorEnv`` over this env (next-step autoreset), taking the same keyword arguments after
    ``num_envs``.

    ## Version History

    * v0: first version.
    """

    metadata: dict[str, Any] = {"render_modes": RENDER_MODES, "render_fps": 4}

    def __init__(
        self,
        split: str = "train",
        delay: int = 100,
        num_facts: int = 4,
        num_distractors: int = 16,
        render_mode: str | None = None,
    ):
        self.args = args = RecallArgs(split, delay, num_facts, num_distractors, render_mode)
        self.render_mode = args.render_mode
        self.observation_space = observation_space(args.num_facts, args.num_distractors)
        self.action_space = spaces.Discrete(args.num_facts)
        self._question = symbol_counts(args.num_facts, args.num_distractors)[2]
        self._fact = -1
        self._key = np.uint64(0)
        self._t = -1  # the step on screen: 0 the fact, 1 .. delay - 1 distractors, delay the question

    @property
    def fact(self) -> int:
        """This episode's fact (for analysis; the agent sees it only at step 0)."""
        if self._fact < 0:
            raise RuntimeError("RecallEnv: call reset() before reading the fact.")
        return self._fact

    def _obs(self) -> np.ndarray:
        args = self.args
        if self._t == 0:
            return np.array([FACT, self._fact], dtype=np.int64)
        if self._t >= args.delay:
            return np.array([QUESTION, self._question], dtype=np.int64)
        symbol = distractors(
            np.array([self._key]), np.array([self._t]), args.split, args.num_facts, args.num_distractors
        )[0]
        return np.array([DISTRACTOR, symbol], dtype=np.int64)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._fact, self._key = draw_episode(self.np_random, self.args.num_facts)
        self._t = 0
        return self._obs(), {"cost": 0.0, "catastrophe": False, "success": False}

    def step(self, action: Any):
        check_action(ENV_ID, self.action_space, action)
        if self._t < 0 or self._t > self.args.delay:
            raise RuntimeError("RecallEnv: the episode is over (or never started); call reset().")
        answered = self._t == self.args.delay
        success = answered and int(action) == self._fact
        self._t += 1
        obs = self._obs()  # after the answer: the question again (a terminal observation nobody acts on)
        info = {"cost": 0.0, "catastrophe": False, "success": success}
        return obs, float(success), answered, False, info

    def render(self) -> str | None:
        """One line: the step and what is on screen."""
        if self.render_mode is None:
            gym.logger.warn("RecallEnv.render() called without a render_mode; use render_mode='ansi'.")
            return None
        if self._t < 0:
            raise RuntimeError("RecallEnv: call reset() before render().")
        kind, symbol = self._obs().tolist()
        return f"step {min(self._t, self.args.delay)}/{self.args.delay}: {KINDS[kind]} {symbol}\n"


__all__ = ["RecallEnv", "RecallArgs", "ENV_ID", "SPLITS", "KINDS", "distractors", "draw_episode"]
