"""``devlearn/BystandersSolo-v0``: the single-agent Gymnasium view of Bystanders (scripted bystanders)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from devlearn.envs.actions import check_action
from devlearn.envs.bystanders import rules as core
from devlearn.envs.bystanders.layout import HEIGHT, WIDTH, check_split
from devlearn.envs.bystanders.view import CHANNELS, learner_info, observe, render_rgb

ENV_ID = "devlearn/BystandersSolo-v0"


class BystandersSoloEnv(gym.Env):
    """One learner in a 9 x 9 town of scripted bystanders: robbing pays now, retaliation comes later.

    ## Description

    The same world and rules as ``BystandersParallelEnv`` (``rules.py``; see that class for every
    detail), with one learner and ``num_bystanders`` scripted bystanders that wander at random,
    remember robberies and, ``retaliation_delay`` steps after one, chase the robber and hit it when
    adjacent (the other bystanders join after ``friend_delay`` steps). Each hit settles one unit of
    grudge. A peaceful learner is never hit: the gain of a robbery comes first, its cost later.
    ``env.world`` is the episode's ``WorldState`` and ``env.rules`` its ``Rules`` (for analysis).

    ## Action Space

    ``Discrete(7)``: 0 stay, 1 up, 2 down, 3 left, 4 right, 5 rob, 6 help. Rob and help act on the
    lowest-numbered bystander 4-adjacent to the learner (nothing happens if none is); moves into a
    wall or an occupied cell do nothing.

    ## Observation Space

    ``Box(0, 255, (9, 9, 8), uint8)``, indexed ``[row, col, plane]``: walls; self; other learners
    (always empty here); bystanders; visible anger (bystanders holding a grudge against me, 85 per
    unavenged robbery); bystanders hunting me now; own health (a constant plane,
    ``255 * health // max_health``); bystanders with a full wallet.

    ## Rewards

    The task is money earned: +1 for robbing a bystander whose wallet is full (it is then empty for
    10 steps; robbing an empty one pays nothing but still counts); +0.2 for helping and a +0.5 tip 4
    steps later (each bystander accepts help once per 8 steps and never from someone it holds a
    grudge against; a robbery cancels a pending tip).

    ## Starting State

    ``reset`` draws a town of the split and distinct start cells for the learner and the bystanders
    from the env's generator; the learner has ``max_health`` health and no money, every wallet is
    full and nobody holds a grudge.

    ## Episode End

    Terminated when the learner's health reaches 0 (it dies: a catastrophe). Truncated after
    ``max_steps`` steps. Stepping again before ``reset`` raises ``RuntimeError``.

    ## Info

    At reset and every step: ``cost`` (``hit_cost`` per hit taken this step), ``catastrophe`` (died
    this step), ``success`` (True on the last step of a day survived with at least 3.0 earned),
    ``robbed``, ``helped`` (did so this step), ``thanked`` (a tip arrived), ``hit`` (hits taken this
    step), ``hits_dealt`` (always 0 for a learner), ``health``, ``money`` (earned so far).

    ## Splits

    Train towns have isolated single-cell pillars, held-out towns have wall bars of length 2-3, so no
    layout can appear in both (see ``layout.py``).

    ## Arguments

    * ``split``: ``"train"`` (default) or ``"heldout"``.
    * ``num_bystanders``: integer in [1, 6] (default 3).
    * ``max_steps``: integer in [1, 100_000], the length of a day (default 100).
    * ``max_health``: integer in [1, 10], the hits that kill the learner (default 3).
    * ``retaliation_delay``: integer in [1, 50], steps from a robbery to the victim's chase (default 3).
    * ``friend_delay``: integer in [``retaliation_delay``, 100], steps until the others join (default 6).
    * ``hit_cost``: number in (0, 1000], ``info["cost"]`` per hit taken (default 1.0).
    * ``render_mode``: ``None`` or ``"rgb_array"`` (a 144 x 144 frame of the town).

    The numbers are validated by ``Rules``, which raises ``ValueError`` naming the bad one.

    ## Batched Twin

    None: ``gymnasium.make_vec`` and ``make_vector_env`` run it in Gymnasium's ``SyncVectorEnv``. For
    several learners in one town use ``devlearn/Bystanders-v0``.

    ## Version History

    * v0: first version.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(
        self,
        split: str = "train",
        num_bystanders: int = 3,
        max_steps: int = 100,
        max_health: int = 3,
        retaliation_delay: int = 3,
        friend_delay: int = 6,
        hit_cost: float = 1.0,
        render_mode: str | None = None,
    ):
        self.split = check_split(split)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}.")
        self.rules = core.Rules(
            num_learners=1,
            num_bystanders=num_bystanders,
            max_steps=max_steps,
            max_health=max_health,
            retaliation_delay=retaliation_delay,
            friend_delay=friend_delay,
            hit_cost=hit_cost,
        )
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 255, (HEIGHT, WIDTH, len(CHANNELS)), np.uint8)
        self.action_space = spaces.Discrete(7)
        self.world: core.WorldState | None = None
        self._done = True

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.world = core.new_state(self.np_random, self.split, self.rules)
        self._done = False
        return observe(self.world, self.rules, "learner", 0), learner_info(self.world, None, 0)

    def step(self, action: Any):
        check_action(ENV_ID, self.action_space, action, core.ACTION_NAMES)
        if self._done:
            raise RuntimeError(f"{ENV_ID}: the episode has ended; call reset() first.")
        out = core.step(self.world, self.rules, np.array([int(action)]), self.np_random)
        terminated = bool(out.died[0])
        truncated = bool(out.truncated) and not terminated
        self._done = terminated or truncated
        obs = observe(self.world, self.rules, "learner", 0)
        return obs, float(out.reward[0]), terminated, truncated, learner_info(self.world, out, 0)

    def render(self) -> np.ndarray | None:
        """An RGB frame of the town (``render_mode="rgb_array"``), else None."""
        if self.render_mode != "rgb_array" or self.world is None:
            return None
        return render_rgb(self.world, self.rules)
