"""Intrinsic rewards are callbacks: one plugged in is called at its hooks, and its bonus is the reward GAE sees."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import devlearn.agents.developmental.update as update_module
from devlearn.agents.developmental.agent import DevelopmentalAgent
from devlearn.agents.developmental.intrinsic import INTRINSIC_REWARDS, IntrinsicReward
from devlearn.agents.developmental.ppo import gae
from devlearn.agents.developmental.rollout import Transitions
from devlearn.config import AGENT_SCHEMAS, INTRINSIC
from devlearn.envs.vector.make import make_vector_env
from devlearn.logging.runlog import RunLog

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

NUM_ENVS, N_STEPS, ROLLOUTS = 2, 16, 3


class ScalarLog(RunLog):
    """A RunLog without a writer that keeps every scalar it is given, by tag."""

    def __init__(self) -> None:
        super().__init__(None, 10**9, progress=False)
        self.values: dict[str, list[float]] = {}

    def scalars(self, values: dict[str, float], step: int) -> None:
        super().scalars(values, step)
        for tag, value in values.items():
            self.values.setdefault(tag, []).append(float(value))


class EveryStepBonus(IntrinsicReward):
    """A bonus of ``coef`` on every real transition, counting the hooks' calls."""

    name = "every_step"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.calls = {"bind": 0, "on_reset": 0, "on_step": 0, "rollout_logs": 0, "reward_bonus": 0, "on_update_end": 0}

    def bind(self, agent: DevelopmentalAgent) -> None:
        super().bind(agent)
        self.calls["bind"] += 1

    def on_reset(self) -> None:
        self.calls["on_reset"] += 1

    def on_step(self, j: int, real: np.ndarray) -> None:
        assert real.shape == (NUM_ENVS,) and real.dtype == bool
        self.calls["on_step"] += 1

    def rollout_logs(self) -> dict[str, float]:
        self.calls["rollout_logs"] += 1
        return {"rollout/every_step_calls": float(self.calls["on_step"])}

    def reward_bonus(self, reward: torch.Tensor, batch: Transitions) -> dict[str, torch.Tensor]:
        self.calls["reward_bonus"] += 1
        reward.view(-1)[batch.index] += self.coef
        return {"train/every_step_bonus": torch.tensor(self.coef * len(batch.index))}  # logged as it is

    def on_update_end(self) -> None:
        self.calls["on_update_end"] += 1


def config(name: str, **overrides: Any) -> Any:
    cfg = OmegaConf.structured(AGENT_SCHEMAS[name](n_steps=N_STEPS, batch_size=32, n_epochs=1))
    cfg.core.window = 2
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def train(tmp_path, monkeypatch, cfg: Any, intrinsic: IntrinsicReward | None = None):
    """``ROLLOUTS`` rollouts on CliffEdge; returns the agent, its log and, per update, (GAE's reward, env's, real)."""
    env = make_vector_env("devlearn/CliffEdge-v0", NUM_ENVS)
    agent = DevelopmentalAgent(cfg, env, seed=0, device="cpu", writer=None, intrinsic=intrinsic)
    seen = []

    def recording_gae(reward, *args, **kwargs):
        s = agent.rollout.segment()
        seen.append((reward.clone(), agent.rollout.reward[:, s].clone(), agent.rollout.real[:, s].clone()))
        return gae(reward, *args, **kwargs)

    monkeypatch.setattr(update_module, "gae", recording_gae)
    log = ScalarLog()
    agent.learn(ROLLOUTS * NUM_ENVS * N_STEPS, log, tmp_path, checkpoint_every=10**9)
    return agent, log, seen


def test_a_callback_plugged_in_is_called_and_its_bonus_reaches_gae(tmp_path, monkeypatch) -> None:
    bonus = EveryStepBonus(config("ablation", intrinsic_coef=0.5))
    agent, log, seen = train(tmp_path, monkeypatch, config("ablation"), bonus)
    assert agent.intrinsic is bonus
    assert bonus.calls == {
        "bind": 1,
        "on_reset": 1,
        "on_step": ROLLOUTS * N_STEPS,
        "rollout_logs": ROLLOUTS,
        "reward_bonus": ROLLOUTS,
        "on_update_end": ROLLOUTS,
    }
    assert len(seen) == ROLLOUTS
    for used, env_reward, real in seen:
        assert real.any() and torch.equal(used - env_reward, 0.5 * real.float())  # on real transitions only
    assert log.values["rollout/every_step_calls"] == [float(N_STEPS * (r + 1)) for r in range(ROLLOUTS)]
    # a figure of the whole update: logged as returned, not divided by the number of minibatches
    assert log.values["train/every_step_bonus"] == [0.5 * float(real.sum()) for _, _, real in seen]


@pytest.mark.parametrize("overrides", [{"intrinsic": "none"}, {"intrinsic": "novelty", "intrinsic_coef": 0.0}])
def test_no_intrinsic_reward_leaves_the_env_reward(tmp_path, monkeypatch, overrides) -> None:
    """``agent.intrinsic=none``, or a zero ``intrinsic_coef``: GAE sees the env's reward, bit for bit."""
    agent, log, seen = train(tmp_path, monkeypatch, config("developmental", **overrides))
    assert type(agent.intrinsic) is IntrinsicReward
    assert len(seen) == ROLLOUTS and all(torch.equal(used, env_reward) for used, env_reward, _ in seen)
    assert not [tag for tag in log.values if "novelty" in tag or "intrinsic" in tag]


def test_every_configurable_kind_has_a_callback() -> None:
    assert set(INTRINSIC_REWARDS) == set(INTRINSIC)
