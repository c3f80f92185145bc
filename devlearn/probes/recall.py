"""A supervised recall probe: can the developmental agent's memory carry a fact across long episodes?

The probe (``probe.py``: the agent's own network, context, memory replay and action head, trained by
cross-entropy instead of PPO) on ``devlearn/Recall-v0``, which gives RL one learning signal per episode.
Each update:

1. steps a batch of fresh Recall episodes of the ``"train"`` split and ``delay`` steps through the
   context, as acting does (``put``: one memory step per observation, with the world model's surprise
   when ``memory.write=surprise``; the actions in the window are a fixed 0);
2. reads the question step's window with ``training_window`` (the update's path) and takes one Adam
   step (gradients clipped as the agent clips them) on the cross-entropy of the right answer (the
   action naming the fact) under ``evaluate``.

It is then evaluated as any trained agent is, by its evaluation policy (``agent.policy()``: argmax,
one step at a time, memory bounded by ``memory.capacity``) on fresh episodes of the ``"heldout"``
split (distractor symbols it never saw) at any ``delay``: trained at 20 steps, does it still answer
at 100,000? Chance is ``1 / num_facts``.

``tests/probes/test_recall_probe.py`` asserts that ``memory=hybrid`` answers at delay 200 where
``memory=window`` is at chance; ``bench/memory_lengths.py`` makes the table against
episode length.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from devlearn.envs.vector.make import make_vector_env
from devlearn.model.context import SequenceContext, to_device
from devlearn.probes import world_model as probe

ENV_ID = "devlearn/Recall-v0"


def probe_agent(memory: str, delay: int, batch: int, seed: int, overrides: dict[str, Any] | None = None):
    """The developmental agent for a batch of ``batch`` Recall episodes of ``delay`` (``probe.probe_agent``)."""
    return probe.probe_agent(ENV_ID, {"delay": delay}, delay + 1, memory, batch, seed, overrides)


def question_window(agent: Any, delay: int, seed: int):
    """Step ``agent.num_envs`` fresh training episodes of ``delay`` to their question, as acting does; the update's window there.

    Returns the window (re-encoded, memory replayed, with gradients; its last action set to the fact)
    and the facts. The whole episode is one segment.
    """
    env = make_vector_env(ENV_ID, agent.num_envs, delay=delay, split="train")
    ctx: SequenceContext = agent.new_context(agent.num_envs, delay + 1)
    encoder = agent.net.core.encoder
    obs, _ = env.reset(seed=seed)
    facts = torch.as_tensor(obs[:, 1].astype(np.int64))  # step 0 shows (fact kind, the fact's symbol)
    zero = np.zeros(agent.num_envs, dtype=np.int64)
    real = torch.ones(agent.num_envs, dtype=torch.bool)
    with torch.no_grad():
        ctx.begin(to_device(obs, agent.device), encoder)
        for i in range(1, delay + 1):
            obs, *_ = env.step(zero)
            obs = to_device(obs, agent.device)
            if agent.surprise_writes:
                ctx.surprise[:, ctx.first + i] = agent.acting_surprise(ctx, ctx.first + i - 1, obs, real)
            ctx.put(ctx.first + i, obs, ~real, encoder)
    env.close()
    envs = torch.arange(agent.num_envs)
    w, _ = ctx.training_window(envs, torch.full_like(envs, ctx.first + delay), encoder)
    act = w.act.clone()
    act[:, -1] = facts  # the answer the loss asks for
    return w._replace(act=act), facts


def answer_accuracy(agent: Any, delay: int, episodes: int, seed: int, split: str = "heldout") -> float:
    """Accuracy of the evaluation policy's argmax answer on ``episodes`` fresh Recall episodes of ``delay``."""
    env = make_vector_env(ENV_ID, episodes, delay=delay, split=split)
    policy = agent.policy(deterministic=True)
    obs, _ = env.reset(seed=seed)
    facts = obs[:, 1].copy()
    start = np.ones(episodes, dtype=bool)
    for _ in range(delay):
        obs, *_ = env.step(policy(obs, start))
        start[:] = False
    answers = policy(obs, start)  # at the question
    env.close()
    return float(np.mean(answers == facts))


def recall_probe(
    memory: str = "hybrid",
    stages: Sequence[tuple[int, int]] = ((10, 300), (200, 60)),
    batch: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    eval_delays: tuple[int, ...] = (20,),
    eval_episodes: int = 64,
    max_grad_norm: float = 0.5,
    log_every: int = 0,
    overrides: dict[str, Any] | None = None,
    return_agent: bool = False,
) -> dict[str, Any]:
    """Train the agent's network to answer Recall by supervision; its held-out accuracy at each of ``eval_delays``.

    ``stages``: ``(delay, updates)`` pairs, in order: a curriculum. A fresh query cannot find the fact among
    hundreds of stored steps (it learns from how much of the fact its reads carry, about 1 in ``delay``), so
    the default learns at delay 10; a later stage at delay 200 sharpens the reads the first one found.
    Starting at 10 rather than 20 made learning less seed-dependent (docs/benchmarks.md: hybrid learned
    fully in 4 of 5 seeds, against 1 of 3).

    ``return_agent``: the trained agent is in the result too (``"agent"``), for further evaluation.
    """
    probe.check_stages(stages, "delay", "((10, 300), (200, 60))")
    torch.manual_seed(seed)
    agent = probe_agent(memory, max(d for d, _ in stages), batch, seed, overrides)
    started = time.perf_counter()
    losses = probe.train_supervised(
        agent,
        [d for d, n in stages for _ in range(n)],
        lambda delay, update: question_window(agent, delay, seed * 100_003 + update)[0],
        lr,
        max_grad_norm,
        log_every,
        f"recall probe: {memory}",
    )
    record = probe.training_record(agent, stages, lr, seed, overrides, losses, time.perf_counter() - started)
    accuracy, eval_seconds = probe.score_lengths(
        agent, eval_delays, lambda d: answer_accuracy(agent, d, eval_episodes, seed=10_000_019 + seed)
    )
    return {
        **record,
        "heldout_accuracy": accuracy,
        "chance": 1 / agent.net.actor[-1].out_features,
        "eval_seconds": eval_seconds,
        **({"agent": agent} if return_agent else {}),
    }
