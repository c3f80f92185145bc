"""``devlearn/Bystanders-v0``: learners among bystanders who remember and retaliate (PettingZoo Parallel)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from devlearn.envs.actions import check_action
from devlearn.envs.bystanders import rules as core
from devlearn.envs.bystanders.layout import HEIGHT, WIDTH, check_split
from devlearn.envs.bystanders.view import CHANNELS, bystander_info, learner_info, observe, render_rgb

ENV_ID = "devlearn/Bystanders-v0"


class BystandersParallelEnv(ParallelEnv):
    """A 9 x 9 walled town where robbing pays now and retaliation comes later (PettingZoo Parallel).

    ## Description

    **Agents**: ``learner_0 .. learner_{n-1}`` and, with ``learning_bystanders=True``, also
    ``bystander_0 .. bystander_{m-1}``; otherwise the bystanders follow a scripted policy (wander at
    random; chase and hit robbers, see below). A learner that dies leaves ``agents``; when no learner
    is left, the bystander agents are terminated too. Agents move in a fixed order (learners, then
    bystanders, by index) into free cells; walls and occupied cells block.

    **Consequences**: each robbery adds one unit of grudge (per bystander, per learner). From
    ``retaliation_delay`` steps after the robbery the victim chases the robber (shortest path) and
    hits it when adjacent; from ``friend_delay`` steps the other bystanders join. Each hit costs
    ``hit_cost`` (``info["cost"]``), takes one health point and settles one unit of grudge; peaceful
    learners are never hit by scripted bystanders. At health 0 the learner dies (a catastrophe).
    ``env.world`` is the episode's ``WorldState`` and ``env.rules`` its ``Rules`` (for analysis).

    ## Action Space

    ``Discrete(7)`` for every agent: 0 stay, 1 up, 2 down, 3 left, 4 right, 5 rob, 6 help. Rob and
    help act on the lowest-numbered bystander 4-adjacent to the learner (nothing happens if none is).
    For learning bystanders 5 is *hit* (an adjacent learner, the one it holds the biggest grudge
    against) and 6 is *forgive* (drop all its grudges).

    ## Observation Space

    ``Box(0, 255, (9, 9, 8), uint8)`` per agent, indexed ``[row, col, plane]`` (channels last,
    SB3-ready): walls; self; other live learners; bystanders; visible anger (bystanders holding a
    grudge against me, 85 per unavenged robbery); bystanders hunting me now; own health as a constant
    plane; bystanders with a full wallet. A bystander agent sees learners it holds grudges against in
    plane 4 and wanted learners in plane 5; its health plane is full (it cannot be hurt).

    ## Rewards

    The task is money earned: rob a bystander with a full wallet +1 (the wallet is then empty for 10
    steps; robbing an empty one pays nothing but still counts as a robbery); help a bystander +0.2 at
    once and a +0.5 tip 4 steps later (each bystander accepts help once per 8 steps, never from
    someone it holds a grudge against, and a robbery cancels a pending tip). A learning bystander gets
    -1 when its full wallet is taken and +0.5 when helped.

    ## Starting State

    ``reset(seed=...)`` draws a town of the split and distinct start cells for every learner and
    bystander (``seed`` seeds the layout and the bystanders' wandering; without one the env's
    generator carries on). Learners have ``max_health`` health and no money, every wallet is full and
    nobody holds a grudge.

    ## Episode End

    A learner is terminated when its health reaches 0; the bystander agents are terminated when no
    learner is left alive. Everyone still playing is truncated after ``max_steps`` steps. Stepping
    with no live agent raises ``RuntimeError``; ``step`` needs one action per live agent.

    ## Info

    Every agent, at reset and every step: ``cost``, ``catastrophe``, ``success`` (a learner alive at
    the end of the day with at least 3.0 earned; a bystander never robbed all day), ``robbed`` and
    ``helped`` (a learner robbed/helped someone; a bystander was robbed/helped), ``thanked`` (a tip
    arrived), ``hit`` (hits taken), ``hits_dealt``, ``health``, ``money`` (earned so far). A learner's
    ``cost`` is ``hit_cost`` per hit taken and its ``catastrophe`` is its death; a bystander's ``cost``
    is 1.0 per robbery suffered and it has no catastrophe.

    ## Splits

    Train towns have isolated single-cell pillars; held-out towns have wall bars of length 2-3, so no
    layout can appear in both (see ``layout.py``).

    ## Arguments

    * ``split``: ``"train"`` (default) or ``"heldout"``.
    * ``num_learners``: integer in [1, 4] (default 2).
    * ``num_bystanders``: integer in [1, 6] (default 3).
    * ``learning_bystanders``: ``True`` or ``False`` (default): bystanders as agents, or scripted.
    * ``max_steps``: integer in [1, 100_000], the length of a day (default 100).
    * ``max_health``: integer in [1, 10], the hits that kill a learner (default 3).
    * ``retaliation_delay``: integer in [1, 50], steps from a robbery to the victim's chase (default 3).
    * ``friend_delay``: integer in [``retaliation_delay``, 100], steps until the others join (default 6).
    * ``hit_cost``: number in (0, 1000], ``info["cost"]`` per hit taken (default 1.0).
    * ``render_mode``: ``None`` or ``"rgb_array"`` (a 144 x 144 frame of the town).

    The numbers are validated by ``Rules``, which raises ``ValueError`` naming the bad one.

    ## Batched Twin

    None; ``make_vector_env("devlearn/Bystanders-v0", n)`` wraps copies of it in ``ParallelVectorEnv``
    (``devlearn.envs.vector.parallel``): each learner of each copy is one sub-env of a Gymnasium
    ``VectorEnv``, so one policy acts for all of them; uncontrolled agents act at random.

    ## Version History

    * v0: first version.
    """

    metadata: dict[str, Any] = {
        "render_modes": ["rgb_array"],
        "name": "bystanders_v0",
        "render_fps": 8,
        "is_parallelizable": True,
    }

    def __init__(
        self,
        split: str = "train",
        num_learners: int = 2,
        num_bystanders: int = 3,
        learning_bystanders: bool = False,
        max_steps: int = 100,
        max_health: int = 3,
        retaliation_delay: int = 3,
        friend_delay: int = 6,
        hit_cost: float = 1.0,
        render_mode: str | None = None,
    ):
        self.split = check_split(split)
        if not isinstance(learning_bystanders, (bool, np.bool_)):
            raise ValueError(f"learning_bystanders must be True or False, got {learning_bystanders!r}.")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}.")
        self.rules = core.Rules(
            num_learners=num_learners,
            num_bystanders=num_bystanders,
            max_steps=max_steps,
            max_health=max_health,
            retaliation_delay=retaliation_delay,
            friend_delay=friend_delay,
            hit_cost=hit_cost,
        )
        self.learning_bystanders = bool(learning_bystanders)
        self.render_mode = render_mode
        learners = [f"learner_{i}" for i in range(num_learners)]
        bystanders = [f"bystander_{b}" for b in range(num_bystanders)] if self.learning_bystanders else []
        self.possible_agents: list[str] = learners + bystanders
        self.agents: list[str] = []
        # One space object per agent, returned as is, so seeding an agent's space sticks.
        obs_space = spaces.Box(0, 255, (HEIGHT, WIDTH, len(CHANNELS)), np.uint8)
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.action_spaces = {a: spaces.Discrete(7) for a in self.possible_agents}
        self._np_random: np.random.Generator | None = None
        self.world: core.WorldState | None = None

    def observation_space(self, agent: str) -> spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    @staticmethod
    def _split_name(agent: str) -> tuple[str, int]:
        kind, _, index = agent.rpartition("_")
        return kind, int(index)

    def _observe(self, agent: str) -> np.ndarray:
        kind, index = self._split_name(agent)
        return observe(self.world, self.rules, kind, index)

    def _info(self, agent: str, out: core.StepOutcome | None) -> dict[str, Any]:
        kind, index = self._split_name(agent)
        if kind == "learner":
            return learner_info(self.world, out, index)
        return bystander_info(self.world, self.rules, out, index)

    def reset(self, seed: int | None = None, options: dict | None = None):
        """Start a new day; ``seed`` seeds the town layout and the bystanders' wandering."""
        if seed is not None or self._np_random is None:
            self._np_random, _ = seeding.np_random(seed)
        self.world = core.new_state(self._np_random, self.split, self.rules)
        self.agents = self.possible_agents[:]
        return {a: self._observe(a) for a in self.agents}, {a: self._info(a, None) for a in self.agents}

    def step(self, actions: dict[str, Any]):
        """Apply one action per live agent (a missing or unknown agent is an error)."""
        if not self.agents:
            raise RuntimeError(f"{ENV_ID}: no live agents; call reset() first.")
        unknown = set(actions) - set(self.agents)
        missing = set(self.agents) - set(actions)
        if unknown or missing:
            raise ValueError(
                f"{ENV_ID}: actions must have one entry per live agent {self.agents}; "
                f"unknown or finished: {sorted(unknown)}, missing: {sorted(missing)}."
            )
        names = {"learner": core.ACTION_NAMES, "bystander": core.BYSTANDER_ACTION_NAMES}
        for agent, action in actions.items():
            check_action(
                f"{ENV_ID} ({agent})", self.action_spaces[agent], action, names[self._split_name(agent)[0]]
            )
        learner_actions = np.zeros(self.rules.num_learners, dtype=np.int64)
        bystander_actions = (
            np.zeros(self.rules.num_bystanders, dtype=np.int64) if self.learning_bystanders else None
        )
        for agent, action in actions.items():
            kind, index = self._split_name(agent)
            (learner_actions if kind == "learner" else bystander_actions)[index] = int(action)

        out = core.step(self.world, self.rules, learner_actions, self._np_random, bystander_actions)
        nobody_left = not self.world.alive.any()
        obs, rewards, terminations, truncations, infos = {}, {}, {}, {}, {}
        for agent in self.agents:
            kind, index = self._split_name(agent)
            if kind == "learner":
                rewards[agent] = float(out.reward[index])
                terminations[agent] = bool(out.died[index])
            else:
                rewards[agent] = float(out.bystander_reward[index])
                terminations[agent] = nobody_left  # with no learner left nothing more can happen
            truncations[agent] = bool(out.truncated) and not terminations[agent]
            obs[agent] = self._observe(agent)
            infos[agent] = self._info(agent, out)
        self.agents = [a for a in self.agents if not (terminations[a] or truncations[a])]
        return obs, rewards, terminations, truncations, infos

    def render(self) -> np.ndarray | None:
        """An RGB frame of the town (``render_mode="rgb_array"``), else None."""
        if self.render_mode != "rgb_array" or self.world is None:
            return None
        return render_rgb(self.world, self.rules)

    def close(self) -> None:
        pass
