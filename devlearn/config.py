"""Typed configuration: the schema every YAML file in ``configs/`` is validated against.

Hydra merges ``configs/train.yaml`` and the chosen group files (``env/``, ``agent/``) onto
``TrainConfig``, so a wrong type is caught by OmegaConf; ``validate`` then checks the values
that have a fixed set of choices and names the allowed ones.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

DEVICES = ("auto", "cpu", "cuda")
VECTORIZATIONS = ("auto", "twin", "sync")
SPLITS = ("train", "heldout")
AGENTS = ("developmental", "ablation", "ppo", "recurrent_ppo")


class ConfigError(ValueError):
    """A configuration value or key that devlearn cannot use; the message says what is allowed."""


@dataclass
class EnvConfig:
    """Which environment to train on and how to batch it."""

    name: str = MISSING  # short name used in run directories, e.g. "cliff"
    id: str = MISSING  # any devlearn or Gymnasium id, e.g. "devlearn/CliffEdge-v0"
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the env constructor
    num_envs: int = 8
    vectorization: str = "auto"  # auto: the batched twin if the id has one, else gymnasium's SyncVectorEnv
    eval_split: str = "heldout"  # the split the final table reports next to "train"


@dataclass
class CoreConfig:
    """Size of the core transformer."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    window: int = 8  # steps per window; the transformer sees 2 * window tokens
    dropout: float = 0.0


@dataclass
class WorldModelConfig:
    """Weights of the world-model losses, rollout depth and the EMA target's rate."""

    exact_weight: float = 1.0
    reward_weight: float = 1.0
    termination_weight: float = 1.0
    catastrophe_weight: float = 1.0
    catastrophe_pos_weight: float = 1.0  # > 1 trades false alarms for fewer missed catastrophes
    latent: bool = True
    latent_weight: float = 1.0
    k: int = 1  # latent rollout depth: predict o_{t+1} .. o_{t+k}
    ema_tau: float = 0.01  # Polyak rate: target <- (1 - tau) * target + tau * online


@dataclass
class AgentConfig:
    """The learner and its PPO hyperparameters (every devlearn agent is trained with PPO)."""

    name: str = "ppo"
    total_timesteps: int = 100_000
    learning_rate: float = 3e-4
    n_steps: int = 128  # rollout length per env
    batch_size: int = 256
    n_epochs: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])
    normalize_images: bool = False  # divide uint8 image observations by 255 (true for pixel envs)
    max_grad_norm: float = 0.5
    # the developmental agent (agent=developmental, and its ablation agent=ablation)
    world_model_coef: float = 1.0  # lambda in: loss = PPO + lambda * developmental loss (0 in the ablation)
    shield_tau: float = 0.5  # mask actions whose predicted catastrophe probability exceeds tau; 1 disables
    intrinsic_coef: float = 0.0  # surprise as intrinsic reward (0 = off)
    core: CoreConfig = field(default_factory=CoreConfig)
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)


@dataclass
class LogConfig:
    """What goes to TensorBoard and the console."""

    video: bool = True  # record a rollout video (or a transcript for text envs) at the end
    video_max_steps: int = 200
    eval_episodes: int = 20  # episodes per split in the final table
    progress_bar: bool = True


@dataclass
class TrainConfig:
    """``devlearn train``: everything a run needs."""

    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    log: LogConfig = field(default_factory=LogConfig)
    seed: int = 0
    device: str = "auto"
    resume: bool = False  # continue the newest run of this env, agent and seed from its checkpoint
    checkpoint_every: int = 20_000  # env steps between checkpoints


def register_configs() -> None:
    """Register the schema with Hydra's ConfigStore (``train.yaml`` lists it first in its defaults)."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{key}={value!r} is not allowed.{hint} Allowed values: {', '.join(allowed)}.")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{key}={value!r} must be > 0.")


def validate(cfg: Any) -> None:
    """Check the values of a composed config; raise ``ConfigError`` naming the key and what is allowed."""
    _choice("device", cfg.device, DEVICES)
    _choice("env.vectorization", cfg.env.vectorization, VECTORIZATIONS)
    _choice("env.eval_split", cfg.env.eval_split, SPLITS)
    _choice("agent.name", cfg.agent.name, AGENTS)
    _positive("env.num_envs", cfg.env.num_envs)
    _positive("checkpoint_every", cfg.checkpoint_every)
    for key in ("total_timesteps", "learning_rate", "n_steps", "batch_size", "n_epochs", "clip_range"):
        _positive(f"agent.{key}", cfg.agent[key])
    if not 0 < cfg.agent.gamma <= 1 or not 0 <= cfg.agent.gae_lambda <= 1:
        raise ConfigError("agent.gamma must be in (0, 1] and agent.gae_lambda in [0, 1].")
    for key in ("d_model", "n_layers", "n_heads", "window"):
        _positive(f"agent.core.{key}", cfg.agent.core[key])
    if cfg.agent.core.d_model % cfg.agent.core.n_heads:
        raise ConfigError(
            f"agent.core.d_model={cfg.agent.core.d_model} must be divisible by agent.core.n_heads={cfg.agent.core.n_heads}."
        )
    _positive("agent.world_model.k", cfg.agent.world_model.k)
    for key in ("world_model_coef", "shield_tau", "intrinsic_coef"):
        if cfg.agent[key] < 0:
            raise ConfigError(f"agent.{key}={cfg.agent[key]!r} must be >= 0.")
    if "split" in cfg.env.kwargs:
        _choice("env.kwargs.split", cfg.env.kwargs.split, SPLITS)


def schema_keys(node: Any = TrainConfig, prefix: str = "") -> dict[str, Any]:
    """Every settable dotted key of the schema, mapped to its dataclass field (for "did you mean" on unknown keys)."""
    keys: dict[str, Any] = {}
    for f in fields(node):
        dotted = f"{prefix}{f.name}"
        keys[dotted] = f
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            keys.update(schema_keys(type(default), dotted + "."))
    return keys
