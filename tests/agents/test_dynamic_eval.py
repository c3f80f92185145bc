"""Dynamic evaluation: the world model learns within an episode, on a copy, and the checkpoint stays as it was."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces
from omegaconf import OmegaConf

from devlearn.agents.developmental.agent import CHECKPOINT, DevelopmentalAgent
from devlearn.agents.developmental.dynamic_eval import DynamicEvalConfig, DynamicEvalPolicy
from devlearn.app.evaluate import run_episodes
from devlearn.config import DevelopmentalConfig
from devlearn.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

PATTERN_ID = "devlearn_test/RepeatedPattern-v0"


class RepeatedPattern(gymnasium.Env):
    """Observations cycle through a fixed sequence the agent never trained on; actions change nothing.

    Within one episode the cycle repeats, so a model that learns as it goes predicts its later turns.
    """

    def __init__(self, length: int = 24, period: int = 4, cells: int = 6, values: int = 5) -> None:
        self.observation_space = spaces.MultiDiscrete([values] * cells)
        self.action_space = spaces.Discrete(2)
        rng = np.random.default_rng(7)
        self.cycle = rng.integers(0, values, size=(period, cells))
        self.length, self.t = length, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.cycle[0].copy(), {}

    def step(self, action):
        self.t += 1
        obs = self.cycle[self.t % len(self.cycle)].copy()
        return obs, 0.0, False, self.t >= self.length, {}


def make_agent(memory: str = "window") -> DevelopmentalAgent:
    cfg = OmegaConf.structured(DevelopmentalConfig(n_steps=16, batch_size=32, shield_tau=1.0))
    cfg.core.window = 4
    cfg.memory.variant = memory
    env = gymnasium.vector.SyncVectorEnv([RepeatedPattern])
    return DevelopmentalAgent(cfg, env, seed=0, device="cpu", writer=None)


def play(policy: DynamicEvalPolicy, episodes: int = 1) -> None:
    """Episodes of RepeatedPattern through ``run_episodes`` (which calls ``policy.observe``)."""
    if PATTERN_ID not in gymnasium.registry:
        gymnasium.register(PATTERN_ID, entry_point=RepeatedPattern)
    run_episodes(policy, PATTERN_ID, episodes, num_envs=1, seed=0)


def test_dynamic_eval_lowers_world_model_loss_on_a_repeated_pattern() -> None:
    torch.manual_seed(0)
    agent = make_agent()
    policy = DynamicEvalPolicy(agent, DynamicEvalConfig(lr=3e-3, steps=2))
    play(policy)
    static, dynamic = np.array(policy.losses_static), np.array(policy.losses_dynamic)
    assert len(static) == 24  # every real transition of the episode is scored, the autoreset step is not
    # the first transition is scored before any learning: both networks are the saved one there
    assert dynamic[0] == pytest.approx(static[0], rel=1e-5)
    # after a few turns of the cycle the adapting copy predicts far better than the saved network
    late = slice(12, None)
    assert dynamic[late].mean() < 0.5 * static[late].mean(), (dynamic[late].mean(), static[late].mean())
    summary = policy.summary()
    assert summary["wm_loss_dynamic"] < summary["wm_loss_static"]


def test_each_episode_starts_from_the_saved_weights_and_the_agent_is_untouched() -> None:
    agent = make_agent()
    before = {k: v.clone() for k, v in agent.net.state_dict().items()}
    policy = DynamicEvalPolicy(agent, DynamicEvalConfig(lr=3e-3, steps=2))
    play(policy, episodes=2)
    static, dynamic = policy.losses_static, policy.losses_dynamic
    assert len(static) == 48
    # the second episode's first transition is scored by the reset copy: no carry-over between episodes
    assert dynamic[24] == pytest.approx(static[24], rel=1e-5)
    assert dynamic[23] < static[23]
    for key, value in agent.net.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_sleep_pulls_the_weights_back_to_the_saved_ones() -> None:
    agent = make_agent()
    awake = DynamicEvalPolicy(agent, DynamicEvalConfig(lr=3e-3))
    asleep = DynamicEvalPolicy(agent, DynamicEvalConfig(lr=3e-3, sleep=1.0))
    play(awake)
    play(asleep)

    def distance(policy: DynamicEvalPolicy) -> float:
        return sum(
            float((p.detach() - p0).norm())
            for p, p0 in zip(policy.params, policy.initial_params, strict=True)
        )

    assert distance(awake) > 0
    assert distance(asleep) == pytest.approx(0.0, abs=1e-6)  # sleep=1 undoes every step
    assert np.mean(asleep.losses_dynamic) == pytest.approx(np.mean(asleep.losses_static), rel=1e-4)


def test_checkpoint_is_byte_identical_after_a_dynamic_eval(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_module

    from devlearn.agents import make_agent as build_agent
    from devlearn.agents import observation_wrappers
    from devlearn.app.cli import main
    from devlearn.config import register_configs
    from devlearn.envs.vector.make import make_vector_env

    # a run folder as `devlearn train` leaves it: the composed config and a checkpoint
    register_configs()
    with initialize_config_module("devlearn.configs", version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "env=cliff",
                "+env.kwargs.max_steps=20",
                "env.num_envs=1",
                "agent.core.window=2",
                "device=cpu",
            ],
        )
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    env = make_vector_env(cfg.env.id, 1, wrappers=observation_wrappers("developmental", cfg.env.id))
    build_agent(cfg.agent, env, 0, "cpu", None).save(run_dir)
    env.close()

    checkpoint = run_dir / CHECKPOINT
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    mtime = checkpoint.stat().st_mtime_ns
    main(
        ["eval", f"run_dir={run_dir}", "split=heldout", "episodes=1", "dynamic_eval=true", "dynamic_steps=2"]
    )
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == digest
    assert checkpoint.stat().st_mtime_ns == mtime
    result = json.loads((run_dir / "eval-heldout-dynamic.json").read_text())
    assert result["dynamic_eval"]["wm_transitions"] > 0
    assert result["dynamic_eval"]["steps"] == 2


def test_dynamic_eval_options_are_checked(tmp_path: Path, capsys) -> None:
    from devlearn.app.cli import main

    with pytest.raises(SystemExit):
        main(["eval", f"run_dir={tmp_path}", "dynamic_lr=0.01"])
    assert "add dynamic_eval=true" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", f"run_dir={tmp_path}", "dynamic_eval=true", "dynamic_sleep=2"])
    assert "dynamic_sleep=2.0 must be in [0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", f"run_dir={tmp_path}", "dynamic_eval=true", "dynamic_stesp=2"])
    assert "Did you mean 'dynamic_steps'?" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="needs a world model"):
        agent = make_agent()
        agent.wm = None
        DynamicEvalPolicy(agent)


def test_a_run_with_memory_is_refused_in_one_line() -> None:
    """Dynamic evaluation builds its own windows, without memory tokens: it must not evaluate a model that needs them."""
    with pytest.raises(ConfigError, match="dynamic evaluation does not replay memory; this run has memory=hybrid"):
        DynamicEvalPolicy(make_agent("hybrid"))
