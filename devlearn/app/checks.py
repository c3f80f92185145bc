"""Everything a run can be refused for, checked before its folder exists.

``check_run`` validates the composed config (``devlearn.validate.validate``), then asks the
environment itself: its id must be set and known, its constructor must accept ``env.kwargs``
(each env validates its own arguments), and the chosen agent must be able to act in its action
space. Every refusal is a one-line ``ConfigError`` that names the key and what to do.
"""

from __future__ import annotations

import os
from typing import Any

from gymnasium import spaces
from omegaconf import DictConfig, OmegaConf

from devlearn.errors import ConfigError
from devlearn.registry import RegistryError, make, spec
from devlearn.validate import validate

DISCRETE_AGENTS = ("developmental", "ablation")


def one_line(err: BaseException) -> str:
    """An exception's message squeezed onto one line (constructors sometimes raise multi-line text)."""
    text = " ".join(str(err).split())
    return text or type(err).__name__


def probe_env(env_id: str, kwargs: dict[str, Any]) -> Any:
    """Build one ``env_id`` with ``kwargs`` and return its action space; its own checks become ``ConfigError``."""
    entry = spec(env_id)  # RegistryError with "Did you mean" for an unknown id
    try:
        env = make(env_id, **kwargs)
    except (ConfigError, RegistryError):
        raise
    except Exception as err:  # the env's constructor is the authority on its own arguments
        given = ", ".join(f"env.kwargs.{k}={v!r}" for k, v in kwargs.items()) or "no env.kwargs"
        raise ConfigError(f"{env_id} refused {given}: {one_line(err)}") from None
    try:
        if entry.api == "gymnasium":
            return env.action_space
        return env.action_space(env.possible_agents[0])
    finally:
        env.close()


def check_run(cfg: DictConfig) -> None:
    """Raise a one-line ``ConfigError`` for anything that would make the run fail or mean nothing."""
    if OmegaConf.is_missing(cfg.env, "id"):
        raise ConfigError(
            f"env={cfg.env.name} needs env.id, e.g. devlearn train env={cfg.env.name} env.id=MiniGrid-DoorKey-5x5-v0 "
            "(devlearn envs --all lists the ids)."
        )
    validate(cfg)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun: every process would start a run of its own
        raise ConfigError(
            "devlearn train starts its own processes: instead of torchrun, run it once with distributed.nproc=N "
            f"(here: devlearn train distributed.nproc={os.environ['WORLD_SIZE']} ...)."
        )
    if cfg.distributed.nproc > 1 or cfg.device == "cuda":  # the device and backend, before any folder exists
        # deferred: torch loads only for these checks (`devlearn --help` and config errors stay fast)
        from devlearn.device import choose_backend, resolve_device

        device = resolve_device(cfg.device)  # device=cuda without a GPU: refused here, not in the run's folder
        if cfg.distributed.nproc > 1:
            choose_backend(cfg.distributed.backend, device, cfg.distributed.nproc)
    kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
    action_space = probe_env(cfg.env.id, kwargs)
    if cfg.agent.name in DISCRETE_AGENTS and not isinstance(action_space, spaces.Discrete):
        raise ConfigError(
            f"agent={cfg.agent.name} needs a Discrete action space; {cfg.env.id} has {action_space}. "
            "Use agent=ppo (or agent=recurrent_ppo) for this env."
        )
