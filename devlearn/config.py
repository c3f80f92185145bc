"""Typed configuration: the schema every YAML file in ``configs/`` is validated against.

Each agent has its own schema holding only its own keys (``AGENT_SCHEMAS``, the one list of
agents): Hydra merges ``configs/train.yaml`` and the chosen group files (``env/``, ``agent/``)
onto them, so a wrong type is caught by OmegaConf and a key of another agent is refused;
``devlearn/validate.py`` then checks values that have a fixed set of choices or a range, naming what is
allowed. The agent YAML files set nothing the schema does not already say: the defaults live
here, once (``tests/test_config.py`` composes every group and compares).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from devlearn.errors import ConfigError
from devlearn.model.core import CoreConfig
from devlearn.model.memory import MemoryConfig
from devlearn.model.world_model import WorldModelConfig
from devlearn.schedules import ScheduleConfig

__all__ = [
    "AGENTS",
    "AGENT_SCHEMAS",
    "OBJECTIVES",
    "ConfigError",
    "CoreConfig",
    "DevelopmentalConfig",
    "DistributedConfig",
    "EnvConfig",
    "GrokConfig",
    "PPOLagrangianConfig",
    "ScheduleConfig",
    "TrainConfig",
    "WorldModelConfig",
    "agent_keys",
    "register_configs",
    "schema_keys",
    "upgrade",
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
    # Minibatches per epoch, as CleanRL's num_minibatches: a minibatch is n_steps x num_envs / num_minibatches
    # transitions, so it follows the batch (256 at the default 8 envs). A fixed 256 at 1,024 envs on an H200 made
    # 256 optimizer steps per rollout and ran 10x slower than a tuned minibatch (issue "The whole loop on the GPU")
    num_minibatches: int = 4
    batch_size: int | None = None  # transitions per minibatch; set, it overrides num_minibatches
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
class PPOLagrangianConfig(SB3PPOConfig):
    """``agent=ppo_lagrangian``: PPO-Lagrangian (Ray et al. 2019; OmniSafe's PPOLag) on SB3's PPO, the cost-aware
    baseline: a cost critic, cost advantages, and a multiplier lambda that weighs them (agents/sb3/lagrangian.py)."""

    name: str = "ppo_lagrangian"
    # The budget of cost per episode (J_c <= cost_limit). Not 0: the mean cost of episodes is never below 0, so at 0
    # lambda could only rise, never relax. In the bundled envs a catastrophe costs 1 and (CliffEdge, CarWash) ends
    # the episode, so 0.05 allows about one catastrophe in 20 episodes
    cost_limit: float = 0.05
    # lambda <- max(0, lambda + lagrangian_lr * (J_c - cost_limit)) once per rollout. 1.0: on CliffEdge (30k steps,
    # seeds 0-2) all 3 seeds fell less than agent=ppo in training (109/150/120 falls against 144/174/240); at 0.1
    # lambda was still below ~2 at the end, where 1 / (1 + lambda) had shrunk the reward's advantage before the cost's
    # weighed, and 2 of 3 seeds fell more than PPO (731 and 688)
    lagrangian_lr: float = 1.0
    lagrangian_init: float = 0.0  # lambda at the start: 0 starts as plain PPO
    # (OmniSafe's PPOLag starts at 0.001 and steps lambda with Adam at 0.035 against its cost_limit of 25 per episode)


@dataclass
class AblationConfig(PPOConfig):
    """``agent=ablation``: the developmental agent's core and PPO with no world model (and so no shield).

    The comparison that says whether learning consequences helps: same core, same PPO, same budget.
    """

    name: str = "ablation"
    n_steps: int = 64
    num_minibatches: int = 2  # 256 transitions per minibatch at 8 envs, as before minibatches followed the batch
    weight_decay: float = 0.0  # AdamW decay of the weight matrices (devlearn/optim.py)
    # intrinsic=novelty: a state is the SimHash of its centred encoding, this many sign bits. 63, not 32: over 8k
    # training steps on CliffEdge, a new state's key collided with a seen one on 4.2% of steps at 32 bits, 0.6% at 63
    novelty_bits: int = 63
    core: CoreConfig = field(default_factory=CoreConfig)
    # memory=none|window|ssm|retrieval|hybrid (configs/memory/): what the core sees beyond its window
    memory: MemoryConfig = field(default_factory=lambda: MemoryConfig(variant="window"))


@dataclass
class ImagineConfig:
    """``agent.imagine``: asking "what happens if I do this?" (agents/developmental/imagine.py).

    Every candidate action is imagined ``horizon`` steps ahead (the policy's greedy actions after the first);
    the shield refuses actions whose imagined risk exceeds ``agent.shield_tau``, and with ``train`` the policy
    also learns from every imagined risk, of the actions it took and of those it did not.
    """

    # imagined steps per candidate action (1: the next step only). 1 by measurement (docs/benchmarks.md, "Imagination"):
    # on CliffEdge at equal env steps, horizon 3 fell 2x more often than 1 (320-435 falls against 137-164 at 80k
    # steps, 4 seeds), its shield's precision was 0.26 against 0.87, and it trains at half the env steps/s
    horizon: int = 1
    gamma: float = 0.9  # discount of a later imagined catastrophe against a nearer one
    # the policy learns from imagined consequences (false: they only shield). On: training success 0.72 against 0.32
    # for the shield alone, at as few falls (149 against 166; 100k steps, 5 seeds)
    train: bool = True
    coef: float = 1.0  # weight of the imagined-risk loss: coef x E_pi[risk(s, a)] on every real state
    # past catastrophe windows the world model keeps relearning (0: none). Without it the shield never fired (recall 0
    # in every seed); with it recall 1.0 and AUROC 0.997 (100k steps, 5 seeds)
    replay: int = 256


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
    imagine: ImagineConfig = field(default_factory=ImagineConfig)


# The one list of agents: name -> schema. ``devlearn.agents.make_agent`` builds each by this name.
AGENT_SCHEMAS: dict[str, type[PPOConfig]] = {
    "developmental": DevelopmentalConfig,
    "ablation": AblationConfig,
    "ppo": SB3PPOConfig,
    "recurrent_ppo": RecurrentPPOConfig,
    "ppo_lagrangian": PPOLagrangianConfig,
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
    """Data-parallel training in several processes of one machine (``devlearn/app/spawn.py``)."""

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
    # force: continue it even if non-structural keys differ (devlearn/app/resume.py)
    resume: Any = False
    checkpoint_every: int = 20_000  # env steps between checkpoints
    # seconds between checkpoints, whichever of the two comes first: a kill (SIGKILL, a crashed node) loses at most
    # this much training; a stop signal (SIGTERM, SIGUSR1) or Ctrl-C loses nothing (it checkpoints first)
    checkpoint_every_s: float = 600.0
    # The final figure the run returns to Hydra's sweeper (Optuna optimizes it); None: the run returns nothing.
    objective: str | None = None
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)  # LR / weight decay per PPO update
    max_rollbacks: int = 5  # this many rollbacks in a row stop the run: the update diverges every time
    deterministic: bool = False  # bit-identical runs for one seed on CPU (single-threaded, deterministic kernels)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


@dataclass
class GrokConfig:
    """``devlearn grok``: one grokking run (``n_seeds`` seeds of one task and one schedule)."""

    op: str = "add"  # add: (a + b) mod p | mul: (a * b) mod p
    p: int = 97  # the modulus; a prime, so every nonzero number has an inverse
    train_fraction: float = 0.5  # share of the p * p pairs trained on
    split: str = "random"  # random: random pairs | operand: train on a < bound, test on a >= bound
    steps: int = 10_000  # optimizer steps (full batch: one step is one epoch)
    lr: float = 1e-3  # the base LR the schedule multiplies
    weight_decay: float = 1.0  # the base weight decay (AdamW, decay group) the schedule multiplies
    beta1: float = 0.9
    beta2: float = 0.98  # Nanda et al. 2023
    d_model: int = 128
    n_layers: int = 1
    n_heads: int = 4
    # multiplies every weight matrix and embedding after the core's GPT-2 init (std 0.02): a large initial
    # weight norm is what makes generalisation wait for weight decay (Liu et al. 2022, "Omnigrok"). At 1 the
    # core generalises almost as soon as it memorises (a + b mod 97, half the pairs: 99% validation accuracy
    # ~50 steps after 99% train); at 8 it memorises early and generalises late, the published shape.
    init_scale: float = 8.0
    data_seed: int = (
        0  # draws the random split; fixed across seeds, so their ensemble scores one validation set
    )
    seed: int = 0  # the model's initialisation
    n_seeds: int = 1  # seeds seed .. seed + n_seeds - 1; more than one also scores their ensemble
    eval_every: int = 10  # steps between validation passes (the resolution of "steps to target")
    target_accuracy: float = 0.99  # "steps to target": the first step with validation accuracy >= this
    stop_at_target: bool = False  # end a seed once it reaches the target (saves time in a benchmark)
    device: str = "auto"
    progress_bar: bool = True
    tensorboard: bool = True
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


def run_name(env_id: str) -> str:
    """An env id as a folder name: ``devlearn/CliffEdge-v0`` -> ``devlearn_CliffEdge-v0`` (run folders are named by it)."""
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in str(env_id))


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore: ``train_schema``, ``agent/<name>_schema``,
    ``schedule/schedule_schema`` and ``grok_schema`` (``devlearn grok``)."""
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)  # used by hydra.run.dir

    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="schedule", name="schedule_schema", node=ScheduleConfig)
    cs.store(name="grok_schema", node=GrokConfig)
    for name, schema in AGENT_SCHEMAS.items():
        cs.store(group="agent", name=f"{name}_schema", node=schema)


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


def upgrade(stored: Any) -> Any:
    """A run's stored ``.hydra/config.yaml`` (a ``DictConfig``) in today's schema, in one step.

    Keys a run predates get the value that reproduces what that run did, not today's default: a run from
    before ``agent.intrinsic`` paid the world model's surprise whenever ``agent.intrinsic_coef`` was set, one
    from before ``agent.intrinsic_coef`` paid nothing, one from before ``agent.shield_tau`` acted unshielded.
    The agent's schema then fills every other key, so the code reads ``cfg.agent.<key>`` and finds it.
    A key today's schema does not know raises ``ConfigError`` naming it.
    """
    agent = stored.agent
    if agent.name not in AGENT_SCHEMAS:
        raise ConfigError(f"agent.name={agent.name!r} in the stored config is not an agent of this devlearn: {', '.join(AGENTS)}.")
    legacy: dict[str, Any] = {}
    if "intrinsic_coef" not in agent:
        legacy["intrinsic_coef"] = 0.0
    if "intrinsic" not in agent:
        legacy["intrinsic"] = "surprise" if float(agent.get("intrinsic_coef", 0.0)) > 0 else "none"
    if "world_model" in fields_of(AGENT_SCHEMAS[agent.name]) and "shield_tau" not in agent:
        legacy["shield_tau"] = 1.0
    schema = OmegaConf.structured(TrainConfig)
    schema.agent = OmegaConf.structured(AGENT_SCHEMAS[agent.name])
    try:
        return OmegaConf.merge(schema, stored, {"agent": legacy})
    except Exception as err:  # omegaconf's ConfigKeyError / ValidationError: one line, naming the key
        raise ConfigError(f"the stored config does not fit this devlearn's schema: {str(err).splitlines()[0]}") from None


def fields_of(schema: type) -> set[str]:
    """The names of a schema dataclass's fields."""
    return {f.name for f in fields(schema)}


def minibatch_size(agent: PPOConfig | Any, num_envs: int) -> int:
    """Transitions per minibatch: ``agent.batch_size`` if set, else the rollout split in ``agent.num_minibatches``."""
    if agent.batch_size is not None:
        return int(agent.batch_size)
    return max(1, agent.n_steps * num_envs // agent.num_minibatches)
