"""The developmental agent: PPO on a causal-transformer core, plus a world-model loss, acting through a learned shield.

Data flows one way (docs/architecture.md):

    env -> SequenceContext (per-env windows of (observation, action) steps) -> DevelopmentalNet
        -> decide: policy, value, shield        -> env
        -> evaluate: log-prob, value, h_act     -> ppo_loss + world_model_coef * WorldModel.loss -> AdamW

This module builds the parts and runs them; each part has one job:

* ``collect.Collector``: one rollout of acting (the shield masks what the world model imagines to be
  a catastrophe, ``shield.py``);
* ``update.Update``: PPO + the world-model loss on that rollout (the ablation, ``agent=ablation``,
  has no world model at all);
* ``intrinsic``: the intrinsic reward (``agent.intrinsic=none|novelty|surprise``), called by both;
* ``monitor.TrainingMonitor``: the figures beyond the losses, and the predicted-vs-actual pictures.

Only real transitions count (``agents/developmental/rollout.py``); windows restart at each episode.
Safety net: a checkpoint before the first update; a non-finite loss, gradient or parameter rolls the
model and optimizer back to the last checkpoint, which a diverged state never overwrites.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from gymnasium import spaces
from torch import Tensor

from devlearn import checkpoint, distributed
from devlearn.agents.developmental.collect import Collector, acting_surprise
from devlearn.agents.developmental.intrinsic import IntrinsicReward, make_intrinsic
from devlearn.agents.developmental.monitor import TrainingMonitor
from devlearn.agents.developmental.net import DevelopmentalNet
from devlearn.agents.developmental.policy import DevelopmentalPolicy
from devlearn.agents.developmental.rollout import RolloutBuffer
from devlearn.agents.developmental.update import NonFinite, Update
from devlearn.errors import ConfigError
from devlearn.logging.runlog import RunLog
from devlearn.model.context import SequenceContext
from devlearn.optim import build_optimizer
from devlearn.schedules import ScheduleConfig

CHECKPOINT = "checkpoint.pt"
COUNTERS = ("num_timesteps", "updates", "rollbacks", "rollouts")  # checkpointed with the model


class DevelopmentalAgent:
    """PPO + world model + learned shield behind ``devlearn.agents.base.Agent``.

    Args:
        cfg: a ``DevelopmentalConfig`` (or ``AblationConfig``: no world model, no shield).
        env: a next-step-autoreset ``VectorEnv`` with a ``Discrete`` action space.
        seed: seeds the parameters, the agent's sampling generator and the env's first reset.
        device: ``"cpu"`` or ``"cuda"``.
        writer: the run's TensorBoard writer (None: no pictures).
        schedule: a ``ScheduleConfig`` (None: constant). Its step is ``self.updates``, the PPO updates
            done (checkpointed), so a resumed run continues the schedule where it stopped.
        intrinsic: an intrinsic reward of one's own (None: the one ``cfg.intrinsic`` names).
    """

    def __init__(
        self,
        cfg: Any,
        env: Any,
        seed: int,
        device: str,
        writer: Any,
        schedule: Any = None,
        intrinsic: IntrinsicReward | None = None,
    ) -> None:
        act_space = env.single_action_space
        if not isinstance(act_space, spaces.Discrete):
            raise ConfigError(
                f"the developmental agent needs a Discrete action space, got {act_space}; "
                "use agent=ppo for other action spaces."
            )
        self.intrinsic = make_intrinsic(cfg) if intrinsic is None else intrinsic
        self.cfg, self.env, self.seed, self.writer = cfg, env, int(seed), writer
        self.device = torch.device(device)
        self.num_envs = int(env.num_envs)
        torch.manual_seed(self.seed)
        self.net = DevelopmentalNet(env.single_observation_space, act_space, cfg).to(self.device)
        self.wm = self.net.world_model
        self.optimizer = build_optimizer(self.net, cfg.learning_rate, cfg.weight_decay)
        self.schedule = schedule if schedule is not None else ScheduleConfig()
        # the run's length in updates, where a cosine schedule reaches its floor
        self.total_updates = -(-int(cfg.total_timesteps) // (self.num_envs * distributed.world_size() * int(cfg.n_steps)))
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(self.seed)
        self.context = self.new_context(self.num_envs, cfg.n_steps)
        self.rollout = RolloutBuffer(self.context, int(act_space.n))
        self.monitor = TrainingMonitor(self.net, self.context, self.rollout, self.intrinsic, writer)
        self.collector = Collector(
            self.net, env, self.context, self.rollout, self.gen, self.intrinsic, self.monitor, self.surprise_writes
        )
        self.updater = Update(
            cfg, self.net, self.optimizer, self.context, self.rollout, self.gen, self.schedule,
            self.total_updates, self.intrinsic,
        )  # fmt: skip
        self.intrinsic.bind(self)
        self.updates = self.rollbacks = self.rollouts = 0
        self._started = False
        # The run's counters ride in the checkpoint: train() sets ``runlog``; ``load`` leaves them in ``restored_log``.
        self.runlog: RunLog | None = None
        self.restored_log: dict[str, Any] | None = None

    def new_context(self, num_envs: int, n_steps: int) -> SequenceContext:
        """A sequence context for ``num_envs`` streams of ``n_steps``-step segments (training or evaluation).

        ``memory=none`` means the current step only: a window of 1, whatever ``core.window`` says.
        """
        window = 1 if self.cfg.memory.variant == "none" else self.cfg.core.window
        return SequenceContext(
            self.env.single_observation_space,
            num_envs,
            n_steps,
            window,
            self.cfg.core.d_model,
            self.device,
            self.net.memory,
        )

    @property
    def num_timesteps(self) -> int:
        """Env steps taken, all ranks' (the collector counts them as it takes them)."""
        return self.collector.num_timesteps

    @num_timesteps.setter
    def num_timesteps(self, value: int) -> None:
        self.collector.num_timesteps = value

    @property
    def surprise_writes(self) -> bool:
        """Memory stores only what the world model failed to predict: acting must measure surprise."""
        return self.net.memory is not None and self.net.memory.cfg.write == "surprise"

    @property
    def shield_on(self) -> bool:
        """Whether acting masks the actions the world model imagines to be catastrophes."""
        return self.net.shield_on

    # --- learning ------------------------------------------------------------------------------
    def learn(self, total_timesteps: int, log: RunLog, run_dir: Path, checkpoint_every: int) -> None:
        """Collect rollouts and update until ``num_timesteps >= total_timesteps`` (see ``Agent.learn``)."""
        run_dir = Path(run_dir)
        if not (run_dir / CHECKPOINT).is_file():
            self.save(run_dir)  # the rollback target before the first update
        log.checkpointed(self.num_timesteps)
        if not self._started:
            # a resumed run cannot restore its envs' state: it restarts them at a step-dependent seed
            self.collector.start(self.seed + self.num_timesteps)
            self._started = True
        while self.num_timesteps < total_timesteps and not log.stop_requested:  # a stop signal ends it here, saved
            finished, acting_logs = self._collect()
            log.episodes(finished)
            logs = self._update(run_dir, log)
            self.rollouts += 1
            step = self.num_timesteps
            if logs is not None:
                log.scalars({**logs, **acting_logs}, step)
                self.monitor.after_update(self.rollouts, step, last=step >= total_timesteps)
                if log.checkpoint_due(step, checkpoint_every):
                    self.save(run_dir)
            log.scalars({"train/rollbacks": self.rollbacks}, step)
            log.rollout_end(step)
            self.intrinsic.on_update_end()
            self.rollout.carry_over()
        self.save(run_dir)

    def _collect(self) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """One rollout of ``n_steps`` per env; returns finished episodes and what acting measured."""
        finished = self.collector.collect()
        return finished, self.monitor.rollout_logs()

    def _update(self, run_dir: Path, log: RunLog) -> dict[str, float] | None:
        """PPO + world-model update on the rollout; None if it diverged and was rolled back."""
        try:
            logs = self.updater(self.updates)
        except NonFinite as why:
            self._rollback(run_dir, log, str(why))
            return None
        if logs is None:  # every sub-env spent the whole rollout resetting: nothing was learned
            return {}
        self.updates += 1
        return logs

    def _rollback(self, run_dir: Path, log: RunLog, why: str) -> None:
        """Restore the model and the optimizer of the last checkpoint (counted; ``log`` stops a run that keeps diverging)."""
        state = checkpoint.load(Path(run_dir) / CHECKPOINT)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.optimizer.zero_grad(set_to_none=True)
        self.rollbacks += 1
        print(f"devlearn: {why} at step {self.num_timesteps:,}; rolled back to the last checkpoint")
        log.rollback(self.num_timesteps, why)  # raises Diverged after max_rollbacks in a row

    # --- acting and pictures -------------------------------------------------------------------
    def policy(self, deterministic: bool = True) -> DevelopmentalPolicy:
        """A fresh policy with its own per-env context (shield applied; argmax when deterministic)."""
        return DevelopmentalPolicy(self, deterministic)

    def acting_surprise(self, C: SequenceContext, j: int, next_obs: Any, real: Tensor) -> Tensor:
        """Surprise of o_{j+1} in context ``C`` under the world model that acts (see ``collect.acting_surprise``)."""
        return acting_surprise(self.net, C, j, next_obs, real)

    def log_prediction(self, step: int) -> bool:
        """Write ``world_model/predicted_vs_actual`` for the rollout's latest real step (``TrainingMonitor``)."""
        return self.monitor.log_prediction(step)

    # --- checkpoints ---------------------------------------------------------------------------
    def save(self, run_dir: Path) -> None:
        """Write model, optimizer, counters and RNG states atomically to ``run_dir/checkpoint.pt``."""
        if not distributed.is_main():
            return  # rank 0 writes; the ranks hold the same parameters
        if not checkpoint.all_finite(self.net):
            raise ValueError(
                "refusing to checkpoint non-finite parameters (the last checkpoint stays the rollback target)."
            )
        state = {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **{key: getattr(self, key) for key in COUNTERS},
            "rng": checkpoint.rng_state(),
            "generator": self.gen.get_state(),
        }
        if self.runlog is not None:  # counted with the very step they belong to (one atomic file)
            state["log"] = self.runlog.state_dict()
        if self.updater.replay is not None:  # the falls it remembers: a resumed run keeps relearning them
            state["replay"] = self.updater.replay.state_dict()
        checkpoint.save(state, Path(run_dir) / CHECKPOINT)

    def load(self, run_dir: Path) -> None:
        """Restore what ``save`` wrote; the next ``learn`` continues at the saved step (envs restart)."""
        state = checkpoint.load(Path(run_dir) / CHECKPOINT)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for key in COUNTERS:
            setattr(self, key, int(state[key]))
        checkpoint.set_rng_state(state["rng"])
        self.gen.set_state(state["generator"])
        self._started = False
        self.restored_log = state.get("log")
        if self.updater.replay is not None and "replay" in state:  # a checkpoint from before the replay has none
            self.updater.replay.load_state_dict(state["replay"])
        # The optimizer state carries the saved run's lr and decay; the config decides them (resume=force).
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] = float(self.cfg.learning_rate)
            if group.get("name") == "decay":
                group["weight_decay"] = group["base_weight_decay"] = float(self.cfg.weight_decay)
