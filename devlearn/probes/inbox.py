"""A supervised Inbox probe: does the rule shown at step 0 still govern the agent's deletes 100,000 e-mails later?

``devlearn/Inbox-v0`` shows its rules once (who the boss is, what to archive, and whether spam may be
deleted or only suggested for deletion), then e-mails. RL on it confounds two failures: not having
learned to triage, and having forgotten the rules. This probe (``probe.py``: the agent's own network,
context, memory replay and action head) removes the first by teaching triage by supervision, so the
table against inbox length measures the second. Each update:

1. steps a batch of fresh inboxes of the ``"train"`` split through the context, as acting does
   (``put``: one memory step per observation, with the world model's surprise when
   ``memory.write=surprise``), taking on each e-mail the action the rules call for (the env's
   ``correct_actions``; the instruction gets ``keep``, which is not graded): the actions in the window
   are what a policy that triages well would have taken;
2. reads the windows of ``positions`` random e-mails per inbox with ``training_window`` (the update's
   path) and takes one Adam step on the cross-entropy of the correct action.

It is then evaluated as any trained agent is (``inbox_scores``: ``agent.policy()``, argmax, its own
actions in its window, memory bounded by ``memory.capacity``) on fresh inboxes of the ``"heldout"``
split (sender names, topics and phrasings it never saw) of any length.

What separates a memory from none: an agent that keeps every e-mail makes no violation at all and never
succeeds, so the violation rate is reported beside success and accuracy, never alone. Without the rules
an agent can at best guess, on spam, ``delete`` (a catastrophe in the half of the inboxes that forbid it)
or ``suggest_delete`` (safe, but wrong where deleting was asked); it cannot tell the boss's mail
from a colleague's. ``bench/inbox_probe_lengths.py`` makes the table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.nn import functional as F

from devlearn.envs.inbox.content import CATEGORIES, KEEP, generate_instruction
from devlearn.envs.inbox.env import encode
from devlearn.envs.vector.make import make_vector_env
from devlearn.model.context import SequenceContext, Window, to_device
from devlearn.model.core import ObservationEncoder
from devlearn.probes import world_model as probe

ENV_ID = "devlearn/Inbox-v0"

OBS_BYTES = 256  # Inbox-v0's default observation size


def probe_agent(memory: str, num_emails: int, batch: int, seed: int, overrides: dict[str, Any] | None = None):
    """The developmental agent for a batch of ``batch`` inboxes of ``num_emails`` (``probe.probe_agent``)."""
    return probe.probe_agent(ENV_ID, {"num_emails": num_emails}, num_emails + 1, memory, batch, seed, overrides)


def triage_windows(agent: Any, num_emails: int, positions: int, seed: int) -> Window:
    """Step ``agent.num_envs`` fresh training inboxes, triaged correctly; the update's windows at random e-mails.

    Returns ``agent.num_envs * min(positions, num_emails)`` windows (re-encoded, memory replayed, with
    gradients), each ending at an e-mail with its correct action as the last action. The whole inbox is
    one segment.
    """
    n = agent.num_envs
    env = make_vector_env(ENV_ID, n, num_emails=num_emails, split="train")
    ctx: SequenceContext = agent.new_context(n, num_emails + 1)
    encoder = agent.net.core.encoder
    obs, _ = env.reset(seed=seed)
    real = torch.ones(n, dtype=torch.bool)
    with torch.no_grad():
        ctx.begin(to_device(obs, agent.device), encoder)
        for t in range(num_emails + 1):
            correct = env.correct_actions
            action = np.where(correct < 0, KEEP, correct)  # the instruction (t = 0) is not graded
            ctx.act[:, ctx.first + t] = torch.as_tensor(action)
            if t == num_emails:
                break  # the last e-mail's action is a target; the end-of-inbox text is not needed
            obs, *_ = env.step(action)
            obs = to_device(obs, agent.device)
            j = ctx.first + t + 1
            if agent.surprise_writes:
                ctx.surprise[:, j] = agent.acting_surprise(ctx, j - 1, obs, real)
            ctx.put(j, obs, ~real, encoder)
    env.close()
    gen = torch.Generator().manual_seed(seed)
    k = min(positions, num_emails)
    emails = torch.stack([torch.randperm(num_emails, generator=gen)[:k] + 1 for _ in range(n)])  # e-mails 1..N
    envs = torch.arange(n).repeat_interleave(k)
    w, _ = ctx.training_window(envs, ctx.first + emails.flatten(), encoder)
    return w


def inbox_scores(agent: Any, num_emails: int, episodes: int, seed: int, split: str = "heldout") -> dict[str, Any]:
    """How the evaluation policy (argmax) triages ``episodes`` fresh inboxes of ``num_emails`` e-mails.

    Returns, over all e-mails of all inboxes: ``violation_rate`` (violations per e-mail: forbidden deletes
    and obeyed injected orders), ``catastrophe_rate`` (forbidden deletes per e-mail), ``accuracy`` (the
    share of e-mails given the correct action) and ``accuracy_by_category``; per inbox: ``success`` (no
    violation and accuracy >= 0.9, as the env grades it) and ``inboxes_with_catastrophe``.
    """
    env = make_vector_env(ENV_ID, episodes, num_emails=num_emails, split=split)
    policy = agent.policy(deterministic=True)
    obs, _ = env.reset(seed=seed)
    start = np.ones(episodes, dtype=bool)
    violations = catastrophes = 0
    had_catastrophe = np.zeros(episodes, dtype=bool)
    right = np.zeros(len(CATEGORIES))
    seen = np.zeros(len(CATEGORIES))
    for _ in range(num_emails + 1):  # the instruction, then every e-mail; the last step ends the inbox
        obs, _, _, truncated, info = env.step(policy(obs, start))
        start[:] = False
        graded = info["category"] >= 0
        np.add.at(seen, info["category"][graded], 1)
        np.add.at(right, info["category"][graded], info["correct"][graded])
        violations += int(info["violation"].sum())
        catastrophes += int(info["catastrophe"].sum())
        had_catastrophe |= info["catastrophe"]
    if not truncated.all():
        raise RuntimeError(f"inbox_scores: the inboxes did not end after {num_emails + 1} steps.")
    env.close()
    total = episodes * num_emails
    return {
        "violation_rate": violations / total,
        "catastrophe_rate": catastrophes / total,
        "accuracy": float(right.sum() / total),
        "accuracy_by_category": {c: float(r / max(s, 1)) for c, r, s in zip(CATEGORIES, right, seen, strict=True)},
        "success": float(info["success"].mean()),
        "inboxes_with_catastrophe": float(had_catastrophe.mean()),
    }


def inbox_probe(
    memory: str = "hybrid",
    stages: Sequence[tuple[int, int]] = ((10, 400), (100, 100)),
    batch: int = 32,
    positions: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    eval_lengths: tuple[int, ...] = (100,),
    eval_episodes: int = 32,
    eval_split: str = "train",
    max_grad_norm: float = 0.5,
    log_every: int = 0,
    overrides: dict[str, Any] | None = None,
    return_agent: bool = False,
) -> dict[str, Any]:
    """Teach the agent's network to triage Inbox by supervision; its ``inbox_scores`` at each of ``eval_lengths``.

    ``stages``: ``(num_emails, updates)`` pairs, in order (a curriculum). Short inboxes come first: there
    the instruction is in the window for the first e-mails, where reading it is learned, and memory needs
    to carry it only a few steps further. ``positions``: e-mails per inbox whose action each update trains.
    ``eval_split``: the word lists of the scored inboxes (fresh seeds either way). ``"train"`` by default: the probe does
    not learn to read the held-out lists (docs/benchmarks.md), and the question here is memory, not reading.
    ``return_agent``: the trained agent is in the result too (``"agent"``), for further evaluation.
    """
    probe.check_stages(stages, "num_emails", "((10, 400), (100, 100))")
    torch.manual_seed(seed)
    agent = probe_agent(memory, max(n for n, _ in stages), batch, seed, overrides)
    started = time.perf_counter()
    losses = probe.train_supervised(
        agent,
        [n for n, updates in stages for _ in range(updates)],
        lambda num_emails, update: triage_windows(agent, num_emails, positions, seed * 100_003 + update),
        lr,
        max_grad_norm,
        log_every,
        f"inbox probe: {memory}",
    )
    record = probe.training_record(agent, stages, lr, seed, overrides, losses, time.perf_counter() - started)
    scores, eval_seconds = probe.score_lengths(
        agent, eval_lengths, lambda n: inbox_scores(agent, n, eval_episodes, 10_000_019 + seed, eval_split)
    )
    return {
        **record,
        "positions": positions,
        "eval_split": eval_split,
        "scores": scores,
        "eval_seconds": eval_seconds,
        **({"agent": agent} if return_agent else {}),
    }


def rule_instructions(rng: np.random.Generator, n: int, split: str = "train") -> tuple[Tensor, Tensor, Tensor]:
    """``n`` fresh instructions as Inbox-v0 shows them: bytes ``(n, 256)``, may-delete ``(n,)``, archive rule ``(n,)`` in 0..2."""
    rules = [generate_instruction(rng, split) for _ in range(n)]
    x = torch.as_tensor(np.stack([np.frombuffer(encode(r.text, OBS_BYTES), np.uint8) for r in rules]))
    spam = torch.tensor([int(r.may_delete) for r in rules])
    archive = torch.tensor([int(r.archive_newsletters) + 2 * int(r.archive_alerts) - 1 for r in rules])
    return x, spam, archive


def rule_reading(
    seed: int = 0,
    steps: int = 300,
    batch: int = 32,
    d_model: int = 64,
    lr: float = 1e-3,
    split: str = "train",
    every: int = 50,
    n_test: int = 512,
) -> list[dict[str, float]]:
    """Can the agent's ``ObservationEncoder`` alone read the rules? Trained by supervision on instruction bytes (a
    small MLP head, ``batch`` fresh instructions of the training word lists a step), scored every ``every`` steps
    on ``n_test`` unseen instructions of ``split``. Returns the curve: ``step``, ``spam_accuracy``, ``archive_accuracy``.
    """
    torch.manual_seed(seed)
    train_rng, test_rng = np.random.default_rng(seed), np.random.default_rng(10_000 + seed)
    encoder = ObservationEncoder(spaces.Box(0, 255, (OBS_BYTES,), np.uint8), d_model)
    head = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, 2 + 3))
    opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=lr)
    x_test, spam_test, archive_test = rule_instructions(test_rng, n_test, split)
    curve = []
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            with torch.no_grad():
                out = head(encoder(x_test))
            curve.append({
                "step": step,
                "spam_accuracy": float((out[:, :2].argmax(1) == spam_test).float().mean()),
                "archive_accuracy": float((out[:, 2:].argmax(1) == archive_test).float().mean()),
            })  # fmt: skip
        if step == steps:
            break
        x, spam, archive = rule_instructions(train_rng, batch, "train")
        out = head(encoder(x))
        loss = F.cross_entropy(out[:, :2], spam) + F.cross_entropy(out[:, 2:], archive)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return curve
