"""The world model: from the core state after (o_t, a_t), predict what that action leads to.

Heads on ``h_act[:, t]``:

- exact: categorical logits for every target element of o_{t+1}'s tokens (``ObservationTokenizer
  .targets``); the cross-entropy (nats per token in the loss) is the KL to the observed next state;
- reward (MSE on symlog(reward): one scale-free regression, no bins to tune), termination and
  catastrophe (binary cross-entropy);
- latent (JEPA-style): a predictor maps ``h_act`` to o_{t+1}'s embedding under an EMA copy of the
  observation encoder (stop-gradient, cosine loss); for ``k > 1`` a small latent dynamics MLP rolls
  the prediction forward under the actions actually taken, predicting o_{t+2} .. o_{t+k}.

*Surprise* is the per-step divergence between prediction and reality: the summed per-element
cross-entropy (nats) of the exact prediction, plus the 1-step latent cosine loss where the
observation has continuous parts. ``loss`` returns it per (B, T), detached, for memory gating,
logging or an intrinsic reward.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.nn import functional as F

from devlearn.model.core import Block, ObservationEncoder
from devlearn.model.tokenize import ActionTokenizer

MASKED_LOGIT = -1e4  # finite, so elements without any valid class stay NaN-free under log_softmax


@dataclass
class WorldModelConfig:
    """Weights of the world-model losses, rollout depth and the EMA target's rate (``agent.world_model``)."""

    exact_weight: float = 1.0
    reward_weight: float = 1.0
    termination_weight: float = 1.0
    catastrophe_weight: float = 1.0
    # falls are 1-4% of transitions: weighting them 20x lets the catastrophe head (and so the shield)
    # separate lava-ahead states within ~16k steps; at 1x it had not after 28k (tests/agents).
    catastrophe_pos_weight: float = 20.0
    latent: bool = True
    latent_weight: float = 1.0
    k: int = 1  # latent rollout depth: predict o_{t+1} .. o_{t+k}
    # share of each PPO minibatch's windows the world-model loss reads: the decoder costs per observation
    # token, and each transition is still predicted about n_epochs * batch_fraction times per rollout
    batch_fraction: float = 0.25
    ema_tau: float = 0.01  # Polyak rate: target <- (1 - tau) * target + tau * online
    # exact loss in training on the tokens the step changed plus this many of the unchanged ones drawn at random
    # (an unbiased estimate of the unchanged half of the loss; cheaper decoding); 0: every token (exact, the default)
    exact_sample: int = 0


def symlog(x: Tensor) -> Tensor:
    """sign(x) * log(1 + |x|): compresses large rewards, identity-like near zero."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    """Inverse of ``symlog``."""
    return torch.sign(x) * torch.expm1(x.abs())


def _heads(d: int) -> int:
    """Attention heads for the decoder: 4 where they divide the width, else 1."""
    return 4 if d % 4 == 0 else 1


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


class WorldModel(nn.Module):
    """Prediction heads on the core's post-action states, and their losses.

    Args:
        core_dim: width of ``h_act``.
        encoder: the core's online observation encoder (tokenizer + pooling). Its tokenizer
            defines the exact targets; an EMA copy of it embeds the latent targets.
        action_space: the action space (the latent rollout embeds the actions it replays).
        cfg: loss weights and options.
    """

    def __init__(
        self,
        core_dim: int,
        encoder: ObservationEncoder,
        action_space: spaces.Space,
        cfg: WorldModelConfig | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg = cfg or WorldModelConfig()
        tokenizer = encoder.tokenizer
        self.tokenizer_space = tokenizer.space
        if cfg.k < 1:
            raise ValueError(f"WorldModelConfig.k={cfg.k} must be >= 1.")
        if not cfg.latent and not tokenizer.has_exact_targets:
            raise ValueError(
                f"observation space {tokenizer.space} has continuous parts without exact targets; "
                "set WorldModelConfig.latent=True so they are predicted at all."
            )
        # the online encoder belongs to the core: keep a plain reference (not a submodule) so its
        # parameters are neither registered twice nor saved twice
        self._online = (encoder,)

        # exact head: only over tokens that have targets
        exact = (tokenizer.num_classes > 0).any(-1).nonzero().squeeze(-1)
        self.register_buffer("exact_tokens", exact, persistent=False)
        self.has_exact = exact.numel() > 0
        if self.has_exact:
            g, c = tokenizer.target_size, tokenizer.max_classes
            classes = tokenizer.num_classes[exact]
            self.register_buffer("class_ok", torch.arange(c) < classes.unsqueeze(-1), persistent=False)
            # Decode o_{t+1} token by token from o_t's own tokens plus what (o_t, a_t) implies: each
            # token of o_t, told the core's post-action state, attends to the others (a move shifts an
            # egocentric view; the cell in front becomes the agent's) and predicts its next value.
            # A learned copy logit makes "nothing changes" the starting guess, so capacity goes to
            # the few tokens the action changes instead of re-deriving the background.
            self.condition = nn.Linear(core_dim, core_dim)
            self.decoder = Block(core_dim, _heads(core_dim), 0.0, mlp_ratio=1)  # per token, so kept narrow
            self.decoder_ln = nn.LayerNorm(core_dim)
            self.token_out = nn.Linear(core_dim, g * c)
            self.copy_logit = nn.Parameter(torch.tensor(3.0))

        self.reward_head = _mlp(core_dim, core_dim, 1)
        self.termination_head = _mlp(core_dim, core_dim, 1)
        self.catastrophe_head = _mlp(core_dim, core_dim, 1)

        if cfg.latent:
            self.target = copy.deepcopy(encoder).requires_grad_(False)
            self.predictor = _mlp(core_dim, core_dim, core_dim)
            self.act_tokenizer = ActionTokenizer(action_space, core_dim)
            self.dynamics = _mlp(2 * core_dim, 2 * core_dim, core_dim)

    @property
    def tokenizer(self) -> Any:
        """The observation tokenizer whose targets the exact head predicts."""
        return self._online[0].tokenizer

    def exact_logits(
        self, h_act: Tensor, obs: Any, rows: Tensor | None = None, current: Tensor | None = None
    ) -> Tensor:
        """Logits of o_{t+1} given the post-action state ``h_act (B, T, d)`` and o_t (``obs``, ``(B, T, ...)``).

        Returns ``(B, T, n_exact_tokens, target_size, max_classes)``, invalid classes masked; with
        ``rows`` (``(B, T, M)`` indices into the exact tokens) only those tokens' logits, ``(B, T, M, ...)``
        (every token still informs them). ``current``: o_t's exact targets, if the caller has them.
        """
        b, t, d = h_act.shape
        n, g, c = self.class_ok.shape
        tok = self.tokenizer
        x = tok(obs)[:, :, self.exact_tokens] + self.condition(h_act)[:, :, None]  # (B, T, n, d)
        full = torch.ones(1, 1, n, n, dtype=torch.bool, device=x.device)  # every token sees every token
        if current is None:
            current = tok.targets(obs)[:, :, self.exact_tokens]  # (B, T, n, g): o_t's own values
        class_ok = self.class_ok
        if rows is None:
            x = self.decoder(x.reshape(b * t, n, d), full)
        else:
            x = self.decoder(x.reshape(b * t, n, d), full, rows=rows.reshape(b * t, -1))
            n = rows.shape[-1]
            current = current.gather(2, rows[..., None].expand(b, t, n, g))
            class_ok = class_ok[rows]
        logits = self.token_out(self.decoder_ln(x)).view(b, t, n, g, c)
        copy = F.one_hot(current.clamp(min=0), c) * (current >= 0)[..., None]
        logits = logits + self.copy_logit * copy
        return logits.masked_fill(~class_ok, MASKED_LOGIT)

    def _sample_rows(self, changed: Tensor) -> Tensor:
        """``(B, T, M)``: every changed token of each step, then unchanged ones drawn uniformly without
        replacement to fill ``M`` = the most changed tokens of any step + ``exact_sample`` (at most all)."""
        n = changed.shape[-1]
        m = min(n, int(changed.sum(-1).max()) + self.cfg.exact_sample)
        key = torch.rand(changed.shape, device=changed.device) + 2.0 * changed  # changed first, the rest at random
        return key.topk(m, dim=-1).indices

    @torch.no_grad()
    def predict_next(self, h_act: Tensor, obs: Any) -> Any:
        """The most likely next observation (per element) after ``h_act``, from o_t = ``obs``.

        Decoded to the observation's structure; leaves without exact targets (continuous ones) come
        back as ``None``.
        """
        if not self.has_exact:
            raise ValueError(f"observation space {self.tokenizer_space} has no exact targets to decode.")
        tok = self.tokenizer
        targets = torch.full((*h_act.shape[:-1], tok.n_tokens, tok.target_size), -1, device=h_act.device)
        targets[..., self.exact_tokens, :] = self.exact_logits(h_act, obs).argmax(-1)
        return tok.decode(targets)

    def catastrophe_prob(self, h_act: Tensor) -> Tensor:
        """Calibrated probability that the step ``(o_t, a_t)`` is a catastrophe, ``(B, T)``.

        The head is trained with positives weighted ``catastrophe_pos_weight`` (w) times, which
        learns the logit of w x the odds; subtracting log(w) undoes that prior shift, so a
        threshold of 0.5 means "more likely than not", not "more than 1 / (1 + w)".
        """
        logit = self.catastrophe_head(h_act).squeeze(-1)
        return torch.sigmoid(logit - math.log(self.cfg.catastrophe_pos_weight))

    def termination_prob(self, h_act: Tensor) -> Tensor:
        """Probability that the step ``(o_t, a_t)`` ends the episode (a catastrophe included), ``(B, T)``."""
        return torch.sigmoid(self.termination_head(h_act).squeeze(-1))

    def predict_reward(self, h_act: Tensor) -> Tensor:
        """Predicted reward of the step ``(o_t, a_t)``, ``(B, T)``."""
        return symexp(self.reward_head(h_act).squeeze(-1))

    @torch.no_grad()
    def update_target(self, tau: float | None = None) -> None:
        """Move the EMA target encoder towards the online one by ``tau`` (default ``cfg.ema_tau``)."""
        if not self.cfg.latent:
            return
        tau = self.cfg.ema_tau if tau is None else tau
        online = self._online[0]
        for p_t, p_o in zip(self.target.parameters(), online.parameters(), strict=True):
            p_t.lerp_(p_o, tau)
        for b_t, b_o in zip(self.target.buffers(), online.buffers(), strict=True):
            b_t.copy_(b_o)

    def _latent_losses(
        self, h_act: Tensor, batch: dict[str, Any], mask: Tensor
    ) -> tuple[list[Tensor], Tensor]:
        """Per-horizon mean cosine losses, and the 1-step loss per (B, T) (for surprise)."""
        with torch.no_grad():
            target = self.target(batch["next_obs"])  # (B, T, d): target[:, s] embeds o_{s+1}
        done = torch.as_tensor(batch.get("done", batch["terminated"]), device=h_act.device).bool()
        act = self.act_tokenizer(batch["action"]) if self.cfg.k > 1 else None
        z, valid, losses, first = self.predictor(h_act), mask, [], h_act.new_zeros(mask.shape)
        for j in range(self.cfg.k):  # z[:, t] predicts o_{t+j+1} = target[:, t+j]
            if j > 0:
                z = z[:, :-1]
                z = z + self.dynamics(torch.cat([z, act[:, j:]], dim=-1))
                # the rollout from t is valid only while no episode ends before step t + j
                valid = valid[:, :-1] & ~done[:, j - 1 : -1] & mask[:, j:]
            if z.shape[1] == 0:
                break
            err = 1 - F.cosine_similarity(z, target[:, j:], dim=-1)
            losses.append((err * valid).sum() / valid.sum().clamp(min=1))
            if j == 0:
                first = err
        return losses, first

    @torch.no_grad()
    def surprise(self, h_act: Tensor, obs: Any, next_obs: Any) -> Tensor:
        """Surprise of o_{t+1} after ``h_act (B, T, d)`` from o_t, ``(B, T)``: what ``loss`` returns as its third value.

        Only the observation's terms (nats per changed exact token; the 1-step latent error where the
        observation has no exact targets), none of the heads or accuracies ``loss`` also computes: acting
        with ``memory.write=surprise`` pays it every step.
        """
        if self.has_exact:
            targets = self.tokenizer.targets(next_obs)[..., self.exact_tokens, :]
            current = self.tokenizer.targets(obs)[..., self.exact_tokens, :]
            nll = self._token_nll(self.exact_logits(h_act, obs, current=current), targets)
            surprise = nll.sum(-1) / (targets != current).any(-1).sum(-1).clamp(min=1)
        else:
            surprise = h_act.new_zeros(h_act.shape[:-1])
        if self.cfg.latent and not self.tokenizer.has_exact_targets:
            z, target = self.predictor(h_act), self.target(next_obs)
            surprise = surprise + (1 - F.cosine_similarity(z, target, dim=-1))
        return surprise

    @staticmethod
    def _token_nll(logits: Tensor, targets: Tensor) -> Tensor:
        """``(B, T, n)``: nats per exact token (summed over its target groups; -1 targets count 0)."""
        nll = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=-1, reduction="none")
        return nll.view(targets.shape).sum(-1)

    def loss(
        self, h_act: Tensor, batch: dict[str, Any], sample: bool = False
    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """World-model loss on a window.

        Args:
            h_act: ``(B, T, d)`` core states after (o_t, a_t).
            batch: ``obs`` (o_t) and ``next_obs`` (o_{t+1}), each ``(B, T, *obs_shape)`` or a dict of such, ``reward``,
                ``terminated``, ``catastrophe``, ``mask`` (all ``(B, T)``; ``mask`` is True on real
                transitions of the window's episode), and for the latent rollout ``action``
                ``(B, T, *act_shape)`` and optionally ``done`` (terminated or truncated; defaults
                to ``terminated``) so that no rollout crosses an episode's end.

            sample: with ``cfg.exact_sample > 0``, the exact loss reads the changed tokens and a random
                sample of the others (``_sample_rows``): the unchanged half of the loss becomes the sample's
                mean, an unbiased estimate of it; the token and observation accuracies and the surprise
                then cover the sampled tokens only. The training update's option, never acting's.

        Returns:
            ``(total, logs, surprise)``: the weighted scalar loss, a dict of named detached scalars
            (each loss; ``acc_changed``, the accuracy on the tokens the step changed; ``acc_obs``, whole
            observations exactly right, beside ``acc_obs_copy``, what copying o_t scores; ``acc_token``),
            and the surprise per step ``(B, T)``: nats per changed token (0 where masked).
        """
        cfg = self.cfg
        mask = torch.as_tensor(batch["mask"], device=h_act.device).bool()
        m = mask.float()
        n_valid = m.sum().clamp(min=1)
        surprise = h_act.new_zeros(mask.shape)
        total, logs = self._head_losses(h_act, batch, m, n_valid)
        if self.has_exact:
            exact_surprise = self._exact_loss(h_act, batch, sample, m, n_valid, logs)
            total = total + cfg.exact_weight * logs["exact"]
            surprise = surprise + exact_surprise
        if cfg.latent:
            losses, first = self._latent_losses(h_act, batch, mask)
            logs["latent"] = torch.stack(losses).mean()
            for j, value in enumerate(losses[1:], start=2):
                logs[f"latent_k{j}"] = value
            total = total + cfg.latent_weight * logs["latent"]
            if not self.tokenizer.has_exact_targets:  # continuous parts are judged in latent space
                surprise = surprise + first.detach() * m

        logs = {name: value.detach() for name, value in logs.items()}
        logs["total"] = total.detach()
        return total, logs, surprise

    def _head_losses(
        self, h_act: Tensor, batch: dict[str, Any], m: Tensor, n_valid: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The reward, termination and catastrophe heads' losses on the real steps ``m``, and their weighted sum."""
        cfg, device = self.cfg, h_act.device
        reward = symlog(torch.as_tensor(batch["reward"], device=device).float())
        logs = {"reward": ((self.reward_head(h_act).squeeze(-1) - reward) ** 2 * m).sum() / n_valid}
        bce = F.binary_cross_entropy_with_logits
        terminated = torch.as_tensor(batch["terminated"], device=device).float()
        term = bce(self.termination_head(h_act).squeeze(-1), terminated, reduction="none")
        logs["termination"] = (term * m).sum() / n_valid
        pos_weight = torch.tensor(cfg.catastrophe_pos_weight, device=device)
        catastrophe = torch.as_tensor(batch["catastrophe"], device=device).float()
        cat = bce(self.catastrophe_head(h_act).squeeze(-1), catastrophe, reduction="none", pos_weight=pos_weight)
        logs["catastrophe"] = (cat * m).sum() / n_valid
        total = (
            cfg.reward_weight * logs["reward"]
            + cfg.termination_weight * logs["termination"]
            + cfg.catastrophe_weight * logs["catastrophe"]
        )
        return total, logs

    def _exact_loss(
        self, h_act: Tensor, batch: dict[str, Any], sample: bool, m: Tensor, n_valid: Tensor, logs: dict[str, Tensor]
    ) -> Tensor:
        """The exact next-observation loss into ``logs["exact"]`` (with its accuracies); returns the surprise part."""
        targets = self.tokenizer.targets(batch["next_obs"])[..., self.exact_tokens, :]
        current = self.tokenizer.targets(batch["obs"])[..., self.exact_tokens, :]
        if sample and self.cfg.exact_sample > 0:
            rows = self._sample_rows((targets != current).any(-1))
            logits = self.exact_logits(h_act, batch["obs"], rows, current)
            pick = rows[..., None].expand(*rows.shape, targets.shape[-1])
            targets, current = targets.gather(2, pick), current.gather(2, pick)
        else:
            logits = self.exact_logits(h_act, batch["obs"], current=current)
        nll = self._token_nll(logits, targets)  # (B, T, n): nats per token
        changed = (targets != current).any(-1)  # (B, T, n): the tokens the step changed
        n_changed = changed.sum(-1)
        mean_changed = (nll * changed).sum(-1) / n_changed.clamp(min=1)
        mean_kept = (nll * ~changed).sum(-1) / (~changed).sum(-1).clamp(min=1)
        # Half the loss on what changes, half on what does not: a per-token mean would let the
        # background (98% of tokens) drown the one cell the action moved, and a decoder that only
        # copies would look nearly perfect. Steps where nothing changed count only the kept half.
        per_step = torch.where(n_changed > 0, 0.5 * (mean_changed + mean_kept), mean_kept)
        logs["exact"] = (per_step * m).sum() / n_valid
        with torch.no_grad():
            token_ok = ((logits.argmax(-1) == targets) | (targets < 0)).all(-1)
            steps_changed = (n_changed > 0).float() * m
            logs["acc_token"] = (token_ok.float().mean(-1) * m).sum() / n_valid
            logs["acc_obs"] = (token_ok.all(-1).float() * m).sum() / n_valid
            # the same figures for a model that copies o_t: what a do-nothing predictor scores
            logs["acc_obs_copy"] = ((n_changed == 0).float() * m).sum() / n_valid
            changed_ok = (token_ok & changed).sum(-1) / n_changed.clamp(min=1)
            logs["acc_changed"] = (changed_ok * steps_changed).sum() / steps_changed.sum().clamp(min=1)
            logs["changed_fraction"] = (changed.float().mean(-1) * m).sum() / n_valid
        # surprise: nats per changed token (the divergence that matters, not summed over the map)
        return (nll.sum(-1) / n_changed.clamp(min=1)).detach() * m
