"""The update: PPO + ``world_model_coef`` x the world-model loss on one rollout, CleanRL's loop.

``Update.__call__`` is the whole update, top to bottom: the schedule's learning rate and decay; the
rollout's real transitions (as many on every rank); the intrinsic reward added to the env's before
GAE; then ``n_epochs`` passes of minibatches, each (``_minibatch``) rebuilding the very windows acting
read (``context.training_window``), with ``ppo_loss`` + ``world_model_coef`` x the world-model loss
on the last ``k`` slots of each window (every transition is predicted from the context it was acted
from, which is what the shield uses), the two losses' gradients clipped apart
(``backward_balanced``), one AdamW step (``devlearn/optim.py``) and the EMA target following.
The ablation (``agent=ablation``) has no world model: PPO alone.

A non-finite loss, gradient or parameter raises ``NonFinite``: the agent rolls the model and the
optimizer back to the last checkpoint, which a diverged state never overwrites.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import Tensor

from devlearn import checkpoint, distributed
from devlearn.agents.developmental.intrinsic import IntrinsicReward
from devlearn.agents.developmental.net import DevelopmentalNet, Evaluation
from devlearn.agents.developmental.ppo import gae, ppo_loss
from devlearn.agents.developmental.replay import CatastropheReplay, replay_loss
from devlearn.agents.developmental.rollout import RolloutBuffer, Transitions
from devlearn.config import minibatch_size
from devlearn.model.context import SequenceContext, Window
from devlearn.optim import trainable
from devlearn.schedules import ScheduleConfig, apply_schedule

REPLAY_BATCH = 8  # replayed catastrophe windows per minibatch (about 6x the real falls a minibatch holds early on)


class NonFinite(ArithmeticError):
    """The update met a non-finite loss, gradient or parameter; nothing of it may be kept."""


class Update:
    """PPO + world-model updates of ``net`` on what ``context`` and ``rollout`` hold (see the module docstring).

    Args:
        cfg: the agent's config (a ``DevelopmentalConfig`` or ``AblationConfig``).
        net: the network to train; ``optimizer`` holds its parameters (``devlearn.optim.build_optimizer``).
        context, rollout: what acting wrote.
        gen: the agent's sampling generator (minibatch orders).
        schedule: learning rate and weight decay per update; ``total_updates``: the run's length in updates.
        intrinsic: the intrinsic reward (``reward_bonus`` before GAE).
    """

    def __init__(
        self,
        cfg: Any,
        net: DevelopmentalNet,
        optimizer: torch.optim.Optimizer,
        context: SequenceContext,
        rollout: RolloutBuffer,
        gen: torch.Generator,
        schedule: ScheduleConfig,
        total_updates: int,
        intrinsic: IntrinsicReward,
    ) -> None:
        self.cfg, self.net, self.wm, self.optimizer = cfg, net, net.world_model, optimizer
        self.params = trainable(optimizer)  # not the EMA target
        self.world_model_coef = float(cfg.world_model_coef) if self.wm is not None else 0.0
        self.context, self.rollout, self.gen, self.intrinsic = context, rollout, gen, intrinsic
        self.schedule, self.total_updates = schedule, total_updates
        self.device = context.act.device
        imagining = self.wm is not None and net.imagines
        # learning from imagination: every real state's imagined risk of every action teaches the policy
        self.imagine_coef = float(cfg.imagine.coef) if imagining and cfg.imagine.train else 0.0
        self.replay = None
        if self.wm is not None and cfg.imagine.replay > 0:
            self.replay = CatastropheReplay(context, int(cfg.imagine.replay))

    def __call__(self, updates: int) -> dict[str, float] | None:
        """One update on the rollout, the ``updates``-th; returns its figures.

        None: no real transition to learn from (every sub-env spent the whole rollout resetting).
        Raises ``NonFinite`` on a non-finite loss, gradient or parameter (the caller rolls back).
        """
        cfg, R = self.cfg, self.rollout
        lr, weight_decay = apply_schedule(self.optimizer, self.schedule, updates, self.total_updates)
        batch = self.transitions()
        if batch is None:
            return None
        if self.replay is not None:
            self.remember_catastrophes()
        adv, ret, once = self.advantages(batch)
        logp_old = R.logp[:, R.segment()].flatten()[batch.index]
        sums: dict[str, Tensor] = defaultdict(lambda: torch.zeros((), device=self.device))
        n_batches = 0
        for _ in range(cfg.n_epochs):
            for mb in self.minibatches(batch.env):
                self._minibatch(batch.env[mb], batch.j[mb], logp_old[mb], adv[mb], ret[mb], sums)
                n_batches += 1
        if not checkpoint.all_finite(self.net):
            raise NonFinite("non-finite parameters")
        with torch.no_grad():
            values = R.value[:, R.segment()].flatten()[batch.index]
            explained = 1 - (ret - values).var() / ret.var().clamp(min=1e-8)
        logs = self._figures(sums, n_batches, {"train/explained_variance": explained, **once})
        logs["train/learning_rate"] = logs["train/lr"] = lr
        logs["train/weight_decay"] = weight_decay
        return logs

    def transitions(self) -> Transitions | None:
        """The rollout's real transitions, as many as every other rank's (as many minibatches); None if none."""
        C, R = self.context, self.rollout
        index = R.real[:, R.segment()].flatten().nonzero().squeeze(1)
        index = distributed.equalize(index, self.gen)
        if len(index) == 0:
            return None
        return Transitions(index, index // C.n_steps, C.first + index % C.n_steps)

    def advantages(self, batch: Transitions) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """GAE advantages and returns of ``batch``, on the env's reward plus the intrinsic bonus; the bonus's figures."""
        cfg, R, s = self.cfg, self.rollout, self.rollout.segment()
        reward = R.reward[:, s].clone()  # the env's: the world model's reward head and the episode returns see only it
        once = self.intrinsic.reward_bonus(reward, batch)
        done = R.terminated[:, s] | R.truncated[:, s]
        adv = gae(reward, R.value[:, s], R.last_value, R.terminated[:, s], done, cfg.gamma, cfg.gae_lambda)
        adv = adv.flatten()[batch.index]
        return adv, adv + R.value[:, s].flatten()[batch.index], once

    def _minibatch(
        self, env: Tensor, j: Tensor, logp_old: Tensor, adv: Tensor, ret: Tensor, sums: dict[str, Tensor]
    ) -> None:
        """One gradient step on the transitions ``(env, j)``; adds its figures into ``sums``."""
        cfg, R = self.cfg, self.rollout
        w, pos = self.windows(env, j)
        allowed = R.at(R.allowed, pos[:, -1]) if self.net.shield_on else None
        n_wm = 0 if self.wm is None else max(1, round(len(env) * cfg.world_model.batch_fraction))
        ev = self.evaluate(w, allowed, n_wm)
        pg = ppo_loss(ev.logp, logp_old, adv, ev.value, ret, ev.entropy, cfg.clip_range, cfg.ent_coef)
        losses = {"train": pg.total}
        if self.imagine_coef > 0:
            losses["imagine"] = self._imagined_risk_term(ev, pos, sums)
        if self.wm is not None:
            losses["world_model"] = self._world_model_term(ev, w, pos, n_wm, sums)
        norms = self.backward_balanced(losses, cfg.max_grad_norm)
        for name, norm in norms.items():
            sums[f"{name}/grad_norm"] += norm
        finite = torch.stack([torch.isfinite(v).all() for v in (*losses.values(), *norms.values())])
        if not bool(finite.all()):
            raise NonFinite("non-finite loss")
        self.optimizer.step()
        if self.wm is not None:
            self.wm.update_target()
        with torch.no_grad():
            sums["train/policy_loss"] += pg.policy
            sums["train/value_loss"] += pg.value
            sums["train/entropy"] += pg.entropy
            sums["train/approx_kl"] += pg.approx_kl
            sums["train/clip_fraction"] += pg.clip_fraction

    def _world_model_term(self, ev: Evaluation, w: Window, pos: Tensor, n_wm: int, sums: dict[str, Tensor]) -> Tensor:
        """``world_model_coef`` x the world-model loss of the minibatch's first ``n_wm`` windows; figures into ``sums``."""
        R = self.rollout
        # the minibatch is in random order already: its first windows are a random sample
        sub = slice(0, n_wm)
        w_sub = Window(*(x[sub] if isinstance(x, Tensor) else x for x in w))
        total, logs, surprise = self.world_model_loss(ev.h_act[sub], w_sub, pos[sub], sample=True)
        term = self.world_model_coef * total
        for name, value in logs.items():
            sums[f"world_model/{name}"] += value
        mask = w_sub.valid[:, -1] & R.at(R.real, pos[sub, -1])
        sums["world_model/surprise_mean"] += surprise[:, -1][mask].mean()
        replayed = None if self.replay is None else self.replay.sample(REPLAY_BATCH, self.gen, self.net.core.encoder)
        if replayed is not None:  # the falls of earlier rollouts, relearned (agents/developmental/replay.py)
            h_act = self.net.core.states(replayed.obs, replayed.act, replayed.valid, None, last=1)[1][:, -1]
            loss = replay_loss(self.wm, h_act)
            term = term + self.world_model_coef * loss
            sums["world_model/replay_loss"] += loss.detach()
        return term

    def _imagined_risk_term(self, ev: Evaluation, pos: Tensor, sums: dict[str, Tensor]) -> Tensor:
        """``imagine.coef`` x the policy's expected imagined risk, ``E_{a ~ pi(s)}[risk(s, a)]``, over the minibatch.

        ``risk(s, a)`` is what acting imagined for every candidate action at the real state ``s``
        (agents/developmental/imagine.py), a constant here: the gradient moves probability away from the
        actions imagined to end in a catastrophe, the ones taken and the ones never tried alike, so an
        imagined fall teaches as a real one does. The policy is read unshielded: it learns not to want them.
        """
        risk = self.rollout.at(self.rollout.danger, pos[:, -1])
        expected = (torch.softmax(ev.logits, dim=-1) * risk).sum(-1).mean()
        sums["imagine/policy_risk"] += expected.detach()
        return self.imagine_coef * expected

    def remember_catastrophes(self) -> None:
        """Keep the rollout's catastrophe windows in the replay (their raw observations, as acting read them)."""
        C, R, s = self.context, self.rollout, self.rollout.segment()
        fell = (R.catastrophe[:, s] & R.real[:, s]).nonzero()
        if len(fell) == 0:
            return
        pos = C.positions(fell[:, 0], C.first + fell[:, 1])
        episode = C.flat(C.episode)[pos]
        self.replay.add(pos, episode == episode[:, -1:])

    def _figures(self, sums: dict[str, Tensor], n_batches: int, once: dict[str, Tensor]) -> dict[str, float]:
        """Per-minibatch means of ``sums`` and the ``once`` figures as they are, in one device sync."""
        names = [*sums, *once]
        figures = torch.stack([*sums.values(), *once.values()]).tolist()
        return {k: v if k in once else v / n_batches for k, v in zip(names, figures, strict=True)}

    # --- the update's pieces ---------------------------------------------------------------------
    def minibatches(self, env: Tensor) -> list[Tensor]:
        """One epoch's minibatches: indices into the update's transitions (their sub-envs ``env``), in random order.

        With memory tokens, a minibatch's windows need their sub-envs' whole segment re-encoded and replayed
        (``SequenceContext.training_window``), so minibatches are cut from an order grouped by sub-env
        (sub-envs in random order, each one's transitions in random order), as sb3-contrib's RecurrentPPO
        batches whole sequences: a minibatch replays about ``num_envs / num_minibatches`` sub-envs, not all of them.
        Each is then shuffled, so its first windows (the world model's share) are a random sample of it.
        """
        size = minibatch_size(self.cfg, self.context.num_envs)
        order = torch.randperm(len(env), generator=self.gen, device=self.device)
        if self.context.memory is not None:
            env_rank = torch.randperm(self.context.num_envs, generator=self.gen, device=self.device)
            order = order[torch.argsort(env_rank[env[order]], stable=True)]
        batches = [order[s : s + size] for s in range(0, len(order), size)]
        if self.context.memory is not None:
            batches = [b[torch.randperm(len(b), generator=self.gen, device=self.device)] for b in batches]
        return batches

    def windows(self, env: Tensor, j: Tensor) -> tuple[Window, Tensor]:
        """The windows of the steps at positions ``j`` of sub-envs ``env``, re-encoded (see ``SequenceContext``)."""
        return self.context.training_window(env, j, self.net.core.encoder)

    @property
    def wm_steps(self) -> int:
        """The last ``k`` slots of each window that the world-model loss reads."""
        return min(self.cfg.world_model.k, self.context.window)

    def evaluate(self, w: Window, allowed: Tensor | None, n_wm: int) -> Evaluation:
        """``net.evaluate`` of a minibatch's windows, the world model's first ``n_wm`` in a core pass of their own.

        Same values as one pass over all windows; but the world-model loss's backward
        (``backward_balanced`` runs one per loss) then traverses the core for its ``n_wm`` windows
        only, not for the whole minibatch, whose other windows would send it zero gradients.
        """
        net, last = self.net, self.wm_steps if self.wm is not None else 1
        if n_wm == 0 or n_wm >= len(w.act):
            return net.evaluate(w, allowed, last)
        part = lambda x, s: x[s] if isinstance(x, Tensor) else x  # noqa: E731
        head, rest = slice(0, n_wm), slice(n_wm, None)
        evs = [
            net.evaluate(Window(*(part(x, s) for x in w)), None if allowed is None else allowed[s], last)
            for s in (head, rest)
        ]
        return type(evs[0])(*(torch.cat(xs) for xs in zip(*evs, strict=True)))

    def world_model_loss(self, h_act: Tensor, w: Window, pos: Tensor, sample: bool = False) -> tuple[Tensor, dict, Tensor]:
        """``WorldModel.loss`` on the last ``k`` slots of each window (real transitions of its episode only).

        ``h_act``: the states of each window's last ``k`` slots (or more: the last ``k`` are read).
        """
        C, R = self.context, self.rollout
        k = self.wm_steps
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

    def surprise(self, env: Tensor, j: Tensor) -> Tensor:
        """Surprise of the transitions at ``(env, j)`` under the model that acted (``SurpriseBonus``)."""
        out = []
        size = minibatch_size(self.cfg, self.context.num_envs)
        with torch.no_grad():
            for s in range(0, len(env), size):
                w, pos = self.windows(env[s : s + size], j[s : s + size])
                h_act = self.net.core.states(w.obs, w.act, w.valid, w.memory, last=self.wm_steps)[1]
                out.append(self.world_model_loss(h_act, w, pos)[2][:, -1])
        return torch.cat(out)

    def backward_balanced(self, losses: dict[str, Tensor], max_norm: float) -> dict[str, Tensor]:
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
