"""Tests of devlearn/Recall-v0: API conformance, the task (fact, distractors, question), chance level
without memory, lazy length, disjoint splits and the batched twin."""

from __future__ import annotations

import time
import tracemalloc

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import devlearn  # noqa: F401  (registers the ids)
from devlearn.envs.actions import InvalidActionError
from devlearn.envs.recall.env import DISTRACTOR, FACT, QUESTION, SPLITS, RecallEnv
from devlearn.envs.recall.vec import RecallVecEnv
from devlearn.testing import check_batched_twin

ENV_ID = "devlearn/Recall-v0"


def play(env: RecallEnv, policy, seed: int) -> tuple[float, list[np.ndarray]]:
    """One episode; ``policy(obs, history)`` picks the action. Returns the return and the observations."""
    obs, _ = env.reset(seed=seed)
    history, total, done = [obs], 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy(obs, history))
        total += reward
        done = terminated or truncated
        if not done:
            history.append(obs)
    return total, history


def remember(obs, history) -> int:
    return int(history[0][1])  # the fact, from step 0


# --- API conformance ---------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
def test_check_env_gymnasium_and_sb3(split):
    check_env(RecallEnv(split=split, delay=10))
    check_env(gym.make(ENV_ID, split=split, delay=10).unwrapped)
    check_env(gym.make(ENV_ID, split=split, delay=10, render_mode="ansi").unwrapped)
    sb3_check_env(RecallEnv(split=split, delay=10))
    sb3_check_env(gym.make(ENV_ID, split=split, delay=10))


def test_spaces_and_info_keys():
    env = RecallEnv(delay=10, num_facts=5, num_distractors=7)
    assert env.observation_space == gym.spaces.MultiDiscrete([3, 5 + 2 * 7 + 1])
    assert env.action_space == gym.spaces.Discrete(5)
    _, info = env.reset(seed=0)
    assert info == {"cost": 0.0, "catastrophe": False, "success": False}
    for _ in range(11):
        _, _, _, _, info = env.step(env.action_space.sample())
        assert set(info) == {"cost", "catastrophe", "success"}
        assert info["cost"] == 0.0 and info["catastrophe"] is False


def test_bad_arguments_name_what_is_allowed():
    with pytest.raises(ValueError, match="split='test' is not valid; allowed values: 'train', 'heldout'"):
        RecallEnv(split="test")
    with pytest.raises(ValueError, match=r"delay=0 is not valid; it must be an integer in \[1, 1000000\]"):
        RecallEnv(delay=0)
    with pytest.raises(ValueError, match="num_facts=1 is not valid"):
        RecallEnv(num_facts=1)
    env = RecallEnv(num_facts=4)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="action 4 is not in the action space Discrete"):
        env.step(4)


# --- the task ----------------------------------------------------------------------------------


def test_fact_then_distractors_then_question_then_the_answer_ends_it():
    env = RecallEnv(delay=12, num_facts=4, num_distractors=16)
    obs, _ = env.reset(seed=3)
    assert obs.tolist() == [FACT, env.fact]
    for t in range(1, 13):
        obs, reward, terminated, truncated, info = env.step(0)
        assert reward == 0.0 and not terminated and not truncated and not info["success"]
        if t < 12:
            assert obs[0] == DISTRACTOR and 4 <= obs[1] < 4 + 16  # the train split's range
        else:
            assert obs.tolist() == [QUESTION, 4 + 2 * 16]  # one question symbol, whatever the fact
    _, reward, terminated, truncated, info = env.step(env.fact)
    assert reward == 1.0 and terminated and not truncated and info["success"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=3)
    for _ in range(12):
        env.step(0)
    _, reward, terminated, _, info = env.step((env.fact + 1) % 4)  # a wrong answer
    assert reward == 0.0 and terminated and not info["success"]


def test_an_agent_that_remembers_step_0_always_succeeds():
    env = RecallEnv(delay=30, num_facts=8)
    assert all(play(env, remember, seed)[0] == 1.0 for seed in range(50))


def test_memoryless_answers_are_at_chance_level():
    """Nothing after step 0 tells the fact: answers from the question, or from the last distractor, score 1/K."""
    k, episodes = 4, 2000
    env = RecallEnv(delay=10, num_facts=k, num_distractors=16)
    from_question = (
        sum(play(env, lambda obs, h: int(obs[1]) % k, seed)[0] for seed in range(episodes)) / episodes
    )
    last_seen = (
        sum(play(env, lambda obs, h: int(h[-1][1]) % k, seed)[0] for seed in range(episodes)) / episodes
    )
    sigma = np.sqrt(0.25 * 0.75 / episodes)  # binomial standard error at p = 1/4
    for rate in (from_question, last_seen):
        assert abs(rate - 1 / k) < 4 * sigma, rate
    # The facts are uniform, and the question looks the same whatever the fact.
    facts = [RecallEnv(num_facts=k).reset(seed=s)[0][1] for s in range(episodes)]
    assert np.allclose(np.bincount(facts, minlength=k) / episodes, 1 / k, atol=4 * sigma)


def test_splits_use_disjoint_distractors_by_construction():
    seen = {}
    for split in SPLITS:
        env = RecallEnv(split=split, delay=500, num_facts=4, num_distractors=16)
        symbols = set()
        for seed in range(5):
            _, history = play(env, remember, seed)
            symbols |= {int(o[1]) for o in history if o[0] == DISTRACTOR}
        seen[split] = symbols
    assert seen["train"] == set(range(4, 20)) and seen["heldout"] == set(range(20, 36))  # every one used


# --- lazy length -------------------------------------------------------------------------------


def test_a_100000_step_episode_constructs_instantly_in_constant_memory():
    tracemalloc.start()
    start = time.perf_counter()
    env = RecallEnv(delay=100_000)
    env.reset(seed=0)
    elapsed = time.perf_counter() - start
    for _ in range(2000):
        env.step(0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 0.05 and peak < 100_000, (elapsed, peak)  # no per-step storage


@pytest.mark.slow
def test_a_whole_100000_step_episode_is_answerable():
    total, _ = play(
        RecallEnv(delay=100_000), lambda obs, h: int(h[0][1]) if obs[0] == QUESTION else 0, seed=1
    )
    assert total == 1.0


# --- the batched twin --------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("delay", [1, 10, 37])
def test_batched_twin_equals_sync_vector_env(split, delay):
    episodes = check_batched_twin(
        ENV_ID,
        num_envs=5,
        steps=200,
        seed=3,
        info_keys=("cost", "catastrophe", "success"),
        split=split,
        delay=delay,
    )
    assert episodes >= 5 * (200 // (delay + 2))  # autoreset exercised in every sub-env


def test_twin_from_make_vec_scores_and_reports_episodes():
    envs = gym.make_vec(
        ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", delay=10, render_mode="ansi"
    )
    assert isinstance(envs.unwrapped, RecallVecEnv)
    obs, _ = envs.reset(seed=0)
    facts = obs[:, 1].copy()
    assert (obs[:, 0] == FACT).all() and (facts == envs.unwrapped.facts).all()
    for _ in range(10):
        envs.step(np.zeros(3, dtype=np.int64))
    assert envs.render()[0] == "step 10/10: question 36\n"
    answers = np.array([facts[0], (facts[1] + 1) % 4, facts[2]])
    _, reward, terminated, _, info = envs.step(answers)
    assert reward.tolist() == [1.0, 0.0, 1.0] and terminated.all()
    assert info["success"].tolist() == [True, False, True] and info["_episode"].all()
    assert info["episode"]["r"].tolist() == [1.0, 0.0, 1.0] and (info["episode"]["l"] == 11).all()
    envs.close()


def test_recurrent_ppo_baseline_builds_on_multidiscrete_observations(one_thread):
    """agent=recurrent_ppo (the memory baseline) on Recall: SB3 sized its LSTM with a numpy int and torch refused."""
    from omegaconf import OmegaConf

    from devlearn.agents import make_agent
    from devlearn.config import RecurrentPPOConfig
    from devlearn.envs.vector.make import make_vector_env

    cfg = OmegaConf.structured(RecurrentPPOConfig(n_steps=16, batch_size=32, n_epochs=1))
    agent = make_agent(cfg, make_vector_env(ENV_ID, 2, delay=5), seed=0, device="cpu", writer=None)
    before = [p.detach().clone() for p in agent.model.policy.parameters()]
    agent.model.learn(64)
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.model.policy.parameters(), strict=True))
