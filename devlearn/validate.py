"""Check the values of a composed ``devlearn train`` config: each error names the key and what is allowed.

OmegaConf already refused wrong types and unknown keys against the schema (``devlearn/config.py``);
what is left are the values with a fixed set of choices or a range, and the combinations that cannot
work together (surprise without a world model, a store that does not fit in memory).
"""

from __future__ import annotations

import math
from typing import Any

from devlearn.config import (
    AGENTS,
    BACKENDS,
    DEVICES,
    DISTRIBUTED_AGENTS,
    INTRINSIC,
    MAX_STORE_GIB,
    OBJECTIVES,
    SPLITS,
    VECTORIZATIONS,
)
from devlearn.errors import ConfigError, check_choice
from devlearn.model.memory import VARIANTS as MEMORY_VARIANTS
from devlearn.model.memory.retrieval import WRITE_MODES
from devlearn.schedules import validate_schedule

MAX_HORIZON = 32  # imagined steps cost a core pass each, for every candidate action


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{key}={value!r} must be > 0.")


# Upper limits, far beyond any run that makes sense: a value past one is a typo (an extra digit, a unit mixed up)
# that would otherwise start a run lasting centuries or allocate more than any machine has. key -> (limit, what).
LIMITS: dict[str, tuple[float, str]] = {
    "seed": (2**32 - 1, "numpy's seeds are 32-bit"),
    "agent.total_timesteps": (10**12, "a trillion env steps"),
    "checkpoint_every": (10**12, "a trillion env steps"),
    "checkpoint_every_s": (10**7, "about 116 days"),
    "env.num_envs": (65_536, "envs in one batch"),
    "agent.n_steps": (10**6, "steps per rollout"),
    "agent.batch_size": (10**8, "samples per minibatch"),
    "agent.num_minibatches": (10**8, "minibatches per epoch"),
    "agent.n_epochs": (10_000, "epochs per update"),
    "max_rollbacks": (10**6, "rollbacks in a row"),
    "log.eval_episodes": (10**7, "episodes per split"),
    "log.video_max_steps": (10**7, "steps of video"),
    "agent.core.d_model": (65_536, "a model width"),
    "agent.core.n_layers": (4_096, "layers"),
    "agent.core.n_heads": (4_096, "heads"),
    "agent.core.window": (10**7, "steps of context"),
    "distributed.nproc": (4_096, "processes on one machine"),
}


def _value(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        if part not in node:
            return None
        node = node[part]
    return node


def _validate_limits(cfg: Any) -> None:
    """Refuse a value beyond ``LIMITS``, naming the limit (checked first: a huge number breaks the range checks too)."""
    for key, (limit, what) in LIMITS.items():
        value = _value(cfg, key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > limit:
            shown = f"{limit:,}" if isinstance(limit, int) else f"{limit:g}"
            raise ConfigError(f"{key}={value!r} is beyond the limit of {shown} ({what}); is it a typo?")


def _validate_minibatches(agent: Any, num_envs: int) -> None:
    """A rollout of ``n_steps x num_envs`` transitions cannot be cut into more minibatches than it has transitions."""
    rollout = agent.n_steps * num_envs
    if agent.batch_size is None and agent.num_minibatches > rollout:
        raise ConfigError(
            f"agent.num_minibatches={agent.num_minibatches} is more than the rollout's {rollout} transitions "
            f"(agent.n_steps={agent.n_steps} x env.num_envs={num_envs}); use at most {rollout}."
        )


def validate(cfg: Any) -> None:
    """Check the values of a composed config; raise ``ConfigError`` naming the key and what is allowed."""
    _validate_limits(cfg)
    _validate_run(cfg)
    agent = cfg.agent
    for key in ("total_timesteps", "learning_rate", "n_steps", "num_minibatches", "n_epochs", "clip_range"):
        _positive(f"agent.{key}", agent[key])
    if agent.batch_size is not None:
        _positive("agent.batch_size", agent.batch_size)
    _validate_minibatches(agent, cfg.env.num_envs)
    if not 0 < agent.gamma <= 1 or not 0 <= agent.gae_lambda <= 1:
        raise ConfigError("agent.gamma must be in (0, 1] and agent.gae_lambda in [0, 1].")
    _validate_intrinsic(agent)
    if "core" in agent:
        _validate_core(agent)
    if "memory" in agent:
        _validate_memory(agent, cfg.env.num_envs)
    if "world_model" in agent:
        _validate_world_model(agent)
    if "cost_limit" in agent:
        _validate_lagrangian(agent)
    if "distributed" in cfg:
        _validate_distributed(cfg)
    if "schedule" in cfg:
        _validate_run_schedule(cfg)


def _validate_run(cfg: Any) -> None:
    """The keys of the run itself: device, env batching, seed, resume, logging, objective."""
    check_choice("device", cfg.device, DEVICES)
    check_choice("env.vectorization", cfg.env.vectorization, VECTORIZATIONS)
    check_choice("env.eval_split", cfg.env.eval_split, SPLITS)
    check_choice("agent.name", cfg.agent.name, AGENTS)
    _positive("env.num_envs", cfg.env.num_envs)
    _positive("checkpoint_every", cfg.checkpoint_every)
    _positive("checkpoint_every_s", cfg.checkpoint_every_s)
    if isinstance(cfg.seed, bool) or cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed!r} must be an integer >= 0.")
    if str(cfg.resume).lower() not in ("false", "true", "force"):
        raise ConfigError(f"resume={cfg.resume!r} is not allowed. Allowed values: false, true, force.")
    if cfg.max_rollbacks < 1:
        raise ConfigError(f"max_rollbacks={cfg.max_rollbacks!r} must be >= 1.")
    if cfg.log.eval_episodes < 1:
        raise ConfigError(
            f"log.eval_episodes={cfg.log.eval_episodes!r} must be >= 1 (the final table averages over them)."
        )
    _positive("log.video_max_steps", cfg.log.video_max_steps)
    if cfg.get("objective") is not None:
        check_choice("objective", cfg.objective, OBJECTIVES)
    if "split" in cfg.env.kwargs:
        check_choice("env.kwargs.split", cfg.env.kwargs.split, SPLITS)


def _validate_core(agent: Any) -> None:
    for key in ("d_model", "n_layers", "n_heads", "window"):
        _positive(f"agent.core.{key}", agent.core[key])
    if agent.core.d_model % agent.core.n_heads:
        raise ConfigError(
            f"agent.core.d_model={agent.core.d_model} must be divisible by agent.core.n_heads={agent.core.n_heads}."
        )
    if agent.weight_decay < 0:
        raise ConfigError(f"agent.weight_decay={agent.weight_decay!r} must be >= 0.")


def _validate_memory(agent: Any, num_envs: int) -> None:
    memory = agent.memory
    check_choice("memory", memory.variant, MEMORY_VARIANTS)
    check_choice("agent.memory.write", memory.write, WRITE_MODES)
    for key in ("k", "capacity", "n_heads", "d_state", "chunk"):
        _positive(f"agent.memory.{key}", memory[key])
    if memory.gist_horizon < 0:
        raise ConfigError(
            f"agent.memory.gist_horizon={memory.gist_horizon!r} must be >= 0 (0: unbounded; H: forget >= 1/H a step)."
        )
    if memory.variant in ("retrieval", "hybrid"):  # the store is allocated whole, per env, at the start
        gib = num_envs * memory.capacity * (2 * agent.core.d_model + 4) * 4 / 2**30
        if gib > MAX_STORE_GIB:
            raise ConfigError(
                f"agent.memory.capacity={memory.capacity} needs {gib:,.1f} GiB for {num_envs} envs' stores "
                f"(more than {MAX_STORE_GIB} GiB); lower agent.memory.capacity (eviction keeps the most surprising steps)."
            )
    if memory.write == "surprise" and "world_model" not in agent:
        raise ConfigError(
            "agent.memory.write=surprise needs a world model (surprise is its prediction error); "
            f"agent={agent.name} has none. Use agent.memory.write=always or agent=developmental."
        )


def _validate_world_model(agent: Any) -> None:
    _positive("agent.world_model.k", agent.world_model.k)
    if not 0 < agent.world_model.batch_fraction <= 1:
        raise ConfigError(f"agent.world_model.batch_fraction={agent.world_model.batch_fraction!r} must be in (0, 1].")
    if agent.world_model.exact_sample < 0:
        raise ConfigError(
            f"agent.world_model.exact_sample={agent.world_model.exact_sample!r} must be >= 0 (0: every token)."
        )
    if agent.world_model_coef < 0:
        raise ConfigError(f"agent.world_model_coef={agent.world_model_coef!r} must be >= 0.")
    imagine = agent.imagine
    if not 1 <= imagine.horizon <= MAX_HORIZON:
        raise ConfigError(f"agent.imagine.horizon={imagine.horizon!r} must be in 1..{MAX_HORIZON} (imagined steps per action).")
    if not 0 < imagine.gamma <= 1:
        raise ConfigError(f"agent.imagine.gamma={imagine.gamma!r} must be in (0, 1].")
    if imagine.coef < 0 or imagine.replay < 0:
        raise ConfigError(f"agent.imagine.coef={imagine.coef!r} and agent.imagine.replay={imagine.replay!r} must be >= 0.")
    if not 0 <= agent.shield_tau <= 1:
        raise ConfigError(
            f"agent.shield_tau={agent.shield_tau!r} must be in [0, 1] (a probability; 1 turns the shield off)."
        )


def _validate_lagrangian(agent: Any) -> None:
    """PPO-Lagrangian's keys: a budget and a multiplier that are never negative, a step size that is positive."""
    for key in ("cost_limit", "lagrangian_init"):
        if not 0 <= agent[key] < math.inf:
            raise ConfigError(f"agent.{key}={agent[key]!r} must be a finite number >= 0.")
    if not 0 < agent.lagrangian_lr < math.inf:
        raise ConfigError(f"agent.lagrangian_lr={agent.lagrangian_lr!r} must be a finite number > 0.")


def _validate_intrinsic(agent: Any) -> None:
    """``agent.intrinsic`` names a kind; surprise needs a world model that learns (it is its prediction error)."""
    check_choice("agent.intrinsic", agent.intrinsic, INTRINSIC)
    if agent.intrinsic_coef < 0:
        raise ConfigError(f"agent.intrinsic_coef={agent.intrinsic_coef!r} must be >= 0.")
    if "novelty_bits" in agent and not 1 <= agent.novelty_bits <= 63:
        raise ConfigError(f"agent.novelty_bits={agent.novelty_bits!r} must be in 1..63 (a state's key is an int64).")
    if agent.intrinsic != "surprise" or agent.intrinsic_coef == 0:
        return
    if "world_model" not in agent:
        raise ConfigError(
            f"agent.intrinsic=surprise needs a world model (surprise is its prediction error); agent={agent.name} has none. "
            "Use agent.intrinsic=novelty or agent=developmental."
        )
    if agent.world_model_coef <= 0:
        raise ConfigError(
            "agent.intrinsic=surprise with agent.intrinsic_coef > 0 needs agent.world_model_coef > 0 "
            "(surprise comes from the world model). Use agent.intrinsic=novelty, or set agent.world_model_coef."
        )


def _validate_distributed(cfg: Any) -> None:
    """``distributed.*``: a whole number of envs per process, and an agent that trains data-parallel."""
    nproc = cfg.distributed.nproc
    check_choice("distributed.backend", cfg.distributed.backend, BACKENDS)
    if isinstance(nproc, bool) or nproc < 1:
        raise ConfigError(f"distributed.nproc={nproc!r} must be an integer >= 1.")
    if nproc == 1:
        return
    if cfg.agent.name not in DISTRIBUTED_AGENTS:
        raise ConfigError(
            f"agent={cfg.agent.name} does not train in several processes (Stable-Baselines3 has no data-parallel "
            f"training): use distributed.nproc=1, or agent={' or agent='.join(DISTRIBUTED_AGENTS)}."
        )
    if cfg.env.num_envs % nproc:
        raise ConfigError(
            f"env.num_envs={cfg.env.num_envs} cannot be split evenly across distributed.nproc={nproc} processes: "
            f"make env.num_envs a multiple of {nproc} (e.g. env.num_envs={nproc * -(-cfg.env.num_envs // nproc)})."
        )


def _validate_run_schedule(cfg: Any) -> None:
    validate_schedule(cfg.schedule)
    agent = cfg.agent
    if cfg.schedule.name != "constant" and agent.name not in ("developmental", "ablation"):
        raise ConfigError(
            f"schedule={cfg.schedule.name} is applied by the developmental agent (and its ablation); "
            f"agent={agent.name} trains with its own LR. Use schedule=constant or agent=developmental."
        )
    if cfg.schedule.name in ("sleep", "catapult_sleep") and agent.get("weight_decay", 0.0) == 0:
        raise ConfigError(
            f"schedule={cfg.schedule.name} multiplies the weight decay, and agent.weight_decay=0: "
            "set agent.weight_decay > 0 (e.g. agent.weight_decay=0.01)."
        )
