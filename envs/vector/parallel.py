"""Parameter-shared training on a PettingZoo ``ParallelEnv``: every controlled agent is one sub-env.

``ParallelVectorEnv`` runs ``num_copies`` copies of a PettingZoo Parallel environment and exposes each
controlled agent of each copy as one sub-env of a Gymnasium ``VectorEnv``, so one single-agent learner
(one set of parameters) acts for all of them. Sub-env ``i`` is agent ``agents[i % A]`` of copy ``i // A``
(``A = len(agents)``): the agents of one copy sit next to each other.

It behaves like devlearn's other vector envs (see ``devlearn.envs.vector.batched``): next-step autoreset,
``reset(options={"reset_mask": mask})``, ``cost``/``catastrophe``/``success`` infos with ``_key`` masks,
and ``info["episode"]`` on the step an agent's episode ends. What is new is that an agent can finish
while its copy plays on. The rules for that, chosen so that no sub-env ever returns a fake transition
that looks real:

* **Finishing.** An agent's sub-env reports ``terminated`` (or ``truncated``) on the step the env ends
  that agent's episode, with its real final observation and ``info["episode"]``. An agent that leaves
  the env's ``agents`` without either flag is reported ``truncated``.
* **Waiting.** From the next step until its copy resets, the finished agent's sub-env returns the zero
  observation, reward 0, ``terminated=False``, ``truncated=False`` and ``info["real"]=False``; its
  actions are validated but ignored.
* **Copy reset.** A copy ends when all its controlled agents have finished (or when the env ends the
  episode for everyone). On the next step every sub-env of that copy returns the copy's reset
  observation with reward 0 and ``info["real"]=False``: this is the next-step autoreset, and it is
  the only way a finished sub-env starts again.
* ``info["real"][i]`` is True exactly when step ``i``'s transition is real (its agent acted in its
  copy); reward, length and cost must only be counted where it is True (``devlearn.envs.vector.make.EpisodeStats``
  does). ``reset()`` reports True for the sub-envs it started.
* **Uncontrolled agents** (agents of the env that are not in ``agents``, e.g. learning bystanders when
  only learners are controlled) act at random from their action space, seeded with their copy's seed.

``reset(seed=s)`` resets copy ``c`` with ``seed=s + c``. ``reset(options={"reset_mask": mask})`` resets
the copies of the masked sub-envs; a copy may only be reset whole: every sub-env of the copy must be
masked or already finished. Masking only finished agents of a copy that plays on is allowed and does
nothing (they keep waiting for their copy): this is what a same-step-autoreset learner such as
Stable-Baselines3 asks for when one agent dies. Any other partial mask raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import deepcopy
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate
from pettingzoo import ParallelEnv

from devlearn.envs.actions import InvalidActionError
from devlearn.envs.vector.episodes import EpisodeStats

LEARNER_PREFIX = "learner"


def default_agents(env: ParallelEnv) -> list[str]:
    """The agents trained by default: every possible agent named ``learner*``, else all of them."""
    possible = list(env.possible_agents)
    learners = [a for a in possible if a.startswith(LEARNER_PREFIX)]
    return learners or possible


class ParallelVectorEnv(VectorEnv):
    """``num_copies`` copies of a PettingZoo ``ParallelEnv``, one sub-env per controlled agent (see the module docstring).

    Args:
        make_env: builds one copy of the environment (called ``num_copies`` times).
        num_copies: how many copies run side by side; ``num_envs = num_copies * len(agents)``.
        agents: the controlled agents (the same names in every copy). Default: ``default_agents``
            of the first copy. They must share one observation space and one action space.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
    render_mode: str | None = None

    def __init__(
        self,
        make_env: Callable[[], ParallelEnv],
        num_copies: int,
        agents: Sequence[str] | None = None,
    ):
        if isinstance(num_copies, bool) or int(num_copies) != num_copies or num_copies < 1:
            raise ValueError(f"num_copies must be a positive integer, got {num_copies!r}.")
        self.num_copies = int(num_copies)
        self.envs: list[ParallelEnv] = [make_env() for _ in range(self.num_copies)]
        first = self.envs[0]
        self.env_name = str(getattr(first, "metadata", {}).get("name", type(first).__name__))
        self.agents: tuple[str, ...] = tuple(default_agents(first) if agents is None else agents)
        self._check_agents()
        self.agents_per_copy = len(self.agents)
        self.num_envs = self.num_copies * self.agents_per_copy
        self.single_observation_space = first.observation_space(self.agents[0])
        self.single_action_space = first.action_space(self.agents[0])
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._zero_obs = next(iterate(self.single_observation_space, self._empty_obs(1)))

        n = self.num_envs
        self._started = False
        self._live = np.zeros(n, dtype=bool)  # the agent plays in its copy's current episode
        self._copy_done = np.zeros(self.num_copies, dtype=bool)  # the next step autoresets the copy
        self._last_obs: list[Any] = [self._zero_obs] * n
        self._episodes = EpisodeStats(n)
        # Each copy's own generator for the uncontrolled agents' random actions, so seeding is per copy.
        self._other_rngs: list[np.random.Generator] = [seeding.np_random()[0] for _ in self.envs]
        self._other_spaces: list[dict[str, spaces.Space]] = [{} for _ in self.envs]

    # --- construction checks ---------------------------------------------------------------------
    def _check_agents(self) -> None:
        possible = list(self.envs[0].possible_agents)
        if not self.agents:
            raise ValueError(f"{self.env_name}: agents must name at least one agent of {possible}.")
        if len(set(self.agents)) != len(self.agents):
            raise ValueError(f"{self.env_name}: agents {list(self.agents)} name an agent twice.")
        for c, env in enumerate(self.envs):
            unknown = [a for a in self.agents if a not in env.possible_agents]
            if unknown:
                raise ValueError(
                    f"{self.env_name}: agents {unknown} are not possible agents of copy {c} "
                    f"(possible agents: {list(env.possible_agents)})."
                )
        first = self.envs[0]
        for kind, space_of in (("observation", first.observation_space), ("action", first.action_space)):
            by_agent = {a: space_of(a) for a in self.agents}
            if any(s != by_agent[self.agents[0]] for s in by_agent.values()):
                listing = "; ".join(f"{a}: {s}" for a, s in by_agent.items())
                raise ValueError(
                    f"{self.env_name}: parameter-shared training needs one {kind} space for all controlled "
                    f"agents, but they differ: {listing}. Pass agents=[...] with agents that share spaces."
                )

    def _empty_obs(self, n: int) -> Any:
        return create_empty_array(self.single_observation_space, n=n, fn=np.zeros)

    # --- indexing --------------------------------------------------------------------------------
    def _slots(self, c: int) -> range:
        """The sub-env indices of copy ``c``."""
        return range(c * self.agents_per_copy, (c + 1) * self.agents_per_copy)

    def sub_env(self, copy: int, agent: str) -> int:
        """The sub-env index of ``agent`` in copy ``copy``."""
        return copy * self.agents_per_copy + self.agents.index(agent)

    # --- reset -----------------------------------------------------------------------------------
    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset copies: all of them, or those of the sub-envs in ``options["reset_mask"]``.

        ``seed`` is an int (copy ``c`` gets ``seed + c``), None, or one seed per copy; with a
        ``reset_mask``, only the copies that reset take theirs. See the module docstring for which
        masks are allowed.
        """
        mask = np.ones(self.num_envs, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"])
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},).")
            if not self._started and not mask.all():
                raise RuntimeError(
                    f"{self.env_name}: the first reset() must reset every copy (no reset_mask)."
                )
        seeds = self._copy_seeds(seed)
        to_reset = self._copies_to_reset(mask)

        info: dict[str, Any] = {}
        for c in to_reset:
            for i, agent_info in zip(self._slots(c), self._start_copy(c, seeds[c]), strict=True):
                self._add_info(info, {**agent_info, "real": True}, i)
        # Finished agents masked in a copy that plays on: they keep waiting, and say so.
        for i in np.flatnonzero(mask & ~self._live):
            if i // self.agents_per_copy not in to_reset:
                self._last_obs[i] = self._zero_obs
                self._add_info(info, {"real": False}, int(i))
        self._started = True
        return self._batch_obs(), info

    def _copy_seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_copies
        if isinstance(seed, (int, np.integer)):
            return [int(seed) + c for c in range(self.num_copies)]
        seeds = list(seed)
        if len(seeds) != self.num_copies:
            raise ValueError(
                f"Got {len(seeds)} seeds for {self.num_copies} copies; pass an int (copy c gets seed + c) "
                "or one seed per copy."
            )
        return seeds

    def _copies_to_reset(self, mask: np.ndarray) -> list[int]:
        """The copies ``mask`` resets, after checking that it asks for no partial copy reset."""
        copies = []
        for c in range(self.num_copies):
            slots = self._slots(c)
            masked, live = mask[slots], self._live[slots]
            if not masked.any():
                continue
            if np.all(masked | ~live):  # every sub-env masked or already finished: the copy restarts
                copies.append(c)
            elif (masked & live).any():  # would cut one agent's episode short while the others play on
                names = [a for a, m in zip(self.agents, masked, strict=True) if m]
                raise ValueError(
                    f"{self.env_name}: reset_mask resets {names} of copy {c} (sub-envs {list(slots)}) but not "
                    f"the copy's other agents still playing; a copy resets whole: mask all of {list(slots)} "
                    "or only agents that have finished."
                )
        return copies

    def _start_copy(self, c: int, seed: int | None) -> list[dict[str, Any]]:
        """Reset copy ``c``; set its sub-envs' observations; return their reset infos (agent order)."""
        env = self.envs[c]
        obs, infos = env.reset(seed=seed)
        if seed is not None:
            self._other_rngs[c], _ = seeding.np_random(seed)
            for space in self._other_spaces[c].values():
                space.seed(int(self._other_rngs[c].integers(2**31)))
        missing = [a for a in self.agents if a not in env.agents or a not in obs]
        if missing:
            raise RuntimeError(
                f"{self.env_name}: controlled agents {missing} are not live after reset of copy {c} "
                f"(live: {list(env.agents)}); every controlled agent must start each episode."
            )
        for i, agent in zip(self._slots(c), self.agents, strict=True):
            self._last_obs[i] = obs[agent]
        slots = list(self._slots(c))
        self._live[slots] = True
        self._copy_done[c] = False
        self._episodes.clear(slots)
        return [{"cost": 0.0, "catastrophe": False, **infos.get(a, {})} for a in self.agents]

    # --- step ------------------------------------------------------------------------------------
    def step(self, actions: Any):
        """One step of every copy: copies that ended last step autoreset, the others act."""
        if not self._started:
            raise RuntimeError(f"{self.env_name}: call reset() before step().")
        actions = self._check_actions(actions)
        n = self.num_envs
        reward = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        # cost, catastrophe and real are reported for every sub-env; other keys where the env gave them.
        info: dict[str, Any] = {
            "cost": np.zeros(n, dtype=np.float64),
            "catastrophe": np.zeros(n, dtype=bool),
            "real": np.zeros(n, dtype=bool),
        }
        info.update({f"_{k}": np.ones(n, dtype=bool) for k in list(info)})

        for c, env in enumerate(self.envs):
            slots = self._slots(c)
            if self._copy_done[c]:  # next-step autoreset: the reset observation, reward 0, not a real step
                for i, agent_info in zip(slots, self._start_copy(c, None), strict=True):
                    self._add_info(info, {**agent_info, "real": False}, i)
                continue
            was_live = self._live[slots].copy()
            obs, rewards, terms, truncs, infos = env.step(self._actions_for(c, env, actions))
            for k, (i, agent) in enumerate(zip(slots, self.agents, strict=True)):
                if not was_live[k]:  # finished earlier, waiting for its copy
                    self._last_obs[i] = self._zero_obs
                    continue
                agent_info = {"cost": 0.0, "catastrophe": False, **infos.get(agent, {}), "real": True}
                self._add_info(info, agent_info, i)
                reward[i] = float(rewards.get(agent, 0.0))
                terminated[i] = bool(terms.get(agent, False))
                # An agent the env drops without a flag did not reach a terminal state: a truncation.
                truncated[i] = bool(truncs.get(agent, False)) or (
                    not terminated[i] and agent not in env.agents
                )
                self._last_obs[i] = obs[agent] if agent in obs else self._zero_obs
                if terminated[i] or truncated[i]:
                    self._live[i] = False
            self._copy_done[c] = not self._live[slots].any()

        self._episodes.add(info["real"], reward, info["cost"], info["catastrophe"])
        self._episodes.write_info(info, terminated | truncated)
        return self._batch_obs(), reward, terminated, truncated, info

    def _check_actions(self, actions: Any) -> list[Any]:
        """The per-sub-env actions, or ``InvalidActionError`` naming the batched and the single space."""
        space = self.action_space
        if isinstance(space, (spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)):
            arr = np.asarray(actions)
            try:
                cast = arr.astype(space.dtype)
                # 1.5 is no Discrete action, even though astype(int) would quietly make it 1
                valid = arr.shape == space.shape and np.array_equal(cast, arr) and space.contains(cast)
            except (TypeError, ValueError):
                valid = False
            actions = cast if valid else actions
        else:
            valid = space.contains(actions)
        if not valid:
            shown = actions.tolist() if isinstance(actions, np.ndarray) else actions
            raise InvalidActionError(
                f"{self.env_name}: actions {shown!r} are not in the batched action space {space} "
                f"({self.num_envs} sub-envs = {self.num_copies} copies x agents {list(self.agents)}, "
                f"each {self.single_action_space})."
            )
        return list(iterate(space, actions))

    def _actions_for(self, c: int, env: ParallelEnv, actions: list[Any]) -> dict[str, Any]:
        """Copy ``c``'s action dict: the learner's actions for its live agents, random ones for the rest."""
        chosen = {}
        for agent in env.agents:
            if agent in self.agents and self._live[self.sub_env(c, agent)]:
                action = actions[self.sub_env(c, agent)]
                chosen[agent] = action.item() if isinstance(action, np.generic) else action
            else:
                chosen[agent] = self._other_space(c, env, agent).sample()
        return chosen

    def _other_space(self, c: int, env: ParallelEnv, agent: str) -> spaces.Space:
        # A private copy of the agent's space, seeded from the copy's generator, so sampling neither
        # disturbs the env's own space nor depends on the other copies.
        if agent not in self._other_spaces[c]:
            space = deepcopy(env.action_space(agent))
            space.seed(int(self._other_rngs[c].integers(2**31)))
            self._other_spaces[c][agent] = space
        return self._other_spaces[c][agent]

    def _batch_obs(self) -> Any:
        # _last_obs holds the real final observation on the step an agent finishes and the zero
        # observation while it waits, so it is returned as is.
        return concatenate(self.single_observation_space, self._last_obs, self._empty_obs(self.num_envs))

    def close_extras(self, **kwargs: Any) -> None:
        """Close every copy."""
        for env in self.envs:
            env.close()
