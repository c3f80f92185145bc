"""agent=ppo_lagrangian: the multiplier rises while the episodes' cost exceeds the limit and falls to 0 below it,
the cost advantage moves the policy, the CLI trains it, and its checkpoint carries the multiplier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from stable_baselines3.common.buffers import RolloutBuffer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import devlearn
from devlearn.agents import make_agent
from devlearn.agents.sb3.lagrangian import gae, lagrange_step
from devlearn.config import AGENT_SCHEMAS, register_configs
from devlearn.envs.vector.make import make_vector_env
from devlearn.errors import ConfigError
from devlearn.validate import validate

BANDIT = "tests/CostlyBandit-v0"
REPO = Path(__file__).resolve().parents[2]


class CostlyBandit(gymnasium.Env):
    """One-step episodes: action 1 pays reward 1 and costs ``CostlyBandit.cost``; action 0 pays and costs nothing.

    The test sets ``cost`` (a class attribute, so every copy of a SyncVectorEnv sees it) to control the cost.
    """

    observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = spaces.Discrete(2)
    cost = 1.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {"cost": 0.0, "catastrophe": False}

    def step(self, action):
        costly = int(action) == 1
        info = {"cost": self.cost * costly, "catastrophe": False, "success": costly}
        return np.zeros(1, np.float32), float(costly), True, False, info


if BANDIT not in gymnasium.registry:
    devlearn.register(BANDIT, CostlyBandit)


def bandit_agent(**overrides):
    cfg = AGENT_SCHEMAS["ppo_lagrangian"](n_steps=32, batch_size=64, n_epochs=4, learning_rate=1e-3, **overrides)
    return make_agent(OmegaConf.structured(cfg), make_vector_env(BANDIT, 4), seed=0, device="cpu", writer=None)


def test_the_update_rule_rises_above_the_limit_and_falls_to_zero_below() -> None:
    assert lagrange_step(0.5, episode_cost=0.8, cost_limit=0.3, lr=0.1) == pytest.approx(0.55)  # rises
    assert lagrange_step(0.5, episode_cost=0.1, cost_limit=0.3, lr=0.1) == pytest.approx(0.48)  # falls
    assert lagrange_step(0.5, episode_cost=0.3, cost_limit=0.3, lr=0.1) == 0.5  # at the limit: stays
    assert lagrange_step(0.01, episode_cost=0.0, cost_limit=0.3, lr=0.1) == 0.0  # projected: never below 0
    multiplier = 0.0
    for _ in range(5):
        multiplier = lagrange_step(multiplier, episode_cost=0.0, cost_limit=0.3, lr=0.1)
    assert multiplier == 0.0


def test_cost_gae_is_sb3s_gae_on_the_cost() -> None:
    """``gae`` on a (step, env) array is what SB3's RolloutBuffer computes for the reward on the same numbers."""
    rng = np.random.default_rng(0)
    n_steps, n_envs = 7, 3
    buffer = RolloutBuffer(n_steps, spaces.Box(0, 1, (1,)), spaces.Discrete(2), gamma=0.9, gae_lambda=0.8, n_envs=n_envs)
    rewards, values = rng.random((n_steps, n_envs)), rng.random((n_steps, n_envs))
    starts = rng.random((n_steps, n_envs)) < 0.3
    for t in range(n_steps):
        buffer.add(np.zeros((n_envs, 1)), np.zeros(n_envs), rewards[t], starts[t], torch.tensor(values[t]), torch.zeros(n_envs))
    last, dones = rng.random(n_envs), np.array([True, False, False])
    buffer.compute_returns_and_advantage(torch.tensor(last), dones)
    ours = gae(rewards.astype(np.float32), values.astype(np.float32), starts.astype(np.float32), last, dones, 0.9, 0.8)
    np.testing.assert_allclose(ours, buffer.advantages, rtol=1e-5, atol=1e-6)


def rollouts(agent, n: int) -> list[tuple[float, float, float]]:
    """Train ``n`` rollouts; each one's (cost measured in the buffer, lambda before, lambda after).

    Every bandit episode lasts one step, so the mean episode cost of a rollout is its mean step cost.
    """
    model, steps = agent.model, agent.model.n_steps * agent.model.n_envs
    out = []
    for _ in range(n):
        before = model.lagrangian_multiplier
        model.learn(steps, reset_num_timesteps=False)
        out.append((float(model.rollout_buffer.costs.mean()), before, model.lagrangian_multiplier))
    return out


def test_training_moves_the_multiplier_with_the_measured_cost(one_thread) -> None:
    """Costly: lambda rises while the cost exceeds the limit, until the cost advantage turns the policy away from
    the costly action; the env's cost switched off: lambda falls by lr x limit a rollout, to 0, and stays."""
    agent = bandit_agent(cost_limit=0.2, lagrangian_lr=5.0)
    CostlyBandit.cost = 1.0
    try:
        costly = rollouts(agent, 14)
        CostlyBandit.cost = 0.0
        free = rollouts(agent, 14)
    finally:
        CostlyBandit.cost = 1.0
    for cost, before, after in costly + free:
        assert after == pytest.approx(max(0.0, before + 5.0 * (cost - 0.2)), abs=1e-5)
    assert costly[0][0] > 0.2 and costly[0][2] > costly[0][1]  # the untrained policy pays: lambda rises
    assert min(cost for cost, _, _ in costly) < 0.2  # the constraint bites: the policy avoided the costly action
    assert max(after for _, _, after in costly) > 1.0
    assert [cost for cost, _, _ in free] == [0.0] * 14
    lambdas = [after for _, _, after in free]
    assert all(b <= a for a, b in zip(lambdas, lambdas[1:], strict=False)) and lambdas[-1] == 0.0


def test_under_a_limit_it_never_reaches_it_is_ppo_and_pays(one_thread) -> None:
    """The control: the same agent with a budget above any episode's cost keeps lambda at 0 and learns, as plain
    PPO does, to take the action that pays reward and cost. Its cost critic has learned what an episode costs."""
    agent = bandit_agent(cost_limit=2.0, lagrangian_lr=5.0)
    trained = rollouts(agent, 14)
    assert all(after == 0.0 for _, _, after in trained)
    assert all(cost > 0.8 for cost, _, _ in trained[-4:])
    with torch.no_grad():
        expected_cost = agent.model.policy.predict_cost_values(torch.zeros(1, 1)).item()
    assert expected_cost == pytest.approx(trained[-1][0], abs=0.05)


def test_each_steps_cost_is_read_and_a_truncation_bootstraps_with_the_cost_critic(one_thread) -> None:
    agent = bandit_agent()
    model = agent.model
    rollouts(agent, 1)
    model.rollout_buffer.reset()  # the next step goes to position 0
    final = np.ones(1, np.float32)
    ended = {"episode": {"r": 0.0, "l": 3, "t": 0.0}, "cost": 2.0, "terminal_observation": final}
    infos = [
        {"step_cost": 0.5},
        {"step_cost": 0.5, "TimeLimit.truncated": True, **ended},  # cut by the time limit: V_c(final) is owed
        {"step_cost": 1.0, "TimeLimit.truncated": False, **ended},  # terminated: nothing more is owed
        {"step_cost": 0.0},
    ]
    model._episode_costs = []
    model._update_info_buffer(infos, np.array([False, True, True, False]))
    with torch.no_grad():
        owed = model.gamma * model.policy.predict_cost_values(torch.as_tensor(final[None])).item()
    assert owed != 0.0
    np.testing.assert_allclose(model.rollout_buffer.costs[0], [0.5, 0.5 + owed, 1.0, 0.0], rtol=1e-6)
    assert model._episode_costs == [2.0, 2.0]  # each finished episode's summed cost, for J_c


def test_the_checkpoint_carries_the_multiplier_and_the_cost_critic(tmp_path, one_thread) -> None:
    agent = bandit_agent(cost_limit=0.2, lagrangian_lr=2.0)
    rollouts(agent, 2)
    agent.model.lagrangian_multiplier = 3.25
    agent.save(tmp_path)
    # a fresh agent, as a resumed run builds it (lambda at its init), with resume=force's new limit
    restored = bandit_agent(cost_limit=0.5, lagrangian_lr=2.0, lagrangian_init=0.0)
    restored.load(tmp_path)
    assert restored.model.lagrangian_multiplier == 3.25
    assert restored.model.cost_limit == 0.5  # hyperparameters come from the config on load
    saved = agent.model.policy.cost_value_net.state_dict()
    for key, value in restored.model.policy.cost_value_net.state_dict().items():
        assert torch.equal(value, saved[key])
    rollouts(restored, 1)  # it trains on from there
    assert restored.num_timesteps == agent.num_timesteps + 128


def test_the_cli_trains_it_end_to_end(tmp_path) -> None:
    run_dir = tmp_path / "run"
    args = [
        str(Path(sys.executable).parent / "devlearn"), "train", "agent=ppo_lagrangian", "agent.total_timesteps=256",
        "agent.n_steps=32", "agent.batch_size=64", "env.num_envs=4", "log.eval_episodes=2", "log.video=false",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 shared cores: torch's threads would fight (~4x slower)
    out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["agent"] == "ppo_lagrangian" and results["env_steps"] == 256
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    new = {"train/lagrangian_multiplier", "train/episode_cost", "train/cost_value_loss"}
    assert new <= tags, sorted(tags)
    readme = (REPO / "README.md").read_text()
    assert all(f"`{tag.split('/')[1]}`" in readme for tag in new)  # documented in "Reading TensorBoard"


@pytest.mark.parametrize(
    "override, message",
    [
        ("agent.cost_limit=-1", "agent.cost_limit=-1.0 must be a finite number >= 0."),
        ("agent.lagrangian_init=-0.5", "agent.lagrangian_init=-0.5 must be a finite number >= 0."),
        ("agent.lagrangian_lr=0", "agent.lagrangian_lr=0.0 must be a finite number > 0."),
        ("agent.lagrangian_lr=inf", "agent.lagrangian_lr=inf must be a finite number > 0."),
    ],
)
def test_its_keys_are_validated_in_one_line(override: str, message: str) -> None:
    register_configs()
    with initialize_config_module(config_module="devlearn.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["agent=ppo_lagrangian", override])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert str(err.value) == message
