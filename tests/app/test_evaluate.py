"""Evaluation plays the episodes it reports and no more, all at once where it can, and shows its progress."""

from __future__ import annotations

import io

import numpy as np

import devlearn  # noqa: F401  (registers the ids)
from devlearn.app.evaluate import MAX_EVAL_ENVS, eval_num_envs, evaluate_policies, run_episodes
from devlearn.logging.progress import EpisodeProgress

INBOX = "devlearn/Inbox-v0"  # every episode is num_emails + 1 steps long


class CountingPolicy:
    """Keeps every e-mail (action 0) and counts the policy calls and the episodes begun."""

    def __init__(self) -> None:
        self.calls = self.starts = 0

    def __call__(self, obs, episode_start: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.starts += int(np.sum(episode_start))
        return np.zeros(len(episode_start), dtype=np.int64)


def test_eval_num_envs_runs_every_episode_at_once_or_in_even_rounds():
    assert [eval_num_envs(n) for n in (1, 2, 20, 64)] == [1, 2, 20, 64]
    assert eval_num_envs(100) == 50 and eval_num_envs(65) == 33  # two even rounds, nothing wasted
    assert all(eval_num_envs(n) <= MAX_EVAL_ENVS for n in range(1, 500))


def test_twenty_inbox_episodes_take_one_round_not_three():
    """20 episodes on 8 envs played 24, in three rounds of 11 steps: two thirds of the time wasted."""
    policy = CountingPolicy()
    episodes = run_episodes(policy, INBOX, 20, seed=0, num_emails=10)
    assert len(episodes) == 20 and all(e["length"] == 11 for e in episodes)
    assert policy.starts == 20  # no episode begun only to be thrown away
    assert policy.calls == 11  # one episode's steps: all 20 side by side


class KeepAgent:
    def policy(self, deterministic: bool = True) -> CountingPolicy:
        return CountingPolicy()


def test_progress_lines_name_the_split_the_mode_and_the_episodes():
    out = io.StringIO()
    evaluate_policies(KeepAgent(), INBOX, 6, label="eval heldout", stream=out, num_emails=10, split="heldout")
    lines = out.getvalue().splitlines()
    assert lines[-2].startswith("[" + "#" * 30 + "] eval heldout argmax: 6/6 episodes | 66 steps |"), lines
    assert lines[-1].startswith("[" + "#" * 30 + "] eval heldout sampled: 6/6 episodes | 66 steps |"), lines
    assert lines[-1].endswith("steps/s")


def test_progress_prints_at_most_every_two_seconds_and_always_at_the_end(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("devlearn.logging.progress.time.time", lambda: now[0])
    out = io.StringIO()
    bar = EpisodeProgress("eval train argmax", 4, out)
    for t, done in ((0.5, 1), (1.0, 2), (2.5, 3), (3.0, 3)):  # printed at 2.5 only: the next not before 4.5
        now[0] = t
        bar.update(done, 10 * done)
    now[0] = 3.5
    bar.finish(4, 40)  # the last line, always
    lines = out.getvalue().splitlines()
    assert [line.split(": ")[1].split(" |")[0] for line in lines] == ["3/4 episodes", "4/4 episodes"]
    assert lines[-1].endswith("| 40 steps | 11 steps/s")
