"""What the supervised memory probes share: the agent they train and the update they take.

RL gives a memory test few learning signals (Recall: one per episode), so "the agent did not learn
it" can mean that memory cannot carry the fact or that PPO had too few signals. A probe takes RL's
noise away and keeps everything else: the agent's own network (``DevelopmentalNet``, built from its
config), its own ``SequenceContext`` (acting's memory steps, then the update's replay of the segment)
and its own action head, trained by cross-entropy on the action the task calls for.

``recall_probe`` (``devlearn/Recall-v0``: name the fact seen at step 0) and ``inbox_probe``
(``devlearn/Inbox-v0``: triage every e-mail by the rules shown at step 0) build their windows
their own way and train them here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from devlearn.agents import make_agent
from devlearn.config import DevelopmentalConfig
from devlearn.envs.vector.make import make_vector_env
from devlearn.model.context import Window


def check_stages(stages: Sequence[tuple[int, int]], length: str, example: str) -> None:
    """Raise ``ValueError`` unless ``stages`` is a non-empty sequence of (``length``, updates) pairs of positive integers."""
    if not stages or any(len(stage) != 2 or min(stage) < 1 for stage in stages):
        raise ValueError(f"stages={stages!r}: give ({length}, updates) pairs of positive integers, e.g. {example}.")


def probe_agent(
    env_id: str,
    env_kwargs: dict[str, Any],
    n_steps: int,
    memory: str,
    batch: int,
    seed: int,
    overrides: dict[str, Any] | None = None,
):
    """The developmental agent for ``batch`` episodes of ``env_id`` (no shield, no intrinsic reward: nothing is explored).

    ``n_steps``: the longest segment it will step (a whole episode is one segment).
    ``overrides``: agent keys as on the command line without ``agent.`` (``{"core.d_model": 32, "memory.k": 1}``).
    """
    cfg = OmegaConf.structured(DevelopmentalConfig(n_steps=n_steps, shield_tau=1.0, intrinsic_coef=0.0))
    cfg.memory.variant = memory
    for key, value in (overrides or {}).items():
        OmegaConf.update(cfg, key, value)  # a structured config: an unknown key or a wrong type raises
    env = make_vector_env(env_id, batch, **env_kwargs)
    return make_agent(cfg, env, seed=seed, device="cpu", writer=None)


def train_supervised(
    agent: Any,
    lengths: Sequence[int],
    windows: Callable[[int, int], Window],
    lr: float,
    max_grad_norm: float,
    log_every: int = 0,
    name: str = "probe",
) -> list[float]:
    """One Adam step per entry of ``lengths`` on the cross-entropy of each window's last action; the losses.

    ``windows(length, update)`` returns the update's windows, their last action set to the one the task
    calls for. Gradients are clipped as the agent's own update clips them.
    """
    optimizer = torch.optim.Adam(agent.net.parameters(), lr=lr)
    losses = []
    for update, length in enumerate(lengths):
        w = windows(length, update)
        loss = -agent.net.evaluate(w, allowed=None).logp.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.net.parameters(), max_grad_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
        if log_every and (update + 1) % log_every == 0:
            print(f"{name}: update {update + 1}: loss {np.mean(losses[-log_every:]):.3f}", flush=True)
    return losses


def score_lengths(agent: Any, lengths: Sequence[int], score: Callable[[int], Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """``score(length)`` for each length (network in eval mode, no gradients); the scores and seconds, keyed by length."""
    scores, seconds = {}, {}
    agent.net.eval()
    with torch.no_grad():
        for length in lengths:
            t0 = time.perf_counter()
            scores[str(length)] = score(length)
            seconds[str(length)] = round(time.perf_counter() - t0, 1)
    return scores, seconds


def training_record(
    agent: Any,
    stages: Sequence[tuple[int, int]],
    lr: float,
    seed: int,
    overrides: dict[str, Any] | None,
    losses: list[float],
    train_seconds: float,
) -> dict[str, Any]:
    """What a probe's result says about its training: settings, memory config, first and final loss, time."""
    return {
        "memory": str(agent.cfg.memory.variant),
        "stages": [list(stage) for stage in stages],
        "batch": agent.num_envs,
        "lr": lr,
        "seed": seed,
        "overrides": dict(overrides or {}),
        "capacity": int(agent.cfg.memory.capacity),
        "write": str(agent.cfg.memory.write),
        "first_loss": losses[0],
        "final_loss": float(np.mean(losses[-10:])),
        "train_seconds": round(train_seconds, 1),
    }
