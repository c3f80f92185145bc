"""The developmental agent: PPO on a causal-transformer core, plus a world-model loss, acting through a learned shield.

Data flows one way (DESIGN.md section 4):

    env -> per-env window of the last W (observation, action) steps -> Core -> h_obs[:, -1] -> policy, value
                                                                          -> h_act -> WorldModel heads

* Acting: for Discrete actions, one core pass yields the state after o_t and, for every candidate
  action, the imagined state after (o_t, a) (``Core.candidate_states``); the world model's
  catastrophe probability of each candidate feeds the shield (``agents/shield.py``), which masks
  actions above ``shield_tau`` before sampling. The mask is stored with the step and re-applied in
  the PPO update, so the ratio compares the same (masked) distributions.
* Learning: ``loss = PPO (clipped objective + 0.5 * value MSE - ent_coef * entropy)
  + world_model_coef * WorldModel.loss`` on the same windows, one Adam step per minibatch, then the
  EMA target encoder follows. The world-model loss reads the last ``k`` slots of each window, so
  every transition is predicted from the context it was acted from (what the shield uses); with
  ``world_model_coef = 0`` (the ablation) the world model is not even built.
* Next-step autoreset: the transition from an episode's final observation is fake; it is kept out
  of every loss and statistic, and windows restart at each episode (``agents/rollout.py``).
* Safety net: a checkpoint before the first update; a non-finite loss, gradient or parameter rolls
  the model and optimizer back to the last checkpoint, which a diverged state never overwrites.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.nn import functional as F

from devlearn import checkpoint
from devlearn.agents.rollout import Rollout, gae, to_device, tree_map
from devlearn.agents.shield import ShieldMonitor, allowed_actions
from devlearn.config import ConfigError
from devlearn.core import Core
from devlearn.grid_image import write_predicted_vs_actual
from devlearn.runlog import RunLog
from devlearn.vector import EpisodeStats, info_array
from devlearn.world_model import WorldModel

CHECKPOINT = "checkpoint.pt"
VF_COEF = 0.5  # Stable-Baselines3's value-loss weight, so PPO matches the baseline
MASKED = -1e9  # logit of a shielded action: finite, so entropies stay NaN-free
CATASTROPHE_PRIOR_LOGIT = -4.0  # an untrained head says p ~ 0.02, not 0.5: the shield starts open
IMAGE_EVERY = 10  # rollouts between predicted-vs-actual pictures


def _head(d_in: int, d_out: int, std: float) -> nn.Sequential:
    """A small MLP head; the last layer's scale follows CleanRL (0.01 for logits, 1 for values)."""
    head = nn.Sequential(nn.Linear(d_in, d_in), nn.Tanh(), nn.Linear(d_in, d_out))
    nn.init.orthogonal_(head[0].weight, np.sqrt(2))
    nn.init.orthogonal_(head[2].weight, std)
    nn.init.zeros_(head[0].bias)
    nn.init.zeros_(head[2].bias)
    return head


def masked_log_softmax(logits: Tensor, allowed: Tensor | None) -> Tensor:
    """Log-probabilities with shielded actions (``allowed`` False) at probability 0."""
    return F.log_softmax(logits if allowed is None else logits.masked_fill(~allowed, MASKED), dim=-1)


class DevelopmentalNet(nn.Module):
    """Core, policy and value heads, and (unless ``world_model_coef == 0``) the world model."""

    def __init__(self, obs_space: spaces.Space, act_space: spaces.Discrete, cfg: Any) -> None:
        super().__init__()
        self.core = Core(obs_space, act_space, cfg.core)
        d = cfg.core.d_model
        self.actor = _head(d, int(act_space.n), std=0.01)
        self.critic = _head(d, 1, std=1.0)
        self.world_model: WorldModel | None = None
        if cfg.world_model_coef > 0:
            self.world_model = WorldModel(d, self.core.encoder, act_space, cfg.world_model)
            nn.init.constant_(self.world_model.catastrophe_head[-1].bias, CATASTROPHE_PRIOR_LOGIT)


class Decision(NamedTuple):
    """One acting step for a batch of windows."""

    action: Tensor  # (B,) the action taken (shielded)
    choice: Tensor  # (B,) what the policy would have taken without the shield, same random draw
    logp: Tensor  # (B,) log-probability of ``action`` under the shielded policy
    value: Tensor  # (B,)
    allowed: Tensor | None  # (B, A) the shield's verdict, None when it is off
    danger: Tensor | None  # (B, A) predicted catastrophe probability per action


class DevelopmentalAgent:
    """PPO + world model + learned shield behind ``devlearn.agents.base.Agent``.

    Args:
        cfg: an ``AgentConfig`` (PPO fields, ``world_model_coef``, ``shield_tau``,
            ``intrinsic_coef``, ``core``, ``world_model``).
        env: a next-step-autoreset ``VectorEnv`` with a ``Discrete`` action space.
        seed: seeds the parameters, the agent's sampling generator and the env's first reset.
        device: ``"cpu"`` or ``"cuda"``.
        writer: the run's TensorBoard writer (None: no pictures).
    """

    def __init__(self, cfg: Any, env: Any, seed: int, device: str, writer: Any) -> None:
        act_space = env.single_action_space
        if not isinstance(act_space, spaces.Discrete):
            raise TypeError(
                f"the developmental agent needs a Discrete action space, got {act_space}; "
                "use agent=ppo for other action spaces."
            )
        if cfg.intrinsic_coef > 0 and cfg.world_model_coef <= 0:
            raise ConfigError(
                "agent.intrinsic_coef > 0 needs agent.world_model_coef > 0 (surprise comes from the world model)."
            )
        self.cfg, self.env, self.seed, self.writer = cfg, env, int(seed), writer
        self.device = torch.device(device)
        self.num_envs = int(env.num_envs)
        torch.manual_seed(self.seed)
        self.net = DevelopmentalNet(env.single_observation_space, act_space, cfg).to(self.device)
        self.wm = self.net.world_model
        self.shield_on = self.wm is not None and cfg.shield_tau < 1.0
        self.params = [p for p in self.net.parameters() if p.requires_grad]  # not the EMA target
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.learning_rate, eps=1e-5)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(self.seed)
        self.candidates = torch.arange(int(act_space.n), device=self.device)
        self.rollout = Rollout(
            env.single_observation_space,
            int(act_space.n),
            self.num_envs,
            cfg.n_steps,
            cfg.core.window,
            cfg.core.d_model,
            self.device,
        )
        self.monitor = ShieldMonitor()
        self.num_timesteps = self.updates = self.rollbacks = self.rollouts = 0
        self._started = False
        self._fake = np.zeros(self.num_envs, dtype=bool)  # the next transition of a sub-env is fake
        self._stats = EpisodeStats(self.num_envs)

    # --- acting --------------------------------------------------------------------------------
    def decide(
        self, o: Tensor, act: Tensor, valid: Tensor, deterministic: bool, gen: torch.Generator
    ) -> Decision:
        """Act on windows of encoded observations ``o (B, W, d)``, actions ``(B, W)``, validity ``(B, W)``."""
        core, danger, allowed = self.net.core, None, None
        if self.shield_on:
            h, imagined = core.candidate_states(o, act, valid, self.candidates)
            danger = self.wm.catastrophe_prob(imagined)
            allowed = allowed_actions(danger, self.cfg.shield_tau)
        else:
            h = core.states(o, act, valid)[0][:, -1]
        logits = self.net.actor(h)
        logp_all = masked_log_softmax(logits, allowed)
        noise = 0.0
        if not deterministic:  # Gumbel-max: one draw samples both the shielded and the unshielded choice
            u = torch.rand(logits.shape, generator=gen, device=logits.device)
            noise = -torch.log(-torch.log(u))
        action = (logp_all + noise).argmax(-1)
        choice = (logits + noise).argmax(-1)
        logp = logp_all.gather(-1, action[:, None]).squeeze(-1)
        return Decision(action, choice, logp, self.net.critic(h).squeeze(-1), allowed, danger)

    def policy(self, deterministic: bool = True) -> DevelopmentalPolicy:
        """A fresh policy with its own per-env windows (shield applied; argmax when deterministic)."""
        return DevelopmentalPolicy(self, deterministic)

    # --- learning ------------------------------------------------------------------------------
    def learn(self, total_timesteps: int, log: RunLog, run_dir: Path, checkpoint_every: int) -> None:
        """Collect rollouts and update until ``num_timesteps >= total_timesteps`` (see ``Agent.learn``)."""
        run_dir = Path(run_dir)
        if not (run_dir / CHECKPOINT).is_file():
            self.save(run_dir)  # the rollback target before the first update
        next_checkpoint = self.num_timesteps + checkpoint_every
        if not self._started:
            # a resumed run cannot restore its envs' state: it restarts them at a step-dependent seed
            obs, _ = self.env.reset(seed=self.seed + self.num_timesteps)
            self.rollout.begin(to_device(obs, self.device))
            self._fake[:] = False
            self._stats = EpisodeStats(self.num_envs)
            self._started = True
        while self.num_timesteps < total_timesteps:
            finished, shield_logs = self._collect()
            log.episodes(finished)
            logs = self._update(run_dir, log)
            self.rollouts += 1
            step = self.num_timesteps
            if logs is not None:
                log.scalars({**logs, **shield_logs}, step)
                if self.rollouts % IMAGE_EVERY == 0 or step >= total_timesteps:
                    self.log_prediction(step)
                if step >= next_checkpoint:
                    self.save(run_dir)
                    next_checkpoint = step + checkpoint_every
            log.scalars({"train/rollbacks": self.rollbacks}, step)
            log.rollout_end(step)
            self.rollout.carry_over()
        self.save(run_dir)

    def _collect(self) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """One rollout of ``n_steps`` per env into ``self.rollout``; returns finished episodes and shield figures."""
        R, encoder, shield = self.rollout, self.net.core.encoder, self.shield_on
        finished: list[dict[str, Any]] = []
        with torch.inference_mode():
            # the parameters changed in the last update: re-encode the carried context
            R.enc[:, : R.first + 1] = encoder(tree_map(lambda b: b[:, : R.first + 1], R.obs))
            for t in range(R.n_steps):
                j = R.first + t
                d = self.decide(*R.window_at(j), deterministic=False, gen=self.gen)
                R.act[:, j], R.logp[:, j], R.value[:, j] = d.action, d.logp, d.value
                if shield:
                    R.allowed[:, j], R.danger[:, j] = d.allowed, d.danger
                    R.vetoed[:, j] = d.choice != d.action
                    actions, choice = torch.stack([d.action, d.choice]).cpu().numpy()  # one transfer
                    vetoed = (choice != actions) & ~self._fake
                    if vetoed.any() and self.monitor.wants_probe():
                        self.monitor.probe(self.env, actions, choice, vetoed)
                else:
                    actions = d.action.cpu().numpy()
                obs, reward, terminated, truncated, info = self.env.step(actions)
                # ParallelVectorEnv marks waiting agents and copy resets inactive: not real either
                real = ~self._fake & info_array(info, "active", True, self.num_envs).astype(bool)
                fell = info_array(info, "catastrophe", False, self.num_envs).astype(bool)
                self._stats.update(reward, info, live=real)
                done = (terminated | truncated) & real
                finished += self._stats.pop(done)
                flags = np.stack([reward, terminated, truncated, fell, ~real]).astype(np.float32)
                flags = torch.as_tensor(flags).to(self.device, non_blocking=True)  # one transfer
                R.reward[:, j] = flags[0]
                R.terminated[:, j], R.truncated[:, j] = flags[1] > 0, flags[2] > 0
                R.catastrophe[:, j], R.fake[:, j] = flags[3] > 0, flags[4] > 0
                obs_t = to_device(obs, self.device)
                R.put_obs(j + 1, obs_t, start=flags[4] > 0)  # after a fake step a new episode starts
                R.enc[:, j + 1] = encoder(obs_t)
                self._fake = done
                self.num_timesteps += self.num_envs
            self._last_value = self.decide(*R.window_at(R.length - 1), True, self.gen).value
        shield_logs = {}
        if shield:
            s = slice(R.first, R.first + R.n_steps)
            shield_logs = self.monitor.scalars(
                ~R.fake[:, s], R.allowed[:, s], R.danger[:, s], R.vetoed[:, s], R.catastrophe[:, s]
            )
        return finished, shield_logs

    def _windows(self, env: Tensor, j: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Core states of the windows ending at positions ``j`` of sub-envs ``env``: ``h_obs (M, d)``,
        ``h_act (M, W, d)``, their flat positions and validity ``(M, W)``."""
        R = self.rollout
        pos = R.positions(env, j)
        # overlapping windows share observations: encode each stored observation once
        unique, inverse = torch.unique(pos, return_inverse=True)
        o = self.net.core.encoder(R.gather_obs(unique))[inverse]
        episode = R.flat(R.episode)[pos]
        valid = episode == episode[:, -1:]
        h_obs, h_act = self.net.core.states(o, R.flat(R.act)[pos], valid)
        return h_obs[:, -1], h_act, pos, valid

    def _world_model_loss(self, h_act: Tensor, pos: Tensor, valid: Tensor) -> tuple[Tensor, dict, Tensor]:
        """``WorldModel.loss`` on the last ``k`` slots of each window (real transitions of its episode only)."""
        R = self.rollout
        k = min(self.cfg.world_model.k, R.window)
        p, flat = pos[:, -k:], R.flat
        batch = {
            "next_obs": R.gather_obs(p + 1),
            "reward": flat(R.reward)[p],
            "terminated": flat(R.terminated)[p],
            "catastrophe": flat(R.catastrophe)[p],
            "mask": valid[:, -k:] & ~flat(R.fake)[p],
            "action": flat(R.act)[p],
            "done": flat(R.terminated)[p] | flat(R.truncated)[p],
        }
        return self.wm.loss(h_act[:, -k:], batch)

    def _surprise(self, env: Tensor, j: Tensor) -> Tensor:
        """Surprise of the transitions at ``(env, j)`` under the model that acted (for the intrinsic reward)."""
        out = []
        with torch.no_grad():
            for s in range(0, len(env), self.cfg.batch_size):
                _, h_act, pos, valid = self._windows(
                    env[s : s + self.cfg.batch_size], j[s : s + self.cfg.batch_size]
                )
                out.append(self._world_model_loss(h_act, pos, valid)[2][:, -1])
        return torch.cat(out)

    def _update(self, run_dir: Path, log: RunLog) -> dict[str, float] | None:
        """PPO + world-model update on the rollout; None if it diverged and was rolled back."""
        cfg, R = self.cfg, self.rollout
        s = slice(R.first, R.first + R.n_steps)
        real = (~R.fake[:, s]).flatten()
        index = real.nonzero().squeeze(1)  # flat (env, t) indices of the real transitions
        if len(index) == 0:  # every sub-env spent the whole rollout resetting: nothing to learn from
            return {}
        env, j = index // R.n_steps, R.first + index % R.n_steps
        reward = R.reward[:, s].clone()
        surprise_mean = None
        if cfg.intrinsic_coef > 0:
            surprise = self._surprise(env, j)
            reward.view(-1)[index] += cfg.intrinsic_coef * surprise
            surprise_mean = surprise.mean()
        done = R.terminated[:, s] | R.truncated[:, s]
        adv = gae(
            reward, R.value[:, s], self._last_value, R.terminated[:, s], done, cfg.gamma, cfg.gae_lambda
        )
        adv_all = adv.flatten()[index]
        ret_all = adv_all + R.value[:, s].flatten()[index]
        logp_all = R.logp[:, s].flatten()[index]

        sums: dict[str, Tensor] = defaultdict(lambda: torch.zeros((), device=self.device))
        n_batches = 0
        for _ in range(cfg.n_epochs):
            order = torch.randperm(len(index), generator=self.gen, device=self.device)
            for start in range(0, len(index), cfg.batch_size):
                mb = order[start : start + cfg.batch_size]
                h_obs, h_act, pos, valid = self._windows(env[mb], j[mb])
                allowed = R.flat(R.allowed)[pos[:, -1]] if self.shield_on else None
                logp_new_all = masked_log_softmax(self.net.actor(h_obs), allowed)
                logp_new = logp_new_all.gather(-1, R.flat(R.act)[pos[:, -1], None]).squeeze(-1)
                entropy = -(logp_new_all.exp() * logp_new_all).sum(-1).mean()
                log_ratio = logp_new - logp_all[mb]
                ratio = log_ratio.exp()
                a = adv_all[mb]
                if len(mb) > 1:
                    a = (a - a.mean()) / (a.std() + 1e-8)
                clip = cfg.clip_range
                policy_loss = torch.max(-a * ratio, -a * ratio.clamp(1 - clip, 1 + clip)).mean()
                value_loss = F.mse_loss(self.net.critic(h_obs).squeeze(-1), ret_all[mb])
                loss = policy_loss + VF_COEF * value_loss - cfg.ent_coef * entropy
                if self.wm is not None:
                    wm_total, wm_logs, surprise = self._world_model_loss(h_act, pos, valid)
                    loss = loss + cfg.world_model_coef * wm_total
                    for name, value in wm_logs.items():
                        sums[f"world_model/{name}"] += value
                    wm_mask = valid[:, -1] & ~R.flat(R.fake)[pos[:, -1]]
                    sums["world_model/surprise_mean"] += surprise[:, -1][wm_mask].mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
                if not bool(torch.isfinite(loss) & torch.isfinite(grad_norm)):
                    self._rollback(run_dir, log, "non-finite loss")
                    return None
                self.optimizer.step()
                if self.wm is not None:
                    self.wm.update_target()
                with torch.no_grad():
                    sums["train/policy_loss"] += policy_loss
                    sums["train/value_loss"] += value_loss
                    sums["train/entropy"] += entropy
                    sums["train/approx_kl"] += ((ratio - 1) - log_ratio).mean()
                    sums["train/clip_fraction"] += ((ratio - 1).abs() > clip).float().mean()
                n_batches += 1
        if not checkpoint.all_finite(self.net):
            self._rollback(run_dir, log, "non-finite parameters")
            return None
        self.updates += 1
        with torch.no_grad():
            values = R.value[:, s].flatten()[index]
            sums["train/explained_variance"] = 1 - (ret_all - values).var() / ret_all.var().clamp(min=1e-8)
        if surprise_mean is not None:  # the acting model's surprise, next to the trained one's
            sums["world_model/intrinsic_surprise_mean"] = surprise_mean
        names = list(sums)
        figures = torch.stack([sums[k] for k in names]).tolist()  # one device sync for all scalars
        logs = {
            k: v
            if k == "train/explained_variance" or k.endswith("intrinsic_surprise_mean")
            else v / n_batches
            for k, v in zip(names, figures, strict=True)
        }
        logs["train/learning_rate"] = self.optimizer.param_groups[0]["lr"]
        return logs

    def _rollback(self, run_dir: Path, log: RunLog, why: str) -> None:
        state = checkpoint.load(Path(run_dir) / CHECKPOINT)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.optimizer.zero_grad(set_to_none=True)
        self.rollbacks += 1
        print(f"devlearn: {why} at step {self.num_timesteps:,}; rolled back to the last checkpoint")
        log.scalars({"train/rollbacks": self.rollbacks}, self.num_timesteps)

    # --- pictures ------------------------------------------------------------------------------
    def log_prediction(self, step: int) -> bool:
        """Write ``world_model/predicted_vs_actual`` for the rollout's most recent real step.

        Grid leaves become a side-by-side image (predicted | actual, wrong cells framed), byte-string
        leaves a text entry. Returns whether something was written.
        """
        if self.wm is None or not self.wm.has_exact or self.writer is None:
            return False
        R = self.rollout
        real = ~R.fake[:, R.first : R.length - 1]
        if not real.any():
            return False
        # the latest real transition of the rollout (sub-envs may all be resetting at its very end)
        t = int(real.any(0).nonzero().max())
        env = real[:, t].nonzero()[0]
        with torch.inference_mode():
            _, h_act, pos, _ = self._windows(env, torch.tensor([R.first + t], device=self.device))
            predicted = self.wm.predict_next(h_act[:, -1:])  # (1, 1, ...)
            actual = R.gather_obs(pos[:, -1:] + 1)
        first = lambda x: None if x is None else x[0, 0].cpu().numpy()  # noqa: E731 (one observation)
        predicted, actual = tree_map(first, predicted), tree_map(first, actual)
        return write_predicted_vs_actual(
            self.writer, "world_model/predicted_vs_actual", predicted, actual, step
        )

    # --- checkpoints ---------------------------------------------------------------------------
    def save(self, run_dir: Path) -> None:
        """Write model, optimizer, counters and RNG states atomically to ``run_dir/checkpoint.pt``."""
        if not checkpoint.all_finite(self.net):
            raise ValueError(
                "refusing to checkpoint non-finite parameters (the last checkpoint stays the rollback target)."
            )
        state = {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "num_timesteps": self.num_timesteps,
            "updates": self.updates,
            "rollbacks": self.rollbacks,
            "rollouts": self.rollouts,
            "rng": checkpoint.rng_state(),
            "generator": self.gen.get_state(),
        }
        checkpoint.save(state, Path(run_dir) / CHECKPOINT)

    def load(self, run_dir: Path) -> None:
        """Restore what ``save`` wrote; the next ``learn`` continues at the saved step (envs restart)."""
        state = checkpoint.load(Path(run_dir) / CHECKPOINT)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for key in ("num_timesteps", "updates", "rollbacks", "rollouts"):
            setattr(self, key, int(state[key]))
        checkpoint.set_rng_state(state["rng"])
        self.gen.set_state(state["generator"])
        self._started = False


class DevelopmentalPolicy:
    """``Policy`` for evaluation: per-env windows of encoded observations (batch size set by the first call)."""

    def __init__(self, agent: DevelopmentalAgent, deterministic: bool) -> None:
        self.agent, self.deterministic = agent, deterministic
        self.gen = torch.Generator(device=agent.device)
        self.gen.manual_seed(agent.seed + 1)  # its own draws: evaluating never moves the training RNG
        self.enc: Tensor | None = None

    def __call__(self, obs: Any, episode_start: np.ndarray) -> np.ndarray:
        agent, window = self.agent, self.agent.cfg.core.window
        with torch.inference_mode():
            o = agent.net.core.encoder(to_device(obs, agent.device))
            start = torch.as_tensor(np.asarray(episode_start, dtype=bool), device=agent.device)
            if self.enc is None:
                n = o.shape[0]
                self.enc = o.new_zeros(n, window, o.shape[-1])
                self.act = torch.zeros(n, window, dtype=torch.long, device=agent.device)
                self.valid = torch.zeros(n, window, dtype=torch.bool, device=agent.device)
            # slide the windows; an episode's first observation hides everything before it
            self.enc = torch.cat([self.enc[:, 1:], o[:, None]], dim=1)
            self.act = torch.cat([self.act[:, 1:], torch.zeros_like(self.act[:, :1])], dim=1)
            self.valid = torch.cat(
                [self.valid[:, 1:] & ~start[:, None], torch.ones_like(start[:, None])], dim=1
            )
            action = agent.decide(self.enc, self.act, self.valid, self.deterministic, self.gen).action
            self.act[:, -1] = action
            return action.cpu().numpy()
