"""Typed configuration: the schema every YAML file in ``configs/`` is validated against.

Each agent has its own schema holding only its own keys (``AGENT_SCHEMAS``, the one list of
agents): Hydra merges ``configs/train.yaml`` and the chosen group files (``env/``, ``agent/``)
onto them, so a wrong type is caught by OmegaConf and a key of another agent is refused;
``validate`` then checks values that have a fixed set of choices or a range, naming what is
allowed. The agent YAML files set nothing the schema does not already say: the defaults live
here, once (``tests/test_config.py`` composes every group and compares).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from devlearn.errors import ConfigError
from devlearn.model.core import CoreConfig
from devlearn.model.memory import VARIANTS as MEMORY_VARIANTS
from devlearn.model.memory import MemoryConfig
from devlearn.model.memory.retrieval import WRITE_MODES
from devlearn.model.world_model import WorldModelConfig
from devlearn.train.schedules import ScheduleConfig, validate_schedule

__all__ = [
    "AGENTS",
    "AGENT_SCHEMAS",
    "OBJECTIVES",
    "ConfigError",
    "CoreConfig",
    "DevelopmentalConfig",
    "DistributedConfig",
    "EnvConfig",
    "ScheduleConfig",
    "TrainConfig",
    "WorldModelConfig",
    "agent_keys",
    "register_configs",
    "schema_keys",
    "validate",
]

DEVICES = ("auto", "cpu", "cuda")
MAX_STORE_GIB = 8  # retrieval stores above this are refused before allocation (a typo of capacity would OOM-kill the run)
BACKENDS = ("auto", "gloo", "nccl")
DISTRIBUTED_AGENTS = ("developmental", "ablation")  # SB3 trains in one process
VECTORIZATIONS = ("auto", "twin", "sync")
SPLITS = ("train", "heldout")
INTRINSIC = ("none", "novelty", "surprise")  # agent.intrinsic: the intrinsic reward's kind
# What a run can return to a sweeper (`objective=`): the figures `devlearn report` aggregates.
OBJECTIVES = tuple(f"{s}/{k}" for s in SPLITS for k in ("return", "success", "catastrophe_rate")) + (
    "training/catastrophes",
    "env_steps_per_second",
)


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
class PPOConfig:
    """What every devlearn agent shares: it is trained with PPO (clipped objective, GAE)."""

    name: str = MISSING
    total_timesteps: int = 100_000
    learning_rate: float = 3e-4
    n_steps: int = 128  # rollout length per env
    batch_size: int = 256
    n_epochs: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    max_grad_norm: float = 0.5
    # An intrinsic reward added to the env's before GAE (INTRINSIC): novelty pays intrinsic_coef for each state's
    # first visit in an episode (devlearn/model/novelty.py); surprise pays the world model's surprise (developmental
    # only); none: off. intrinsic_coef=0 is off too (the default, except agent=developmental: 0.001).
    intrinsic: str = "novelty"
    intrinsic_coef: float = 0.0


@dataclass
class SB3PPOConfig(PPOConfig):
    """``agent=ppo``: Stable-Baselines3 PPO with an MLP policy, the baseline every agent is measured against."""

    name: str = "ppo"
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])
    normalize_images: bool = False  # divide uint8 image observations by 255 (true for pixel envs)


@dataclass
class RecurrentPPOConfig(SB3PPOConfig):
    """``agent=recurrent_ppo``: sb3-contrib RecurrentPPO (an LSTM policy), the memory baseline."""

    name: str = "recurrent_ppo"
    hidden_sizes: list[int] = field(default_factory=lambda: [64])


@dataclass
class AblationConfig(PPOConfig):
    """``agent=ablation``: the developmental agent's core and PPO with no world model (and so no shield).

    The comparison that says whether learning consequences helps: same core, same PPO, same budget.
    """

    name: str = "ablation"
    n_steps: int = 64
    weight_decay: float = 0.0  # AdamW decay of the weight matrices (devlearn/train/optim.py)
    # intrinsic=novelty: a state is the SimHash of its centred encoding, this many sign bits. 63, not 32: over 8k
    # training steps on CliffEdge, a new state's key collided with a seen one on 4.2% of steps at 32 bits, 0.6% at 63
    novelty_bits: int = 63
    core: CoreConfig = field(default_factory=CoreConfig)
    # memory=none|window|ssm|retrieval|hybrid (configs/memory/): what the core sees beyond its window
    memory: MemoryConfig = field(default_factory=lambda: MemoryConfig(variant="window"))


@dataclass
class DevelopmentalConfig(AblationConfig):
    """``agent=developmental``: PPO + ``world_model_coef`` x the world-model loss, acting through the shield."""

    name: str = "developmental"
    # lambda in: loss = PPO + lambda * world-model loss (a weight, not a switch). 0.1: at 1.0 the world model's pull
    # on the shared core kept the policy from the goal in all 3 seeds on CliffEdge at 100k steps (docs/benchmarks.md)
    world_model_coef: float = 0.1
    shield_tau: float = 0.5  # mask actions whose predicted catastrophe probability exceeds tau; 1 disables
    # the novelty bonus on by default here: at 0.001 all 5 seeds reached the goal on held-out cliffs at 100k steps
    # (median 0.94, against 0.40 at 0 and 0.00 at 0.01; docs/benchmarks.md, "Consequences, 5 seeds")
    intrinsic_coef: float = 0.001
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)


# The one list of agents: name -> schema. ``devlearn.agents.make_agent`` builds each by this name.
AGENT_SCHEMAS: dict[str, type[PPOConfig]] = {
    "developmental": DevelopmentalConfig,
    "ablation": AblationConfig,
    "ppo": SB3PPOConfig,
    "recurrent_ppo": RecurrentPPOConfig,
}
AGENTS = tuple(AGENT_SCHEMAS)


@dataclass
class LogConfig:
    """What goes to TensorBoard and the console."""

    video: bool = True  # record a rollout video (or a transcript for text envs) at the end
    video_max_steps: int = 200
    eval_episodes: int = 20  # episodes per split in the final table
    progress_bar: bool = True


@dataclass
class DistributedConfig:
    """Data-parallel training in several processes of one machine (``devlearn/train/spawn.py``)."""

    nproc: int = 1  # processes (ranks); env.num_envs is split among them; on CUDA one GPU each
    backend: str = "auto"  # auto: nccl on CUDA, gloo on CPU


@dataclass
class TrainConfig:
    """``devlearn train``: everything a run needs. ``agent`` takes the chosen agent's schema."""

    env: EnvConfig = field(default_factory=EnvConfig)
    agent: Any = MISSING
    log: LogConfig = field(default_factory=LogConfig)
    seed: int = 0
    device: str = "auto"
    # false | true: continue the run of this env id, agent and seed whose stored config matches |
    # force: continue it even if non-structural keys differ (devlearn/train/resume.py)
    resume: Any = False
    checkpoint_every: int = 20_000  # env steps between checkpoints
    # The final figure the run returns to Hydra's sweeper (Optuna optimizes it); None: the run returns nothing.
    objective: str | None = None
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)  # LR / weight decay per PPO update


    max_rollbacks: int = 5  # this many rollbacks in a row stop the run: the update diverges every time
    deterministic: bool = False  # bit-identical runs for one seed on CPU (single-threaded, deterministic kernels)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


def run_name(env_id: str) -> str:
    """An env id as a folder name: ``devlearn/CliffEdge-v0`` -> ``devlearn_CliffEdge-v0`` (run folders are named by it)."""
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in str(env_id))


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore: ``train_schema``, ``agent/<name>_schema``,
    ``schedule/schedule_schema`` and ``grok_schema`` (``devlearn grok``)."""
    from devlearn.grok import GrokConfig

    OmegaConf.register_new_resolver("run_name", run_name, replace=True)  # used by hydra.run.dir

    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="schedule", name="schedule_schema", node=ScheduleConfig)
    cs.store(name="grok_schema", node=GrokConfig)
    for name, schema in AGENT_SCHEMAS.items():
        cs.store(group="agent", name=f"{name}_schema", node=schema)


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
    agent = cfg.agent
    for key in ("total_timesteps", "learning_rate", "n_steps", "batch_size", "n_epochs", "clip_range"):
        _positive(f"agent.{key}", agent[key])
    if not 0 < agent.gamma <= 1 or not 0 <= agent.gae_lambda <= 1:
        raise ConfigError("agent.gamma must be in (0, 1] and agent.gae_lambda in [0, 1].")
    _validate_intrinsic(agent)
    if "core" in agent:
        for key in ("d_model", "n_layers", "n_heads", "window"):
            _positive(f"agent.core.{key}", agent.core[key])
        if agent.core.d_model % agent.core.n_heads:
            raise ConfigError(
                f"agent.core.d_model={agent.core.d_model} must be divisible by agent.core.n_heads={agent.core.n_heads}."
            )
        if agent.weight_decay < 0:
            raise ConfigError(f"agent.weight_decay={agent.weight_decay!r} must be >= 0.")
    if "memory" in agent:
        _choice("memory", agent.memory.variant, MEMORY_VARIANTS)
        _choice("agent.memory.write", agent.memory.write, WRITE_MODES)
        for key in ("k", "capacity", "n_heads", "d_state", "chunk"):
            _positive(f"agent.memory.{key}", agent.memory[key])
        if agent.memory.gist_horizon < 0:
            raise ConfigError(
                f"agent.memory.gist_horizon={agent.memory.gist_horizon!r} must be >= 0 (0: unbounded; H: forget >= 1/H a step)."
            )
        if agent.memory.variant in ("retrieval", "hybrid"):  # the store is allocated whole, per env, at the start
            gib = cfg.env.num_envs * agent.memory.capacity * (2 * agent.core.d_model + 4) * 4 / 2**30
            if gib > MAX_STORE_GIB:
                raise ConfigError(
                    f"agent.memory.capacity={agent.memory.capacity} needs {gib:,.1f} GiB for {cfg.env.num_envs} envs' stores "
                    f"(more than {MAX_STORE_GIB} GiB); lower agent.memory.capacity (eviction keeps the most surprising steps)."
                )
        if agent.memory.write == "surprise" and "world_model" not in agent:
            raise ConfigError(
                "agent.memory.write=surprise needs a world model (surprise is its prediction error); "
                f"agent={agent.name} has none. Use agent.memory.write=always or agent=developmental."
            )
    if "world_model" in agent:
        _positive("agent.world_model.k", agent.world_model.k)
        if not 0 < agent.world_model.batch_fraction <= 1:
            raise ConfigError(
                f"agent.world_model.batch_fraction={agent.world_model.batch_fraction!r} must be in (0, 1]."
            )
        if agent.world_model.exact_sample < 0:
            raise ConfigError(
                f"agent.world_model.exact_sample={agent.world_model.exact_sample!r} must be >= 0 (0: every token)."
            )
        if agent.world_model_coef < 0:
            raise ConfigError(f"agent.world_model_coef={agent.world_model_coef!r} must be >= 0.")
        if not 0 <= agent.shield_tau <= 1:
            raise ConfigError(
                f"agent.shield_tau={agent.shield_tau!r} must be in [0, 1] (a probability; 1 turns the shield off)."
            )
    if "distributed" in cfg:
        _validate_distributed(cfg)
    if cfg.get("objective") is not None:
        _choice("objective", cfg.objective, OBJECTIVES)
    if "split" in cfg.env.kwargs:
        _choice("env.kwargs.split", cfg.env.kwargs.split, SPLITS)
    if "schedule" in cfg:
        validate_schedule(cfg.schedule)
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


def _validate_intrinsic(agent: Any) -> None:
    """``agent.intrinsic`` names a kind; surprise needs a world model that learns (it is its prediction error)."""
    _choice("agent.intrinsic", agent.intrinsic, INTRINSIC)
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
    _choice("distributed.backend", cfg.distributed.backend, BACKENDS)
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


def schema_keys(node: Any = TrainConfig, prefix: str = "") -> dict[str, Any]:
    """Every settable dotted key of a schema, mapped to its dataclass field (for "did you mean" on unknown keys).

    ``TrainConfig.agent`` has no schema of its own: see ``agent_keys`` for an agent's keys.
    """
    keys: dict[str, Any] = {}
    for f in fields(node):
        dotted = f"{prefix}{f.name}"
        keys[dotted] = f
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            keys.update(schema_keys(type(default), dotted + "."))
    return keys


def agent_keys(agent: str) -> dict[str, Any]:
    """The dotted keys ``agent.*`` that agent ``agent`` takes."""
    return schema_keys(AGENT_SCHEMAS[agent], "agent.")
