"""Learners behind one interface (installed as ``devlearn.agents``): see ``agents/base.py``.

``make_agent`` builds one by name: ``developmental`` (the developmental agent), ``ablation`` (the
same agent with its world-model loss off), ``ppo``, ``recurrent_ppo`` and ``ppo_lagrangian``
(Stable-Baselines3 baselines; the last is cost-aware, ``agents/sb3/lagrangian.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium

from devlearn.agents.base import Agent, Policy, has_checkpoint
from devlearn.agents.developmental.agent import DevelopmentalAgent
from devlearn.config import AGENTS
from devlearn.errors import ConfigError
from devlearn.registry import make, spec

__all__ = ["Agent", "Policy", "has_checkpoint", "make_agent", "observation_wrappers"]

SB3_AGENTS = ("ppo", "recurrent_ppo", "ppo_lagrangian")  # agents/sb3/agent.py's ALGORITHMS


def observation_wrappers(agent: str, env_id: str, **env_kwargs: Any) -> list[Callable[[Any], Any]]:
    """Per-env wrappers ``agent`` needs to read ``env_id``'s observations (none for the bundled envs).

    PettingZoo envs get none: their learners' spaces are served as they are.
    """
    # deferred: Stable-Baselines3 loads only for the runs that use it
    from devlearn.agents.sb3.vec import drop_non_numeric, sb3_observation_wrappers

    if spec(env_id).api != "gymnasium":
        return []
    probe = make(env_id, **env_kwargs)
    space = probe.observation_space
    probe.close()

    if agent in ("developmental", "ablation"):
        return drop_non_numeric(space)  # the tokenizer reads Dict observations as they are
    return sb3_observation_wrappers(space)  # SB3_AGENTS


def make_agent(
    cfg: Any, env: gymnasium.vector.VectorEnv, seed: int, device: str, writer: Any, schedule: Any = None
) -> Agent:
    """Build the agent ``cfg.name`` for ``env`` (a next-step-autoreset VectorEnv).

    ``schedule``: the run's ``ScheduleConfig`` (LR and weight decay per update; None: constant), which
    the developmental agent and its ablation apply; ``devlearn.validate.validate`` refuses another
    schedule than constant for the others.
    """
    if cfg.name in ("developmental", "ablation"):
        return DevelopmentalAgent(cfg, env, seed, device, writer, schedule)
    if cfg.name in SB3_AGENTS:
        # deferred: Stable-Baselines3 loads only for its agents
        from devlearn.agents.sb3.agent import SB3Agent

        return SB3Agent(cfg.name, env, cfg, seed, device, writer)
    raise ConfigError(f"agent.name={cfg.name!r} is not allowed. Allowed values: {', '.join(AGENTS)}.")
