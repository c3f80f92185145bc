"""Asking "what happens if I do this?": the core rolls its own predictions forward, for every candidate action.

From a real window (the agent's last ``W`` steps), each candidate first action ``a`` is imagined ``horizon``
steps ahead, batched over sub-envs x candidates on the training device:

1. the core's state after ``(o_t, a)`` (``Core.candidate_states``: one pass for every candidate);
2. the world model's most likely next observation ``o'`` (``WorldModel.predict_next``), encoded and
   appended to the window (the oldest step drops out), exactly as a real step would be;
3. the policy's own greedy action at ``o'`` (the continuation the agent would most likely take), and the
   state after it; and so on for ``horizon`` steps.

Each imagined step ``k`` has a catastrophe probability ``p_k`` (the world model's calibrated head) and a
termination probability ``d_k``. The trajectory's risk is the discounted probability that a catastrophe
comes before the episode ends: ``sum_k gamma^(k-1) p_k prod_{i<k} (1 - max(d_i, p_i))``. At horizon 1 it is
the one-step catastrophe probability, the shield of before.

Imagination reads only the observation space's exact tokens: an observation with continuous parts (a Box of
floats) cannot be decoded back into an observation, so such spaces imagine one step only (``can_imagine``).
Memory tokens stay those of the real window's last step: the imagined steps are not written to memory.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from devlearn.model.context import Window, tree_map


class Imagined(NamedTuple):
    """Every candidate first action's imagined consequence, for a batch of ``B`` windows and ``A`` actions."""

    h_obs: Tensor  # (B, d) the core's state after the real last observation (for the policy and value)
    risk: Tensor  # (B, A) discounted probability of a catastrophe within the horizon
    first: Tensor  # (B, A) the one-step catastrophe probability of the first action
    plan: Tensor  # (B, A, H) the imagined action sequence: the candidate, then the policy's greedy actions


def can_imagine(world_model: Any) -> bool:
    """Whether the world model can decode a whole next observation (every token exact), so imagine past one step."""
    return world_model.has_exact and world_model.tokenizer.has_exact_targets


def imagine(
    core: nn.Module,
    world_model: Any,
    actor: nn.Module,
    w: Window,
    last_obs: Any,
    candidates: Tensor,
    horizon: int,
    gamma: float,
) -> Imagined:
    """Imagine each of ``candidates`` (``(A,)``) from windows ``w``, ``horizon`` steps ahead (see the module docstring).

    ``last_obs``: the windows' last raw observations, ``(B, *obs_shape)`` or a dict of such (the world
    model's copy path reads them). Runs under the caller's grad mode; acting calls it in inference mode.
    """
    h_obs, h_act = core.candidate_states(w.obs, w.act, w.valid, candidates, w.memory)  # (B, d), (B, A, d)
    b, n_actions, d = h_act.shape
    first = world_model.catastrophe_prob(h_act)
    risk = first
    alive = 1 - torch.maximum(world_model.termination_prob(h_act), first)
    plan = candidates.expand(b, n_actions)[..., None]
    if horizon <= 1:
        return Imagined(h_obs, risk, first, plan)

    # one imagined stream per (window, candidate): B * A windows that shift as imagined steps arrive
    rep = lambda x: x.repeat_interleave(n_actions, 0)  # noqa: E731
    obs, act, valid = rep(w.obs), rep(w.act).clone(), rep(w.valid)
    memory = None if w.memory is None else rep(w.memory)
    act[:, -1] = candidates.repeat(b)
    current = tree_map(lambda x: rep(x)[:, None], last_obs)  # (B*A, 1, ...)
    h = h_act.reshape(b * n_actions, 1, d)
    actions, discount = [plan[..., 0]], 1.0
    for _ in range(1, horizon):
        predicted = world_model.predict_next(h, current)  # (B*A, 1, ...) the most likely next observation
        obs = torch.cat([obs[:, 1:], core.encoder(predicted)], dim=1)
        act = torch.cat([act[:, 1:], torch.zeros_like(act[:, :1])], dim=1)  # the new last slot: a placeholder
        valid = torch.cat([valid[:, 1:], torch.ones_like(valid[:, :1])], dim=1)
        h_next, h_cand = core.candidate_states(obs, act, valid, candidates, memory)
        chosen = actor(h_next).argmax(-1)  # (B*A,) the policy's own greedy continuation
        act[:, -1] = chosen
        h = h_cand.gather(1, chosen[:, None, None].expand(-1, 1, d))  # (B*A, 1, d)
        p = world_model.catastrophe_prob(h)[:, 0].view(b, n_actions)
        discount *= gamma
        risk = risk + discount * alive * p
        alive = alive * (1 - torch.maximum(world_model.termination_prob(h)[:, 0].view(b, n_actions), p))
        actions.append(chosen.view(b, n_actions))
        current = predicted
    return Imagined(h_obs, risk.clamp(max=1.0), first, torch.stack(actions, dim=-1))
