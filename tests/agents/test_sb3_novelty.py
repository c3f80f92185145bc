"""agent.intrinsic=novelty for the SB3 baselines: a VecEnv wrapper adds coef x first-visit bonus to the rewards,
and leaves info (Monitor's episode return) the env's."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from devlearn.agents.sb3.agent import SB3Agent
from devlearn.agents.sb3.vec import NoveltyBonus, SB3VecEnv
from devlearn.config import AGENT_SCHEMAS
from devlearn.envs.vector.make import make_vector_env
from devlearn.model.novelty import byte_keys

CLIFF = "devlearn/CliffEdge-v0"


def test_the_wrapper_pays_each_reached_state_once_per_episode_and_keeps_info() -> None:
    inner = SB3VecEnv(make_vector_env(CLIFF, 3))
    venv = NoveltyBonus(inner, coef=0.5)
    venv.seed(0)
    steps = []
    step_wait = inner.step_wait

    def recording():
        out = step_wait()
        steps.append((out[1].copy(), [dict(i) for i in out[3]]))
        return out

    inner.step_wait = recording
    obs = venv.reset()
    seen = [{k} for k in byte_keys(obs, 3).tolist()]  # the oracle: each env's states this episode
    rng = np.random.default_rng(0)
    paid = ends = 0
    env_return = np.zeros(3)
    for _ in range(300):
        obs, reward, done, infos = venv.step(rng.integers(3, size=3))
        env_reward, env_infos = steps[-1]
        assert infos == env_infos  # info untouched, Monitor's episode return included
        for i in range(3):
            reached = infos[i]["terminal_observation"] if done[i] else obs[i]
            (key,) = byte_keys(reached[None], 1).tolist()
            new = key not in seen[i]
            assert reward[i] == pytest.approx(env_reward[i] + 0.5 * new), (i, new)
            paid += new
            seen[i].add(key)
            env_return[i] += env_reward[i]
            if done[i]:  # the next episode starts from the returned observation, seen and unpaid
                ends += 1
                seen[i] = set(byte_keys(obs[i][None], 1).tolist())
                assert infos[i]["episode"]["r"] == pytest.approx(env_return[i])  # the env's return, no bonus
                env_return[i] = 0.0
    assert ends > 3 and 0 < paid < 900  # episodes ended, and not every step was new


@pytest.mark.parametrize("name", ["ppo", "recurrent_ppo"])
def test_sb3_learns_on_the_bonus_while_monitor_reports_the_env_return(name) -> None:
    cfg = OmegaConf.structured(
        AGENT_SCHEMAS[name](n_steps=64, batch_size=64, n_epochs=1, intrinsic="novelty", intrinsic_coef=0.5)
    )
    agent = SB3Agent(name, make_vector_env(CLIFF, 4), cfg, 0, "cpu", None)
    assert isinstance(agent.venv, NoveltyBonus)
    agent.model.learn(512)
    # PPO's buffer holds the rewards it learned from: bonuses of 0.5 on CliffEdge's otherwise (almost) zero rewards
    rewards = agent.model.rollout_buffer.rewards
    assert (rewards >= 0.5).mean() > 0.05
    # Monitor's episodes: CliffEdge pays 0 except at the goal (at most 1); with the bonus a return would be >= 0.5
    episodes = list(agent.model.ep_info_buffer)
    assert episodes and all(e["r"] == 0.0 or 0 < e["r"] <= 1 for e in episodes)
    assert sum(e["r"] for e in episodes) < 0.5 * len(episodes)
    plain = SB3Agent(name, make_vector_env(CLIFF, 4), OmegaConf.structured(AGENT_SCHEMAS[name]()), 0, "cpu", None)
    assert isinstance(plain.venv, SB3VecEnv)  # intrinsic_coef=0: no wrapper
