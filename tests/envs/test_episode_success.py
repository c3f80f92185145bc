"""Honest metrics: one success rule for every env, argmax and sampled policies, catastrophes per success."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest

import devlearn  # noqa: F401  (registers the ids)
from devlearn.agents.sb3.vec import SB3VecEnv, sb3_observation_wrappers
from devlearn.app.evaluate import (
    catastrophes_per_success,
    evaluate_policies,
    format_table,
    run_episodes,
    summarize,
)
from devlearn.envs.vector.episodes import SUCCESS_RULES, EpisodeStats, episode_success
from devlearn.envs.vector.make import make_vector_env

EMPTY = "MiniGrid-Empty-5x5-v0"  # sets no info["success"]; reward only on reaching the goal (terminated)
LEFT, RIGHT, FORWARD = 0, 1, 2
EMPTY_PLAN = (FORWARD, FORWARD, RIGHT, FORWARD, FORWARD)  # from (1, 1) facing east to the goal at (3, 3)


class PlanPolicy:
    """Plays a fixed action sequence per sub-env from each episode's start (batched, like an agent's policy)."""

    def __init__(self, plan: tuple[int, ...]):
        self.plan, self.t = plan, None

    def __call__(self, obs, episode_start: np.ndarray) -> np.ndarray:
        if self.t is None:
            self.t = np.zeros(len(episode_start), dtype=np.int64)
        self.t[episode_start] = 0
        actions = np.array([self.plan[min(t, len(self.plan) - 1)] for t in self.t])
        self.t += 1
        return actions


def test_empty_5x5_at_the_optimal_return_has_success_one():
    """MiniGrid sets no info["success"]: the termination rule must count its goal (success was 0.000 before)."""
    assert "success" not in gymnasium.make(EMPTY).reset(seed=0)[1]
    episodes = run_episodes(PlanPolicy(EMPTY_PLAN), EMPTY, 8, num_envs=4)
    summary = summarize(episodes)
    assert summary["return"] == pytest.approx(1 - 0.9 * 5 / 100)  # MiniGrid's optimal return here
    assert summary["success"] == 1.0 and summary["success_rule"] == "termination"
    assert summary["catastrophes_per_success"] == 0.0
    table = format_table({"train argmax": summary})
    assert SUCCESS_RULES["termination"] in table


def test_a_time_limit_is_never_a_success_under_the_termination_rule():
    episodes = run_episodes(PlanPolicy((LEFT,)), EMPTY, 4, num_envs=2)  # turning in place until truncated
    assert [e["success"] for e in episodes] == [False] * 4
    assert all(e["length"] == 100 and e["success_rule"] == "termination" for e in episodes)


def test_episode_success_rule():
    success, rule = episode_success(
        reported=[True, True, False, False, False, False],
        info_success=[True, False, False, False, False, False],
        terminated=[False, True, True, True, False, False],
        final_reward=[0.0, 1.0, 0.5, 0.0, 0.7, 0.0],
    )
    # info decides where reported (even against a positive terminal reward); else termination with reward > 0.
    assert success.tolist() == [True, False, True, False, False, False]
    assert rule.tolist() == ["info", "info", "termination", "termination", "termination", "termination"]


def test_env_that_reports_success_is_believed():
    """CliffEdge sets info["success"]: a goal counts, a fall (terminated, reward 0) does not."""
    env_id = "devlearn/CliffEdge-v0"
    # Forward until something ends the episode: falls and goals both terminate.
    episodes = run_episodes(PlanPolicy((FORWARD,)), env_id, 40, num_envs=8, seed=0)
    assert all(e["success_rule"] == "info" for e in episodes)
    assert all(e["success"] == (e["return"] > 0) for e in episodes)
    assert any(e["catastrophe"] for e in episodes)


def test_training_logs_use_the_same_rule():
    """SB3's finished-episode infos (what RunLog records) count Empty-5x5's goal as a success."""
    wrappers = sb3_observation_wrappers(gymnasium.make(EMPTY).observation_space)
    venv = SB3VecEnv(make_vector_env(EMPTY, 2, "sync", wrappers))
    venv.seed(0)
    venv.reset()
    finished = []
    for action in EMPTY_PLAN:
        _, _, done, infos = venv.step(np.array([action, LEFT]))
        finished += [info for info, d in zip(infos, done, strict=True) if d]
    venv.close()
    assert len(finished) == 1 and finished[0]["success"] is True


def test_episode_stats_without_terminated_counts_a_positive_final_reward():
    """Callers that do not pass ``terminated`` (the developmental agent today) get "ended with reward > 0"."""
    stats = EpisodeStats(2)
    stats.update(np.array([0.0, 0.0]), {})
    stats.update(np.array([0.9, 0.0]), {})
    first, second = stats.pop(np.array([True, True]))
    assert first["success"] and not second["success"] and first["success_rule"] == "termination"


def test_catastrophes_per_success():
    assert catastrophes_per_success(3, 2) == 1.5
    assert catastrophes_per_success(0, 5) == 0.0
    assert catastrophes_per_success(4, 0) == math.inf  # catastrophes and nothing to show for them
    assert math.isnan(catastrophes_per_success(0, 0))  # idle: neither
    rows = {
        "idle": summarize([{"return": 0.0, "length": 9, "cost": 0.0, "catastrophe": False, "success": False}])
    }
    assert "n/a" in format_table(rows)


class FakeAgent:
    """An agent whose argmax policy reaches Empty-5x5's goal and whose sampled policy only turns."""

    def policy(self, deterministic: bool = True) -> PlanPolicy:
        return PlanPolicy(EMPTY_PLAN if deterministic else (LEFT,))


def test_evaluation_reports_argmax_and_sampled_policies():
    by_mode = evaluate_policies(FakeAgent(), EMPTY, 4)
    assert set(by_mode) == {"argmax", "sampled"}
    assert by_mode["argmax"]["success"] == 1.0 and by_mode["sampled"]["success"] == 0.0
    table = format_table({f"train {mode}": s for mode, s in by_mode.items()})
    assert "train argmax" in table and "train sampled" in table and "catastrophes_per_success" in table


def test_out_of_range_episodes_are_labelled_apart():
    """CarWash held-out distances beyond training's get their own rows, never averaged in unlabelled."""
    episodes = run_episodes(PlanPolicy((FORWARD, LEFT)), "devlearn/CarWash-v0", 24, split="heldout")
    summary = summarize(episodes)
    inside, outside = summary["in_range"], summary["out_of_range"]
    assert inside["episodes"] + outside["episodes"] == summary["episodes"] == 24
    assert inside["episodes"] > 0 and outside["episodes"] > 0
    table = format_table({"heldout argmax": summary})
    assert "heldout argmax [out of range]" in table and "heldout argmax [in range]" in table
    train = summarize(run_episodes(PlanPolicy((FORWARD, LEFT)), "devlearn/CarWash-v0", 8, split="train"))
    assert "out_of_range" not in train  # training layouts are never out of range
