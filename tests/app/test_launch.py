"""The Python API ``devlearn.train(env=..., agent=..., **overrides)`` and "Did you mean" without repeats."""

import json

import pytest

import devlearn
from devlearn.errors import ConfigError
from devlearn.registry import RegistryError


def test_python_api_trains_and_returns_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = devlearn.train(
        env="cliff",
        agent="ppo",
        seed=2,
        agent__total_timesteps=128,
        overrides={"agent.n_steps": 32, "agent.batch_size": 64, "env.num_envs": 4, "env.kwargs.slip": 0.1},
        log__eval_episodes=2,
        log__video=False,
        log__progress_bar=False,
    )
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("devlearn_CliffEdge-v0-ppo-seed2-")
    assert results["env_steps"] == 128 and results["seed"] == 2
    assert results == json.loads((run_dir / "results.json").read_text())
    assert "slip: 0.1" in (run_dir / ".hydra" / "config.yaml").read_text()  # what eval and resume read


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"seed": -1}, ConfigError, "seed=-1 must be an integer >= 0."),
        ({"agent": "ppo", "agent__shield_tau": 0.1}, ConfigError, "it belongs to agent=developmental"),
        ({"env": "gym", "env__id": "CartPol-v1"}, RegistryError, "Did you mean 'CartPole-v1' or"),
    ],
)
def test_python_api_refuses_before_any_folder(tmp_path, monkeypatch, kwargs, error, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=message.replace("(", r"\(").replace("?", r"\?")):
        devlearn.train(**kwargs)
    assert not (tmp_path / "runs").exists()


def test_did_you_mean_lists_each_id_once():
    with pytest.raises(RegistryError) as err:
        devlearn.spec("devlearn/CliffEdg-v0")
    assert str(err.value).count("'devlearn/CliffEdge-v0'") == 1
