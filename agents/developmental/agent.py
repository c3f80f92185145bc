"""The developmental agent: PPO on a causal-transformer core, plus a world-model loss, acting through a learned shield.

Data flows one way (docs/architecture.md):

    env -> SequenceContext (per-env windows of (observation, action) steps) -> DevelopmentalNet
        -> decide: policy, value, shield        -> env
        -> evaluate: log-prob, value, h_act     -> ppo_loss + world_model_coef * WorldModel.loss -> AdamW

* Acting (``_collect``): ``net.decide`` on ``context.acting_window(j)``. For Discrete actions with
  the shield on, one core pass yields the state after o_t and the imagined state after each
  candidate action; actions whose predicted catastrophe probability is above ``shield_tau`` are
  masked. The mask is stored with the step and re-applied in the update, so the ratio compares
  the same (masked) distributions.
* Learning (``_update``, one screen per minibatch): ``context.training_window`` rebuilds the very
  windows acting read; ``ppo_loss`` + ``world_model_coef`` x the world-model loss on the last ``k``
  slots of each window (every transition is predicted from the context it was acted from, which
  is what the shield uses); one AdamW step (``devlearn/train/optim.py``); the EMA target follows.
  The ablation (``agent=ablation``) has no world model at all.
* Only real transitions count (``agents/developmental/rollout.py``); windows restart at each episode.
* Safety net: a checkpoint before the first update; a non-finite loss, gradient or parameter rolls
  the model and optimizer back to the last checkpoint, which a diverged state never overwrites.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from devlearn.agents.developmental.net import DevelopmentalNet
from devlearn.agents.developmental.ppo import gae, ppo_loss
from devlearn.agents.developmental.rollout import RolloutBuffer
from devlearn.agents.developmental.shield import ShieldMonitor
from devlearn.envs.vector.episodes import EpisodeStats, info_array, real_transitions
from devlearn.errors import ConfigError
from devlearn.logging.grid_image import write_predicted_vs_actual
from devlearn.logging.runlog import RunLog
from devlearn.model.context import SequenceContext, Window, to_device, tree_map
from devlearn.model.novelty import EpisodicNovelty, SimHash
from devlearn.train import checkpoint, distributed
from devlearn.train.optim import build_optimizer, trainable
from devlearn.train.schedules import ScheduleConfig, apply_schedule

CHECKPOINT = "checkpoint.pt"
IMAGE_EVERY = 10  # rollouts between predicted-vs-actual pictures
EVAL_SEGMENT = 64  # steps an evaluation policy's context holds before it carries over


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
    """

    def __init__(self, cfg: Any, env: Any, seed: int, device: str, writer: Any, schedule: Any = None) -> None:
        act_space = env.single_action_space
        if not isinstance(act_space, spaces.Discrete):
            raise ConfigError(
                f"the developmental agent needs a Discrete action space, got {act_space}; "
                "use agent=ppo for other action spaces."
            )
        # A run from before agent.intrinsic existed (devlearn eval of an old run): intrinsic_coef alone meant surprise.
        self.intrinsic_coef = float(getattr(cfg, "intrinsic_coef", 0.0))
        self.intrinsic = getattr(cfg, "intrinsic", "surprise") if self.intrinsic_coef > 0 else "none"
        if self.intrinsic == "surprise" and getattr(cfg, "world_model_coef", 0.0) <= 0:
            raise ConfigError(
                "agent.intrinsic=surprise with agent.intrinsic_coef > 0 needs agent.world_model_coef > 0 "
                "(surprise comes from the world model). Use agent.intrinsic=novelty, or set agent.world_model_coef."
            )
        self.cfg, self.env, self.seed, self.writer = cfg, env, int(seed), writer
        self.device = torch.device(device)
        self.num_envs = int(env.num_envs)
        torch.manual_seed(self.seed)
        self.net = DevelopmentalNet(env.single_observation_space, act_space, cfg).to(self.device)
        self.wm = self.net.world_model
        self.world_model_coef = float(getattr(cfg, "world_model_coef", 0.0))
        self.optimizer = build_optimizer(self.net, cfg.learning_rate, cfg.weight_decay)
        self.params = trainable(self.optimizer)  # not the EMA target
        self.schedule = schedule if schedule is not None else ScheduleConfig()
        # the run's length in updates, where a cosine schedule reaches its floor
        self.total_updates = -(-int(cfg.total_timesteps) // (self.num_envs * distributed.world_size() * int(cfg.n_steps)))
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(self.seed)
        self.context = self.new_context(self.num_envs, cfg.n_steps)
        self.rollout = RolloutBuffer(self.context, int(act_space.n))
        self.monitor = ShieldMonitor()
        self.novelty: EpisodicNovelty | None = None
        if self.intrinsic == "novelty":  # states are SimHashes of the core encoder's o_t (the world model's latent)
            self.simhash = SimHash(cfg.core.d_model, cfg.novelty_bits, self.seed, self.device)
            self.novelty = EpisodicNovelty(self.num_envs)
            self._novelty_center = torch.zeros(cfg.core.d_model, device=self.device)  # set by learn(), per rollout
        self.num_timesteps = self.updates = self.rollbacks = self.rollouts = 0
        self._started = False
        self._after_done = np.zeros(self.num_envs, dtype=bool)  # the next step of a sub-env only resets
        self._stats = EpisodeStats(self.num_envs)
        # The run's counters ride in the checkpoint: train() sets ``runlog``; ``load`` leaves them in ``restored_log``.
        self.runlog: RunLog | None = None
        self.restored_log: dict[str, Any] | None = None

    def new_context(self, num_envs: int, n_steps: int) -> SequenceContext:
        """A sequence context for ``num_envs`` streams of ``n_steps``-step segments (training or evaluation).

        ``memory=none`` means the current step only: a window of 1, whatever ``core.window`` says.
        """
        memory = getattr(self.cfg, "memory", None)
        window = 1 if memory is not None and memory.variant == "none" else self.cfg.core.window
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
    def surprise_writes(self) -> bool:
        """Memory stores only what the world model failed to predict: acting must measure surprise."""
        return self.net.memory is not None and self.net.memory.cfg.write == "surprise"

    @property
    def shield_on(self) -> bool:
        return self.net.shield_on

    def policy(self, deterministic: bool = True) -> DevelopmentalPolicy:
        """A fresh policy with its own per-env context (shield applied; argmax when deterministic)."""
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
            with torch.inference_mode():
                self.context.begin(to_device(obs, self.device), self.net.core.encoder)
            if self.novelty is not None:  # every episode starts here: its first state is seen, and earns nothing
                self._center_novelty()
                self.novelty.bonus(self._novelty_keys(self.context.first), np.ones(self.num_envs, dtype=bool))
            self.rollout.begin()
            self._after_done[:] = False
            self._stats = EpisodeStats(self.num_envs)
            self._started = True
        while self.num_timesteps < total_timesteps:
            finished, acting_logs = self._collect()
            log.episodes(finished)
            logs = self._update(run_dir, log)
            self.rollouts += 1
            step = self.num_timesteps
            if logs is not None:
                log.scalars({**logs, **acting_logs}, step)
                if self.rollouts % IMAGE_EVERY == 0 or step >= total_timesteps:
                    self.log_prediction(step)
                if step >= next_checkpoint:
                    self.save(run_dir)
                    next_checkpoint = step + checkpoint_every
            log.scalars({"train/rollbacks": self.rollbacks}, step)
            log.rollout_end(step)
            if self.novelty is not None:
                self._center_novelty()  # the encoder changed
            self.rollout.carry_over()
        self.save(run_dir)

    def _collect(self) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """One rollout of ``n_steps`` per env; returns finished episodes and the shield's and memory's figures."""
        C, R, net, shield = self.context, self.rollout, self.net, self.shield_on
        encoder = net.core.encoder
        finished: list[dict[str, Any]] = []
        with torch.inference_mode():
            C.reencode(encoder, C.first)  # the parameters changed in the last update
            for t in range(C.n_steps):
                j = C.first + t
                d = net.decide(C.acting_window(j), deterministic=False, gen=self.gen)
                C.act[:, j], R.logp[:, j], R.value[:, j] = d.action, d.logp, d.value
                actions = d.action.cpu().numpy()
                if shield:
                    R.allowed[:, j], R.danger[:, j] = d.allowed, d.danger
                    R.vetoed[:, j] = d.choice != d.action
                    if self.monitor.wants_probe(t, C.n_steps):  # ground truth, for measuring only
                        self.monitor.probe(
                            self.env, d.danger.cpu().numpy(), d.allowed.cpu().numpy(), ~self._after_done
                        )
                obs, reward, terminated, truncated, info = self.env.step(actions)
                real = real_transitions(info, self.num_envs, after_done=self._after_done)
                fell = info_array(info, "catastrophe", False, self.num_envs).astype(bool)
                self._stats.update(reward, info, real=real, terminated=terminated)
                done = (terminated | truncated) & real
                finished += self._stats.pop(done)
                flags = np.stack([reward, terminated, truncated, fell, real]).astype(np.float32)
                flags = torch.as_tensor(flags).to(self.device, non_blocking=True)  # one transfer
                R.reward[:, j] = flags[0]
                R.terminated[:, j], R.truncated[:, j] = flags[1] > 0, flags[2] > 0
                R.catastrophe[:, j], R.real[:, j] = flags[3] > 0, flags[4] > 0
                # after a step that was not real (an autoreset), the observation begins a new episode
                obs = to_device(obs, self.device)
                if self.surprise_writes:
                    C.surprise[:, j + 1] = self.acting_surprise(C, j, obs, flags[4] > 0)
                C.put(j + 1, obs, flags[4] == 0, encoder)
                if self.novelty is not None:
                    # The bonus belongs to the transition's next state: r_j += coef x novelty(o_{j+1}), 1 on
                    # o_{j+1}'s first visit in its episode. After a step that was not real, o_{j+1} begins a
                    # new episode: its set is cleared and o_{j+1} recorded, but no action reached it, so no bonus.
                    new = self.novelty.bonus(self._novelty_keys(j + 1), ~real)
                    R.novelty[:, j] = torch.as_tensor(new * real).to(self.device)
                self._after_done = done
                self.num_timesteps += self.num_envs * distributed.world_size()  # all ranks' env steps
            self._last_value = net.decide(C.acting_window(C.length - 1), True, self.gen).value
        logs = {}
        if shield:
            s = R.segment()
            logs = self.monitor.scalars(
                R.real[:, s], R.allowed[:, s], R.danger[:, s], R.vetoed[:, s], R.catastrophe[:, s]
            )
        if C.memory is not None:
            logs.update(C.memory_state.pop_stats())
        if self.novelty is not None:  # the share of real steps that reached a state new to their episode
            s = R.segment()
            real = R.real[:, s]
            logs["rollout/novelty_rate"] = float(R.novelty[:, s][real].mean()) if real.any() else 0.0
        return finished, logs

    def _novelty_keys(self, j: int) -> Tensor:
        """Each env's state at position ``j``: the SimHash of its encoding o_j, centred (``_center_novelty``)."""
        return self.simhash(self.context.enc[:, j] - self._novelty_center)

    def _center_novelty(self) -> None:
        """The mean encoding of the stored observations under the current encoder, which keys are taken from.

        Encodings of different observations share most of their direction (mean cosine 0.8 on CliffEdge): hashed
        from the origin, hundreds of distinct views fall on a few dozen keys; from their mean they spread.
        """
        C = self.context
        index = C.flat(C.episode >= 0).nonzero().squeeze(1)
        with torch.inference_mode():
            self._novelty_center = self.net.core.encoder(C.gather_obs(index)).mean(0)

    def acting_surprise(self, C: SequenceContext, j: int, next_obs: Any, real: Tensor) -> Tensor:
        """Surprise of o_{j+1} under the world model that acted (``memory.write=surprise`` gates the store on it).

        ``C``: the context that acted (training's, or an evaluation policy's); ``real``: ``(E,)`` bool, False
        where o_{j+1} begins a new episode. Such a first observation cannot be predicted from the last
        episode: its surprise is infinite, so it is always stored (Recall's fact, Inbox's instruction) and
        never evicted. Surprise reads only the observations, so evaluation (no rewards) measures it too.
        """
        w = C.acting_window(j)  # its last action is now the one taken
        h_act = self.net.core.states(w.obs, w.act, w.valid, w.memory, last=1)[1]
        obs = tree_map(lambda b: b[:, j : j + 1], C.obs)
        surprise = self.wm.surprise(h_act, obs, tree_map(lambda x: x[:, None], next_obs))[:, 0]
        return torch.where(real, surprise, torch.inf)

    def _windows(self, env: Tensor, j: Tensor) -> tuple[Window, Tensor]:
        """The update's windows of the steps at positions ``j`` of sub-envs ``env`` (see ``SequenceContext``)."""
        return self.context.training_window(env, j, self.net.core.encoder)

    @property
    def _wm_steps(self) -> int:
        """The last ``k`` slots of each window that the world-model loss reads."""
        return min(self.cfg.world_model.k, self.context.window)

    def _world_model_loss(
        self, h_act: Tensor, w: Window, pos: Tensor, sample: bool = False
    ) -> tuple[Tensor, dict, Tensor]:
        """``WorldModel.loss`` on the last ``k`` slots of each window (real transitions of its episode only).

        ``h_act``: the states of each window's last ``k`` slots (or more: the last ``k`` are read).
        """
        C, R = self.context, self.rollout
        k = self._wm_steps
        p = pos[:, -k:]
        batch = {
            "obs": C.gather_obs(p),
            "next_obs": C.gather_obs(p + 1),
            "reward": R.at(R.reward, p),
            "terminated": R.at(R.terminated, p),
            "catastrophe": R.at(R.catastrophe, p),
            "mask": w.valid[:, -k:] & R.at(R.real, p),
            "action": w.act[:, -k:],
            "done": R.at(R.terminated, p) | R.at(R.truncated, p),
        }
        return self.wm.loss(h_act[:, -k:], batch, sample)

    def _surprise(self, env: Tensor, j: Tensor) -> Tensor:
        """Surprise of the transitions at ``(env, j)`` under the model that acted (for the intrinsic reward)."""
        out = []
        with torch.no_grad():
            for s in range(0, len(env), self.cfg.batch_size):
                w, pos = self._windows(env[s : s + self.cfg.batch_size], j[s : s + self.cfg.batch_size])
                h_act = self.net.core.states(w.obs, w.act, w.valid, w.memory, last=self._wm_steps)[1]
                out.append(self._world_model_loss(h_act, w, pos)[2][:, -1])
        return torch.cat(out)

    def _evaluate(self, w: Window, allowed: Tensor | None, n_wm: int) -> Any:
        """``net.evaluate`` of a minibatch's windows, the world model's first ``n_wm`` in a core pass of their own.

        Same values as one pass over all windows; but the world-model loss's backward
        (``_backward_balanced`` runs one per loss) then traverses the core for its ``n_wm`` windows
        only, not for the whole minibatch, whose other windows would send it zero gradients.
        """
        net, last = self.net, self._wm_steps if self.wm is not None else 1
        if n_wm == 0 or n_wm >= len(w.act):
            return net.evaluate(w, allowed, last)
        part = lambda x, s: x[s] if isinstance(x, Tensor) else x  # noqa: E731
        head, rest = slice(0, n_wm), slice(n_wm, None)
        evs = [
            net.evaluate(Window(*(part(x, s) for x in w)), None if allowed is None else allowed[s], last)
            for s in (head, rest)
        ]
        return type(evs[0])(*(torch.cat(xs) for xs in zip(*evs, strict=True)))

    def _minibatches(self, env: Tensor) -> list[Tensor]:
        """One epoch's minibatches: indices into the update's transitions (their sub-envs ``env``), in random order.

        With memory tokens, a minibatch's windows need their sub-envs' whole segment re-encoded and replayed
        (``SequenceContext.training_window``), so minibatches are cut from an order grouped by sub-env
        (sub-envs in random order, each one's transitions in random order), as sb3-contrib's RecurrentPPO
        batches whole sequences: a minibatch replays about ``batch_size / n_steps`` sub-envs, not all of them.
        Each is then shuffled, so its first windows (the world model's share) are a random sample of it.
        """
        size = self.cfg.batch_size
        order = torch.randperm(len(env), generator=self.gen, device=self.device)
        if self.context.memory is not None:
            env_rank = torch.randperm(self.context.num_envs, generator=self.gen, device=self.device)
            order = order[torch.argsort(env_rank[env[order]], stable=True)]
        batches = [order[s : s + size] for s in range(0, len(order), size)]
        if self.context.memory is not None:
            batches = [b[torch.randperm(len(b), generator=self.gen, device=self.device)] for b in batches]
        return batches

    def _update(self, run_dir: Path, log: RunLog) -> dict[str, float] | None:
        """PPO + world-model update on the rollout; None if it diverged and was rolled back."""
        cfg, C, R = self.cfg, self.context, self.rollout
        lr, weight_decay = apply_schedule(self.optimizer, self.schedule, self.updates, self.total_updates)
        s = R.segment()
        index = R.real[:, s].flatten().nonzero().squeeze(1)  # flat (env, t) indices of the real transitions
        index = distributed.equalize(index, self.gen)  # as many as every other rank: as many minibatches
        if len(index) == 0:  # every sub-env spent the whole rollout resetting: nothing to learn from
            return {}
        env, j = index // C.n_steps, C.first + index % C.n_steps
        reward = R.reward[:, s].clone()  # the env's: the world model's reward head and the episode returns see only it
        surprise_mean = None
        if self.intrinsic == "novelty":
            reward += self.intrinsic_coef * R.novelty[:, s]  # zero on transitions that were not real
        elif self.intrinsic == "surprise":
            surprise = self._surprise(env, j)
            reward.view(-1)[index] += self.intrinsic_coef * surprise
            surprise_mean = surprise.mean()
        done = R.terminated[:, s] | R.truncated[:, s]
        adv = gae(reward, R.value[:, s], self._last_value, R.terminated[:, s], done, cfg.gamma, cfg.gae_lambda)
        adv_all = adv.flatten()[index]
        ret_all = adv_all + R.value[:, s].flatten()[index]
        logp_all = R.logp[:, s].flatten()[index]

        sums: dict[str, Tensor] = defaultdict(lambda: torch.zeros((), device=self.device))
        n_batches = 0
        for _ in range(cfg.n_epochs):
            for mb in self._minibatches(env):
                w, pos = self._windows(env[mb], j[mb])
                allowed = R.at(R.allowed, pos[:, -1]) if self.shield_on else None
                n_wm = 0 if self.wm is None else max(1, round(len(mb) * cfg.world_model.batch_fraction))
                ev = self._evaluate(w, allowed, n_wm)
                pg = ppo_loss(
                    ev.logp, logp_all[mb], adv_all[mb], ev.value, ret_all[mb], ev.entropy,
                    cfg.clip_range, cfg.ent_coef,
                )  # fmt: skip
                losses = {"train": pg.total}
                if self.wm is not None:
                    # the minibatch is in random order already: its first windows are a random sample
                    sub = slice(0, n_wm)
                    w_sub = Window(*(x[sub] if isinstance(x, Tensor) else x for x in w))
                    wm_total, wm_logs, surprise = self._world_model_loss(ev.h_act[sub], w_sub, pos[sub], sample=True)
                    losses["world_model"] = self.world_model_coef * wm_total
                    for name, value in wm_logs.items():
                        sums[f"world_model/{name}"] += value
                    wm_mask = w_sub.valid[:, -1] & R.at(R.real, pos[sub, -1])
                    sums["world_model/surprise_mean"] += surprise[:, -1][wm_mask].mean()
                norms = self._backward_balanced(losses, cfg.max_grad_norm)
                for name, norm in norms.items():
                    sums[f"{name}/grad_norm"] += norm
                finite = torch.stack([torch.isfinite(v).all() for v in (*losses.values(), *norms.values())])
                if not bool(finite.all()):
                    self._rollback(run_dir, log, "non-finite loss")
                    return None
                self.optimizer.step()
                if self.wm is not None:
                    self.wm.update_target()
                with torch.no_grad():
                    sums["train/policy_loss"] += pg.policy
                    sums["train/value_loss"] += pg.value
                    sums["train/entropy"] += pg.entropy
                    sums["train/approx_kl"] += pg.approx_kl
                    sums["train/clip_fraction"] += pg.clip_fraction
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
        once = ("train/explained_variance", "world_model/intrinsic_surprise_mean")  # not per-minibatch sums
        logs = {k: v if k in once else v / n_batches for k, v in zip(names, figures, strict=True)}
        logs["train/learning_rate"] = logs["train/lr"] = lr
        logs["train/weight_decay"] = weight_decay
        return logs

    def _backward_balanced(self, losses: dict[str, Tensor], max_norm: float) -> dict[str, Tensor]:
        """Gradients of each loss clipped to ``max_norm`` on its own, then summed into ``.grad``.

        One global clip over PPO + world model lets the larger world-model gradient (norms 0.4-15
        against PPO's 0.2-0.6) set the clip factor and shrink the policy's update; clipped apart,
        PPO's step size no longer depends on the world-model loss's scale. Returns each loss's norm
        before clipping.
        """
        params, norms, total = self.params, {}, None
        names = list(losses)
        for i, name in enumerate(names):
            grads = torch.autograd.grad(losses[name], params, retain_graph=i < len(names) - 1, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
            total = [g * scale for g in grads] if total is None else [t + g * scale for t, g in zip(total, grads, strict=True)]
            norms[name] = norm
        for p, g in zip(params, total, strict=True):
            p.grad = g
        return distributed.allreduce_grads(params, losses, norms)  # averaged over ranks (no-op alone)

    def _rollback(self, run_dir: Path, log: RunLog, why: str) -> None:
        state = checkpoint.load(Path(run_dir) / CHECKPOINT)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.optimizer.zero_grad(set_to_none=True)
        self.rollbacks += 1
        print(f"devlearn: {why} at step {self.num_timesteps:,}; rolled back to the last checkpoint")
        log.rollback(self.num_timesteps, why)  # raises Diverged after max_rollbacks in a row

    # --- pictures ------------------------------------------------------------------------------
    def log_prediction(self, step: int) -> bool:
        """Write ``world_model/predicted_vs_actual`` for the rollout's most recent real step.

        Grid leaves become a side-by-side image (predicted | actual, wrong cells framed), byte-string
        leaves a text entry. Returns whether something was written.
        """
        if self.wm is None or not self.wm.has_exact or self.writer is None:
            return False
        C, R = self.context, self.rollout
        real = R.real[:, R.segment()]
        if not real.any():
            return False
        # the latest real transition of the rollout (sub-envs may all be resetting at its very end)
        t = int(real.any(0).nonzero().max())
        env = real[:, t].nonzero()[0]
        with torch.inference_mode():
            w, pos = self._windows(env, torch.tensor([C.first + t], device=self.device))
            h_act = self.net.core.states(w.obs, w.act, w.valid, w.memory, last=1)[1]
            predicted = self.wm.predict_next(h_act[:, -1:], C.gather_obs(pos[:, -1:]))  # (1, 1, ...)
            actual = C.gather_obs(pos[:, -1:] + 1)
        first = lambda x: None if x is None else x[0, 0].cpu().numpy()  # noqa: E731 (one observation)
        predicted, actual = tree_map(first, predicted), tree_map(first, actual)
        return write_predicted_vs_actual(
            self.writer, "world_model/predicted_vs_actual", predicted, actual, step
        )

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
            "num_timesteps": self.num_timesteps,
            "updates": self.updates,
            "rollbacks": self.rollbacks,
            "rollouts": self.rollouts,
            "rng": checkpoint.rng_state(),
            "generator": self.gen.get_state(),
        }
        if self.runlog is not None:  # counted with the very step they belong to (one atomic file)
            state["log"] = self.runlog.state_dict()
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
        self.restored_log = state.get("log")
        # The optimizer state carries the saved run's lr and decay; the config decides them (resume=force).
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] = float(self.cfg.learning_rate)
            if group.get("name") == "decay":
                group["weight_decay"] = group["base_weight_decay"] = float(self.cfg.weight_decay)



class DevelopmentalPolicy:
    """``Policy`` for evaluation: its own ``SequenceContext`` (batch size set by the first call), read as in training."""

    def __init__(self, agent: DevelopmentalAgent, deterministic: bool) -> None:
        self.agent, self.deterministic = agent, deterministic
        self.gen = torch.Generator(device=agent.device)
        self.gen.manual_seed(agent.seed + 1)  # its own draws: evaluating never moves the training RNG
        self.context: SequenceContext | None = None
        self.j = 0  # the position of the latest observation

    def __call__(self, obs: Any, episode_start: np.ndarray) -> np.ndarray:
        agent = self.agent
        encoder = agent.net.core.encoder
        with torch.inference_mode():
            obs = to_device(obs, agent.device)
            if self.context is None:
                n = len(episode_start)
                self.context = agent.new_context(n, EVAL_SEGMENT)
                self.context.begin(obs, encoder)
                self.j = self.context.first
            else:
                C = self.context
                if self.j == C.length - 1:
                    C.carry_over()
                    self.j = C.first
                start = torch.as_tensor(np.asarray(episode_start, dtype=bool), device=agent.device)
                if agent.surprise_writes:  # store what the world model failed to predict, as in training
                    C.surprise[:, self.j + 1] = agent.acting_surprise(C, self.j, obs, ~start)
                C.put(self.j + 1, obs, start, encoder)
                self.j += 1
            C = self.context
            action = agent.net.decide(C.acting_window(self.j), self.deterministic, self.gen).action
            C.act[:, self.j] = action
            return action.cpu().numpy()

    def retrieved_steps(self) -> np.ndarray | None:
        """``(E, k)``: the episode steps memory read for the latest action, best first (-1: empty slot).

        None without a retrieval store (``memory=none|window|ssm``) or before the first call.
        """
        C = self.context
        if C is None or C.memory is None or C.memory_state.last_read is None:
            return None
        return C.memory_state.last_read.cpu().numpy()
