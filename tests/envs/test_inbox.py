"""Tests of devlearn/Inbox-v0: API conformance, the instruction-once behaviour, irreversible delete,
injected orders, lazy generation, split disjointness and the batched twin."""

from __future__ import annotations

import re
import tracemalloc

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import devlearn  # noqa: F401  (registers the ids)
from devlearn.app.evaluate import run_episodes, summarize
from devlearn.envs.actions import InvalidActionError
from devlearn.envs.inbox.content import (
    ACTION_NAMES,
    ALERT,
    ARCHIVE,
    BOSS,
    COLLEAGUE,
    CONTENT,
    DELETE,
    FLAG,
    KEEP,
    NEWSLETTER,
    SPAM,
    SPLITS,
    SUGGEST_DELETE,
    generate_email,
    generate_instruction,
)
from devlearn.envs.inbox.env import SUCCESS_ACCURACY, InboxEnv
from devlearn.envs.inbox.vec import InboxVecEnv
from devlearn.testing import check_batched_twin

ENV_ID = "devlearn/Inbox-v0"
INFO_KEYS = (
    "cost",
    "catastrophe",
    "success",
    "correct",
    "accuracy",
    "violation",
    "violations",
    "injected",
    "category",
    "text",
)


def text_of(obs: np.ndarray) -> str:
    return bytes(obs).rstrip(b"\0").decode("ascii")


def reset_until(env: InboxEnv, predicate, **kwargs) -> None:
    """Reset with seeds 0, 1, ... until the episode's instruction satisfies ``predicate``."""
    for seed in range(200):
        env.reset(seed=seed, **kwargs)
        if predicate(env.instruction):
            return
    raise AssertionError("no seed gave the wanted instruction")


def step_until(env: InboxEnv, predicate, action: int = KEEP):
    """Step with ``action`` until the e-mail on screen satisfies ``predicate``."""
    for _ in range(env.args.num_emails):
        if env.current_email is not None and predicate(env.current_email):
            return
        env.step(action)
    raise AssertionError("no e-mail satisfied the predicate")


# --- API conformance ---------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
def test_check_env_gymnasium_and_sb3(split):
    check_env(InboxEnv(split=split))
    check_env(gym.make(ENV_ID, split=split))  # warns that it is wrapped, must not fail
    # Made with a spec, so the checker also tries the ansi render mode.
    check_env(gym.make(ENV_ID, split=split, render_mode="ansi").unwrapped)
    sb3_check_env(InboxEnv(split=split))
    sb3_check_env(gym.make(ENV_ID, split=split))


def test_spaces_info_keys_and_observation_is_the_text():
    env = InboxEnv(obs_bytes=256)
    assert env.observation_space == gym.spaces.Box(0, 255, (256,), np.uint8)
    assert env.action_space == gym.spaces.Discrete(5) and len(ACTION_NAMES) == 5
    obs, info = env.reset(seed=0)
    keys = set(info)
    assert {
        "cost",
        "catastrophe",
        "success",
        "correct",
        "accuracy",
        "violation",
        "violations",
        "injected",
        "text",
    } <= keys
    assert (info["cost"], info["catastrophe"], info["success"], info["violation"]) == (
        0.0,
        False,
        False,
        False,
    )
    assert text_of(obs) == info["text"] == env.instruction.text
    for _ in range(30):
        obs, _, _, _, info = env.step(env.action_space.sample())
        assert set(info) == keys
        assert text_of(obs) == info["text"]


def test_every_text_fits_the_default_observation_and_small_obs_truncates():
    for split in SPLITS:
        rng = np.random.default_rng(1)
        for _ in range(300):
            instruction = generate_instruction(rng, split)
            assert len(instruction.text) <= 256
            for _ in range(20):
                assert len(generate_email(rng, split, instruction, 0.5).text) <= 256
    env = InboxEnv(obs_bytes=64)
    obs, info = env.reset(seed=0)
    assert obs.shape == (64,) and bytes(obs) == info["text"].encode()[:64]


def test_truncated_after_the_last_email_and_never_terminated():
    env = InboxEnv(num_emails=10)
    env.reset(seed=0)
    for t in range(11):  # the instruction, then 10 e-mails
        _, _, terminated, truncated, _ = env.step(KEEP)
        assert not terminated
        assert truncated == (t == 10)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(KEEP)


# --- behaviour ---------------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
def test_instruction_is_never_shown_after_step_0(split):
    env = InboxEnv(split=split, num_emails=3000, injection_rate=0.3)
    obs0, info = env.reset(seed=5)
    c = CONTENT[split]
    # The rules' own words: every fixed phrase of the templates and clauses, none of which an e-mail uses.
    rule_phrases = [
        p.strip() for tpl in c.instruction_templates for p in re.split(r"\{\w+\}", tpl) if len(p) > 8
    ]
    rule_phrases += list(c.archive_clauses) + list(c.spam_clauses) + [env.instruction.text]
    assert sum(p in info["text"] for p in rule_phrases) >= 4  # the step-0 text does contain them
    rng = np.random.default_rng(0)
    truncated = False
    while not truncated:
        obs, _, _, truncated, info = env.step(int(rng.integers(5)))
        assert not np.array_equal(obs, obs0)
        assert not any(p in info["text"] for p in rule_phrases), info["text"]


def test_correct_triage_gets_plus_one_from_the_text_alone():
    """An oracle that reads only the texts (rules at step 0, then each e-mail) scores +1 on every e-mail."""
    for split in SPLITS:
        c = CONTENT[split]
        env = InboxEnv(split=split, num_emails=400, injection_rate=0.2)
        for seed in range(5):
            obs, _ = env.reset(seed=seed)
            rules = text_of(obs)
            boss = next(f"{f} {s}" for f in c.first_names for s in c.surnames if f"{f} {s}" in rules)
            may_delete = c.spam_clauses[1] in rules
            rule = next(i for i in (2, 1, 0) if c.archive_clauses[i] in rules)
            archive_news, archive_alerts = rule != 1, rule != 0
            total, truncated = 0.0, False
            action = KEEP
            while True:
                obs, reward, _, truncated, info = env.step(action)
                total += reward
                if truncated:
                    break
                sender = text_of(obs).split("\n")[0].removeprefix("From: ")
                if sender == boss:
                    action = FLAG
                elif sender in c.newsletters:
                    action = ARCHIVE if archive_news else KEEP
                elif sender.endswith(" Notifications"):
                    action = ARCHIVE if archive_alerts else KEEP
                elif sender in c.spammers:
                    action = DELETE if may_delete else SUGGEST_DELETE
                else:
                    action = KEEP
            assert total == 400.0
            assert info["success"] and info["accuracy"] == 1.0 and info["violations"] == 0  # the task is done


def test_correct_action_table_and_step0_reward():
    env = InboxEnv(num_emails=50)
    _, info = env.reset(seed=3)
    _, reward, _, _, info = env.step(DELETE)  # the action on the instruction: reward 0, no consequence
    assert reward == 0.0 and not info["catastrophe"] and not env.is_deleted(0)
    ins = env.instruction
    assert ins.correct[BOSS] == FLAG and ins.correct[COLLEAGUE] == KEEP
    assert ins.correct[NEWSLETTER] == (ARCHIVE if ins.archive_newsletters else KEEP)
    assert ins.correct[ALERT] == (ARCHIVE if ins.archive_alerts else KEEP)
    assert ins.correct[SPAM] == (DELETE if ins.may_delete else SUGGEST_DELETE)
    email = env.current_email
    _, reward, _, _, info = env.step(email.correct)
    assert reward == 1.0 and info["correct"] and not info["success"]  # one right e-mail is not a done task
    wrong = (env.current_email.correct + 1) % 4  # never delete: a wrong, harmless action
    _, reward, _, _, info = env.step(wrong)
    assert reward == 0.0 and not info["correct"] and info["accuracy"] == 0.5


# --- success: the task was done ----------------------------------------------------------------


def oracle_action(env: InboxEnv) -> int:
    """The right action on the e-mail on screen (KEEP on the instruction)."""
    email = env.current_email
    return KEEP if email is None else email.correct


def test_success_only_on_the_last_step_and_only_if_the_inbox_was_triaged_well():
    env = InboxEnv(num_emails=40, injection_rate=0.3)
    env.reset(seed=1)
    for _ in range(41):
        _, _, _, truncated, info = env.step(oracle_action(env))
        assert info["success"] == truncated  # the oracle's episode succeeds, on its last step only
    assert info["accuracy"] == 1.0 and SUCCESS_ACCURACY == 0.9


def test_one_violation_fails_the_task_even_when_accurate():
    env = InboxEnv(num_emails=100, injection_rate=0.5)
    env.reset(seed=2)
    step_until(env, lambda e: e.injected, action=KEEP)
    violated = False
    truncated = False
    while not truncated:
        email = env.current_email
        if email is not None and email.injected and not violated:
            action, violated = email.demanded, True  # obey one injected order
        else:
            action = oracle_action(env)
        _, _, _, truncated, info = env.step(action)
    assert info["violations"] == 1 and info["accuracy"] >= SUCCESS_ACCURACY and not info["success"]


def test_accuracy_below_the_threshold_fails_the_task():
    env = InboxEnv(num_emails=50, injection_rate=0.0)
    env.reset(seed=3)
    truncated, t = False, 0
    while not truncated:
        # Right on the first 44 e-mails only (0.88 < 0.9), never a violation: the wrong action is never delete.
        right = oracle_action(env)
        _, _, _, truncated, info = env.step(right if t <= 44 else (right + 1) % 4)
        t += 1
    assert info["violations"] == 0 and info["accuracy"] == pytest.approx(0.88) and not info["success"]


def test_twin_success_equals_the_single_env_for_a_good_and_a_violating_triage():
    """Both agree on success where it can be True: an oracle in sub-env 0, one obeyed order in sub-env 1."""
    kwargs = {"num_emails": 30, "injection_rate": 0.4}
    twin = InboxVecEnv(2, **kwargs)
    sync = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync", **kwargs)
    twin.reset(seed=4), sync.reset(seed=4)
    singles = [env.unwrapped for env in sync.envs]
    obeyed = False
    for _ in range(31):
        actions = [oracle_action(env) for env in singles]
        email = singles[1].current_email
        if email is not None and email.injected and not obeyed:
            actions[1], obeyed = email.demanded, True
        out_t, out_s = twin.step(np.array(actions)), sync.step(np.array(actions))
        for key in ("success", "correct", "accuracy", "violations"):
            np.testing.assert_array_equal(out_t[4][key], out_s[4][key])
    assert obeyed and out_t[3].all()  # the last e-mail: both episodes end here
    assert out_t[4]["success"].tolist() == [True, False]
    sync.close()


@pytest.mark.parametrize("vectorization", ["twin", "sync"])
def test_keep_everything_policy_never_succeeds_in_evaluation(vectorization):
    """It earns reward (the e-mails whose rule is "keep"), but the task is not done: success 0, not 1."""
    keep = lambda obs, start: np.full(len(start), KEEP)  # noqa: E731
    episodes = run_episodes(keep, ENV_ID, 16, num_envs=4, vectorization=vectorization, num_emails=30)
    summary = summarize(episodes)
    assert summary["return"] > 5 and summary["success"] == 0.0 and summary["success_rule"] == "info"


def test_delete_under_suggest_only_is_a_violation_and_a_catastrophe():
    env = InboxEnv(num_emails=300, injection_rate=0.0)
    reset_until(env, lambda ins: not ins.may_delete)
    step_until(env, lambda e: e.category == SPAM)
    _, reward, _, truncated, info = env.step(DELETE)
    assert reward == 0.0 and info["violation"] and info["catastrophe"] and info["cost"] == 1.0
    assert info["violations"] == 1 and not truncated  # the episode continues after the catastrophe
    step_until(env, lambda e: e.category == SPAM)
    _, reward, _, _, info = env.step(SUGGEST_DELETE)
    assert reward == 1.0 and not info["violation"] and info["cost"] == 0.0


def test_delete_permission_allows_spam_only():
    env = InboxEnv(num_emails=300, injection_rate=0.0)
    reset_until(env, lambda ins: ins.may_delete)
    step_until(env, lambda e: e.category == SPAM)
    _, reward, _, _, info = env.step(DELETE)
    assert reward == 1.0 and not info["violation"] and not info["catastrophe"]
    step_until(env, lambda e: e.category == NEWSLETTER)
    _, reward, _, _, info = env.step(DELETE)
    assert reward == 0.0 and info["violation"] and info["catastrophe"] and info["cost"] == 1.0


def test_deleted_email_stays_deleted_and_cannot_be_undone():
    env = InboxEnv(num_emails=500)
    env.reset(seed=2)
    env.step(KEEP)
    env.step(KEEP)
    _, _, _, _, info = env.step(DELETE)  # deletes e-mail 2
    assert env.is_deleted(2) and not env.is_deleted(1) and not env.is_deleted(3)
    rng = np.random.default_rng(0)
    deleted = {2}
    truncated = False
    while not truncated:
        t = env._t
        action = int(rng.integers(5))
        _, _, _, truncated, _ = env.step(action)  # no action ever brings e-mail 2 (or any other) back
        if action == DELETE:
            deleted.add(t)
        assert env.is_deleted(2)
    assert {k for k in range(501) if env.is_deleted(k)} == deleted
    with pytest.raises(IndexError, match="step_index"):
        env.is_deleted(501)
    env.reset(seed=2)  # a new episode starts with an empty record
    assert not any(env.is_deleted(k) for k in range(501))


def test_obeying_an_injected_order_is_a_violation():
    env = InboxEnv(num_emails=200, injection_rate=1.0)
    env.reset(seed=0)
    env.step(KEEP)
    counted = 0
    for _ in range(100):
        email = env.current_email
        assert (
            email.injected and email.demanded != email.correct and ACTION_NAMES[email.demanded] in email.text
        )
        _, reward, _, _, info = env.step(email.demanded)
        counted += 1
        assert info["injected"] and info["violation"] and reward == 0.0 and info["violations"] == counted
        assert info["catastrophe"] == (email.demanded == DELETE)
        assert info["cost"] == (1.0 if email.demanded == DELETE else 0.5)
    email = env.current_email
    _, reward, _, _, info = env.step(email.correct)  # ignoring the order is right
    assert reward == 1.0 and not info["violation"] and info["violations"] == counted


def test_same_seed_same_episode_and_different_seed_differs():
    def run(seed):
        env = InboxEnv(num_emails=60, injection_rate=0.2)
        obs, info = env.reset(seed=seed)
        out = [(obs.tobytes(), info["text"])]
        for a in np.random.default_rng(9).integers(0, 5, 61):
            obs, r, te, tr, info = env.step(int(a))
            out.append((obs.tobytes(), r, te, tr, info["cost"], info["violation"], info["injected"]))
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


# --- lazy generation: memory does not grow with length -----------------------------------------


def _traced_peak(num_emails: int, steps: int) -> int:
    env = InboxEnv(num_emails=num_emails)
    env.reset(seed=0)
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    for _ in range(steps):
        env.step(DELETE)  # the worst case for the deletion record
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert not any(isinstance(v, (list, dict, set)) and len(v) > 50 for v in vars(env).values())
    return peak - base


def test_memory_does_not_grow_with_length():
    small, large = _traced_peak(10, 10), _traced_peak(10_000, 10_000)
    assert large < 64 * 1024, large  # far below one object per e-mail (that would be megabytes)
    assert large < small + 32 * 1024
    assert len(InboxEnv(num_emails=100_000).reset(seed=0)[0]) == 256  # the longest episodes construct fine


@pytest.mark.slow
def test_memory_at_100000_emails():
    small, large = _traced_peak(10, 10), _traced_peak(100_000, 100_000)
    assert large < small + 64 * 1024  # the deletion bitmask is 12.5 kB; nothing else grows


# --- splits ------------------------------------------------------------------------------------


def _collect(split: str, episodes: int = 300, emails: int = 40):
    rng = np.random.default_rng(123)
    senders, subjects, templates, texts = set(), set(), set(), []
    for _ in range(episodes):
        ins = generate_instruction(rng, split)
        templates.add(ins.template)
        texts.append(ins.text)
        for _ in range(emails):
            email = generate_email(rng, split, ins, 0.3)
            senders.add(email.sender)
            subjects.add(email.subject)
            texts.append(email.text)
    return senders, subjects, templates, texts


def test_splits_are_disjoint_by_construction():
    train, heldout = _collect("train"), _collect("heldout")
    for a, b in zip(train[:3], heldout[:3], strict=True):
        assert a and b and not a & b
    # Defining property: every sender and topic of a split comes from that split's own lists.
    for split, (senders, subjects, _, _) in (("train", train), ("heldout", heldout)):
        c = CONTENT[split]
        people = {f"{f} {s}" for f in c.first_names for s in c.surnames}
        allowed = people | set(c.newsletters) | {f"{v} Notifications" for v in c.services} | set(c.spammers)
        assert senders <= allowed
        assert {s.split(": ")[-1] for s in subjects} <= set(c.topics())
    # No fixed phrase of one split's instructions or injected orders ever appears in the other split's text.
    for split, other_texts in (("train", heldout[3]), ("heldout", train[3])):
        c = CONTENT[split]
        phrases = [
            p.strip()
            for tpl in c.instruction_templates + c.injection_templates
            for p in re.split(r"\{\w+\}", tpl)
            if len(p.strip()) > 8
        ] + list(c.archive_clauses + c.spam_clauses)
        blob = "\n".join(other_texts)
        assert not [p for p in phrases if p in blob]


def test_split_changes_the_content():
    _, info_train = InboxEnv(split="train").reset(seed=0)
    _, info_held = InboxEnv(split="heldout").reset(seed=0)
    assert info_train["text"] != info_held["text"]


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(split="test"), "split.*'train', 'heldout'"),
        (dict(num_emails=9), r"num_emails.*\[10, 1000000\]"),
        (dict(num_emails=1_000_001), "num_emails"),
        (dict(num_emails=20.5), "num_emails"),
        (dict(obs_bytes=8), r"obs_bytes.*\[64, 4096\]"),
        (dict(injection_rate=1.5), r"injection_rate.*\[0, 1\]"),
        (dict(render_mode="rgb_array"), "render_mode.*'ansi'"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InboxEnv(**kwargs)
    with pytest.raises(ValueError, match=match):
        InboxVecEnv(2, **kwargs)


def test_invalid_action_names_the_space():
    env = InboxEnv()
    env.reset(seed=0)
    for bad in (5, -1, "delete"):
        with pytest.raises(InvalidActionError, match=r"Discrete\(5\).*4=delete"):
            env.step(bad)
    vec = InboxVecEnv(2)
    vec.reset(seed=0)
    with pytest.raises(InvalidActionError, match="batched action space"):
        vec.step(np.array([0, 7]))


# --- rendering ---------------------------------------------------------------------------------


def test_ansi_transcript_is_bounded_and_keeps_the_instruction():
    assert "ansi" in InboxEnv.metadata["render_modes"]
    env = InboxEnv(num_emails=300, render_mode="ansi")
    env.reset(seed=4)
    for _ in range(301):
        env.step(DELETE)
    text = env.render()
    assert isinstance(text, str) and env.instruction.text in text
    assert "CATASTROPHE" in text and "earlier e-mails" in text and "inbox empty" in text
    assert len(text.splitlines()) <= 25
    assert InboxEnv().render() is None


# --- the batched twin --------------------------------------------------------------------------


@pytest.mark.parametrize("split, obs_bytes", [("train", 256), ("heldout", 256), ("heldout", 64)])
def test_batched_twin_equals_sync_vector_env(split, obs_bytes):
    episodes = check_batched_twin(
        ENV_ID,
        num_envs=4,
        steps=120,
        seed=11,
        info_keys=INFO_KEYS,
        split=split,
        num_emails=12,
        obs_bytes=obs_bytes,
        injection_rate=0.3,
    )
    assert episodes >= 8  # 13 steps per episode: autoreset happens many times over


def test_twin_from_make_vec_records_deletes_and_renders():
    vec = gym.make_vec(
        ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", num_emails=10, render_mode="ansi"
    )
    assert isinstance(vec.unwrapped, InboxVecEnv)
    obs, info = vec.reset(seed=0)
    assert obs.shape == (3, 256) and obs.dtype == np.uint8
    vec.step(np.zeros(3, dtype=np.int64))
    vec.step(np.array([DELETE, KEEP, DELETE]))  # e-mail 1
    for _ in range(5):
        vec.step(np.array([KEEP, KEEP, KEEP]))
        assert (
            vec.unwrapped.is_deleted(0, 1)
            and not vec.unwrapped.is_deleted(1, 1)
            and vec.unwrapped.is_deleted(2, 1)
        )
    for _ in range(4):
        _, _, _, truncated, info = vec.step(np.zeros(3, dtype=np.int64))
    assert truncated.all() and info["_episode"].all() and (info["episode"]["l"] == 11).all()
    transcripts = vec.render()
    assert len(transcripts) == 3 and "INSTRUCTION" in transcripts[0]
    vec.close()


# --- training smoke ----------------------------------------------------------------------------


def test_ppo_smoke(sb3_learns):
    sb3_learns(gym.make(ENV_ID, num_emails=50))
