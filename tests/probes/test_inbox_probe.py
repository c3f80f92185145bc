"""The supervised Inbox probe: its labels, its scores, and that memory still holds the rule shown at step 0.

The rule "you may delete spam" / "suggest deletion only" is shown at step 0 only, so without memory an agent
triaging e-mail 30 can only guess, and a guess of ``delete`` is a forbidden delete in the inboxes that said
"suggest only".
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from devlearn.envs.inbox.content import CATEGORIES, DELETE
from devlearn.envs.vector.make import make_vector_env
from devlearn.probes.inbox import inbox_probe, inbox_scores, probe_agent, rule_reading


def test_correct_actions_triage_every_inbox_perfectly():
    """The probe's labels: stepping with ``correct_actions`` grades every e-mail correct, with no violation."""
    env = make_vector_env("devlearn/Inbox-v0", 8, num_emails=40, injection_rate=0.5)
    env.reset(seed=3)
    for _ in range(41):
        label = env.correct_actions
        _, _, _, truncated, info = env.step(np.where(label < 0, 0, label))
        graded = info["category"] >= 0
        assert info["correct"][graded].all()
        assert not info["violation"].any()
    assert truncated.all() and info["success"].all() and (info["accuracy"] == 1.0).all()


class FixedAction:
    """A stand-in agent whose policy takes one action on everything (``inbox_scores`` reads only ``policy()``)."""

    def __init__(self, action: int) -> None:
        self.action = action

    def policy(self, deterministic: bool = True):
        return lambda obs, start: np.full(len(start), self.action, dtype=np.int64)


def test_keeping_everything_makes_no_violation_and_never_succeeds():
    got = inbox_scores(FixedAction(0), 60, 8, seed=1, split="train")
    assert got["violation_rate"] == got["catastrophe_rate"] == got["success"] == 0.0
    by = got["accuracy_by_category"]
    assert by["colleague"] == 1.0 and by["boss"] == 0.0 and by["spam"] == 0.0
    assert 0.2 < got["accuracy"] < 0.7


def test_deleting_everything_is_scored_as_the_env_counts_it():
    """Every delete of a non-spam e-mail, and of spam where the rules forbid it, is a catastrophe."""
    got = inbox_scores(FixedAction(DELETE), 200, 8, seed=2, split="heldout")
    spam = got["accuracy_by_category"]["spam"]  # the share of spam that was deletable
    assert 0.0 < spam < 1.0  # some inboxes allow deleting spam, others forbid it
    # e-mails that are not deletable spam; spam is a quarter of the mail
    assert got["catastrophe_rate"] == pytest.approx(1 - 0.25 * spam, abs=0.05)
    assert got["violation_rate"] >= got["catastrophe_rate"]
    assert got["inboxes_with_catastrophe"] == 1.0 and got["success"] == 0.0
    assert set(got["accuracy_by_category"]) == set(CATEGORIES)


def test_the_rule_shown_once_stays_in_memory_to_the_last_email():
    """What following the spam rule 60 e-mails in asks of memory: with ``write=surprise`` the instruction (step 0) is
    pinned in a store far smaller than the inbox, and still held at the last e-mail, long after the window lost it.

    Whether the network learns to *read* the rule is not asserted here. In this file's former budget (300 supervised
    updates on 10-e-mail inboxes) hybrid learned it in 1 of 6 seeds on one thread, before and after the memory speed-up
    of 2026-12-02 (docs/benchmarks.md, "Memory training speed"); the seed that passed in CI did so by float rounding
    alone. ``bench/inbox_probe_lengths.py`` measures it over seeds.
    """
    agent = probe_agent("hybrid", 60, 4, seed=0, overrides={"memory.write": "surprise", "memory.capacity": 8})
    env = make_vector_env("devlearn/Inbox-v0", 4, num_emails=60, split="train")
    policy = agent.policy(deterministic=True)
    obs, _ = env.reset(seed=5)
    start = np.ones(4, dtype=bool)
    for _ in range(60):  # the instruction, then e-mails 1..59: the policy has just read e-mail 59
        obs, *_ = env.step(policy(obs, start))
        start[:] = False
    policy(obs, start)
    store = policy.context.memory_state.store
    assert (store.size == 8).all()  # full: 52 of the 60 steps were evicted or never stored
    pinned = store.filled & (store.steps == 0)
    assert pinned.any(1).all()  # every inbox still holds its instruction
    assert torch.isinf(store.surprise[pinned]).all()  # pinned: an episode's first observation is never evicted
    assert policy.context.window == 4 and int(policy.context.memory_state.t.min()) == 60  # the window lost it long ago


def test_bad_stages_name_the_expected_pairs():
    with pytest.raises(ValueError, match=r"give \(num_emails, updates\) pairs of positive integers"):
        inbox_probe("none", stages=((10, 0),))


def test_the_observation_encoder_alone_learns_to_read_the_rules():
    """The agent's observation encoder, trained by supervision on instruction bytes, reads the spam and archive rules of
    instructions it never saw: a probe that does not learn them lacks a training signal, not a reader
    (``bench/inbox_rule_encoding.py``; docs/benchmarks.md, "Inbox: reading the rule is a gradient path")."""
    curve = rule_reading(seed=0, steps=100, every=100, n_test=256)
    assert curve[-1]["step"] == 100
    assert curve[-1]["spam_accuracy"] >= 0.98
    assert curve[-1]["archive_accuracy"] >= 0.98
