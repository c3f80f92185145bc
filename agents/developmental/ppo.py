"""PPO's two pure pieces: generalised advantage estimates and the clipped loss (CleanRL's, term for term)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

VF_COEF = 0.5  # Stable-Baselines3's value-loss weight, so PPO matches the baseline


def gae(
    reward: Tensor,
    value: Tensor,
    last_value: Tensor,
    terminated: Tensor,
    done: Tensor,
    gamma: float,
    lam: float,
) -> Tensor:
    """Generalised advantage estimates ``(E, n)`` for a rollout.

    ``value[:, t]`` is V(o_t) and ``last_value`` V(o_n), the observation after the rollout. A
    terminated step bootstraps nothing; a truncated one bootstraps from V(o_{t+1}), the value of
    its final observation (with next-step autoreset the stream holds it, and acted from it); the
    advantage chain stops at every episode end. Steps that are not real transitions get values
    too, but are never used.
    """
    n = reward.shape[1]
    adv = torch.zeros_like(reward)
    running = torch.zeros_like(last_value)
    next_value = last_value
    keep_value = (~terminated).float()
    keep_chain = (~done).float()
    for t in range(n - 1, -1, -1):
        delta = reward[:, t] + gamma * next_value * keep_value[:, t] - value[:, t]
        running = delta + gamma * lam * keep_chain[:, t] * running
        adv[:, t] = running
        next_value = value[:, t]
    return adv


class PPOLoss(NamedTuple):
    total: Tensor
    policy: Tensor
    value: Tensor
    entropy: Tensor
    approx_kl: Tensor  # detached
    clip_fraction: Tensor  # detached


def ppo_loss(
    logp: Tensor,
    logp_old: Tensor,
    advantages: Tensor,
    value: Tensor,
    returns: Tensor,
    entropy: Tensor,
    clip_range: float,
    ent_coef: float,
) -> PPOLoss:
    """The clipped surrogate + ``VF_COEF`` x value MSE - ``ent_coef`` x entropy, on one minibatch.

    Advantages are normalised per minibatch (as SB3 and CleanRL do).
    """
    a = advantages
    if len(a) > 1:
        a = (a - a.mean()) / (a.std() + 1e-8)
    log_ratio = logp - logp_old
    ratio = log_ratio.exp()
    policy = torch.max(-a * ratio, -a * ratio.clamp(1 - clip_range, 1 + clip_range)).mean()
    value_loss = F.mse_loss(value, returns)
    ent = entropy.mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clip_fraction = ((ratio - 1).abs() > clip_range).float().mean()
    total = policy + VF_COEF * value_loss - ent_coef * ent
    return PPOLoss(total, policy, value_loss, ent, approx_kl, clip_fraction)
