"""Stable-Baselines3 PPO, sb3-contrib RecurrentPPO and PPO-Lagrangian (``lagrangian.py``) behind devlearn's
``Agent`` interface: the baselines."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch.utils.tensorboard import SummaryWriter

from devlearn import checkpoint
from devlearn.agents.sb3.lagrangian import PPOLagrangian
from devlearn.agents.sb3.vec import NoveltyBonus, SB3VecEnv
from devlearn.config import minibatch_size
from devlearn.logging.runlog import RunLog

# Hyperparameters taken from the config on load, not the file (resume=force may change them).
FROM_CONFIG = ("learning_rate", "gamma", "gae_lambda", "ent_coef", "max_grad_norm", "batch_size", "n_epochs")
FROM_CONFIG += ("cost_limit", "lagrangian_lr")  # PPO-Lagrangian's; its multiplier itself comes from the file
EXTRA = "devlearn.pt"  # devlearn's own entry in SB3's checkpoint.zip (weights-only torch file)
ALGORITHMS = {
    "ppo": (PPO, "MlpPolicy"),
    "recurrent_ppo": (RecurrentPPO, "MlpLstmPolicy"),
    "ppo_lagrangian": (PPOLagrangian, "MlpPolicy"),  # its MlpPolicy: CostCriticPolicy (a cost critic beside V)
}
LAGRANGIAN_KEYS = ("cost_limit", "lagrangian_lr", "lagrangian_init")



class Flatten(FlattenExtractor):
    """SB3's ``FlattenExtractor`` with a Python ``int`` width: for a MultiDiscrete space SB3 computes a numpy
    integer, which ``torch.nn.LSTM`` refuses (``agent=recurrent_ppo`` on ``devlearn/Recall-v0`` failed)."""

    def __init__(self, observation_space: spaces.Space) -> None:
        super().__init__(observation_space)
        self._features_dim = int(self._features_dim)

class _SharedTensorBoard(TensorBoardOutputFormat):
    """SB3's TensorBoard output, writing into the run's own writer (one event file per run)."""

    def __init__(self, writer: SummaryWriter):
        self.writer = writer
        self._is_closed = False


class _Reporter(BaseCallback):
    """Forwards finished episodes to the RunLog, checkpoints, and rolls back a diverged update."""

    def __init__(self, agent: SB3Agent, log: RunLog, run_dir: Path, every: int):
        super().__init__()
        self.agent, self.log, self.run_dir, self.every = agent, log, run_dir, every
        self.stopping = False  # a stop signal came: end after the update that just ran (SB3 stops in _on_step)

    def _on_step(self) -> bool:
        finished = [
            {
                "return": i["episode"]["r"],
                "length": i["episode"]["l"],
                **{k: i[k] for k in ("cost", "catastrophe", "success")},
            }
            for i in self.locals["infos"]
            if "episode" in i
        ]
        self.log.episodes(finished)
        return not self.stopping

    def _on_rollout_start(self) -> None:
        # Runs right after PPO's update: the place to catch a diverged update before it acts or is saved.
        if not checkpoint.all_finite(self.model.policy):
            self.agent.rollbacks += 1
            print(
                f"devlearn: non-finite parameters at step {self.num_timesteps}; rolled back to the last checkpoint"
            )
            self.model.set_parameters(str(self.run_dir / "checkpoint.zip"), exact_match=True)
            self.log.rollback(self.num_timesteps, "non-finite parameters")  # Diverged after max in a row
        elif self.log.stop_requested:
            self.stopping = True  # learn() saves as SB3 returns, one env step later
        elif self.log.checkpoint_due(self.num_timesteps, self.every):
            self.agent.save(self.run_dir)

    def _on_rollout_end(self) -> None:
        self.log.rollout_end(self.num_timesteps)


class SB3Agent:
    """PPO or RecurrentPPO from (sb3-contrib) Stable-Baselines3, trained on a devlearn ``VectorEnv``."""

    def __init__(
        self, algorithm: str, env: Any, cfg: Any, seed: int, device: str, writer: SummaryWriter | None
    ):
        algo, policy = ALGORITHMS[algorithm]
        self.algorithm = algorithm
        self.venv = SB3VecEnv(env)
        # validate() refuses surprise (no world model); intrinsic_coef=0 is no bonus, whatever the kind
        if cfg.intrinsic == "novelty" and cfg.intrinsic_coef > 0:
            self.venv = NoveltyBonus(self.venv, cfg.intrinsic_coef)
        self.venv.seed(seed)
        self.rollbacks = 0
        # The run's counters ride in the checkpoint: train() sets ``runlog``; ``load`` leaves them in ``restored_log``.
        self.runlog: RunLog | None = None
        self.restored_log: dict[str, Any] | None = None
        self.model = algo(
            policy,
            self.venv,
            learning_rate=cfg.learning_rate,
            n_steps=cfg.n_steps,
            batch_size=minibatch_size(cfg, env.num_envs),
            n_epochs=cfg.n_epochs,
            gamma=cfg.gamma,
            gae_lambda=cfg.gae_lambda,
            clip_range=cfg.clip_range,
            ent_coef=cfg.ent_coef,
            max_grad_norm=cfg.max_grad_norm,
            **({k: cfg[k] for k in LAGRANGIAN_KEYS} if algorithm == "ppo_lagrangian" else {}),
            # Symbolic grids (object/colour/state indices) must reach the network as they are, not divided by 255.
            policy_kwargs={
                "net_arch": list(cfg.hidden_sizes),
                "normalize_images": cfg.normalize_images,
                **({} if isinstance(self.venv.observation_space, spaces.Dict) else {"features_extractor_class": Flatten}),
            },
            seed=seed,
            device=device,
            verbose=0,
        )
        self.writer = writer
        self._attach_logger()

    def _attach_logger(self) -> None:
        if self.writer is not None:  # None when rebuilt only to be evaluated
            self.model.set_logger(Logger(folder=None, output_formats=[_SharedTensorBoard(self.writer)]))

    @property
    def num_timesteps(self) -> int:
        return int(self.model.num_timesteps)

    def learn(self, total_timesteps: int, log: RunLog, run_dir: Path, checkpoint_every: int) -> None:
        if not (run_dir / "checkpoint.zip").is_file():
            self.save(run_dir)  # the rollback target before the first update
        log.checkpointed(self.num_timesteps)
        remaining = total_timesteps - self.num_timesteps
        if remaining > 0:
            reporter = _Reporter(self, log, run_dir, checkpoint_every)
            self.model.learn(remaining, callback=reporter, reset_num_timesteps=False)
        self.save(run_dir)

    def policy(self, deterministic: bool = True):
        state: tuple[np.ndarray, ...] | None = None

        def act(obs: Any, episode_start: np.ndarray) -> np.ndarray:
            nonlocal state
            if self.algorithm == "recurrent_ppo":
                actions, state = self.model.predict(
                    obs, state=state, episode_start=episode_start, deterministic=deterministic
                )
                return actions
            return self.model.predict(obs, deterministic=deterministic)[0]

        return act

    def save(self, run_dir: Path) -> None:
        """SB3's zip plus a ``devlearn.pt`` entry (RNG, rollbacks, run counters), renamed into place at once.

        One file, one rename: a kill at any moment leaves either the old checkpoint or the new one,
        never a model of one step with counters of another.
        """
        extra = {"rng": checkpoint.rng_state(), "rollbacks": self.rollbacks}
        if self.runlog is not None:
            extra["log"] = self.runlog.state_dict()
        own = io.BytesIO()
        torch.save(extra, own)
        # in memory first: a full disk can then say how many bytes it needed; the temp file goes, the old stays
        archive = io.BytesIO()
        self.model.save(archive)  # SB3's zip: policy, optimizer, counters
        # ".pt", not ".pth": SB3's loader reads every *.pth entry as a module's state dict
        with zipfile.ZipFile(archive, "a") as z:
            z.writestr(EXTRA, own.getvalue())
        checkpoint.write_bytes(archive.getbuffer(), Path(run_dir) / "checkpoint.zip")

    def load(self, run_dir: Path) -> None:
        """Restore ``checkpoint.zip`` without unpickling anything from it.

        SB3 stores some fields of its ``data`` entry with cloudpickle (spaces, schedules, the policy
        class, the last observation): loading those runs whatever code the file carries. Every such
        field is handed to SB3 as a ``custom_objects`` value instead, taken from this agent's own model,
        which was just built from the run's config and env; so are the hyperparameters the config
        may change on ``resume=force``. The weights (``*.pth``) and devlearn's entry are read with
        ``weights_only=True``. What is trusted from the file: tensors, numbers, strings and lists.
        """
        algo, _ = ALGORITHMS[self.algorithm]
        path = run_dir / "checkpoint.zip"
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data"))
            extra = torch.load(io.BytesIO(z.read(EXTRA)), weights_only=True)
        custom = {}
        for key, value in data.items():
            if (isinstance(value, dict) and ":serialized:" in value) or key in FROM_CONFIG:
                if not hasattr(self.model, key):
                    raise ValueError(f"checkpoint.zip has a pickled field {key!r} that devlearn does not rebuild")
                custom[key] = getattr(self.model, key)
        self.model = algo.load(path, env=self.venv, device=self.model.device, custom_objects=custom)
        self._attach_logger()
        checkpoint.set_rng_state(extra["rng"])
        self.rollbacks = int(extra["rollbacks"])
        self.restored_log = extra.get("log")
