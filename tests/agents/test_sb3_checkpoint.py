"""SB3's checkpoint.zip is loaded without unpickling: a pickled field that would run code never runs."""

import base64
import json
import zipfile
from pathlib import Path

import cloudpickle
import pytest
from omegaconf import OmegaConf
from stable_baselines3 import PPO

from devlearn.agents.sb3.agent import SB3Agent
from devlearn.config import AGENT_SCHEMAS
from devlearn.envs.vector.make import make_vector_env


class Touch:
    """Unpickling this creates ``path``: the proof that code from the file ran."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def sb3_agent(name="ppo", **overrides):
    cfg = OmegaConf.structured(AGENT_SCHEMAS[name](n_steps=32, batch_size=64, n_epochs=1, **overrides))
    return SB3Agent(name, make_vector_env("devlearn/CliffEdge-v0", 2), cfg, 0, "cpu", None)


def poison(zip_path: Path, key: str, payload: object) -> None:
    """Rewrite ``zip_path``'s ``data`` entry with ``key`` holding a cloudpickled ``payload`` (as SB3 stores objects)."""
    with zipfile.ZipFile(zip_path) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    data = json.loads(entries["data"])
    data[key] = {":type:": "<class 'object'>", ":serialized:": base64.b64encode(cloudpickle.dumps(payload)).decode()}
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(zip_path, "w") as z:
        for name, content in entries.items():
            z.writestr(name, content)


@pytest.mark.parametrize("name", ["ppo", "recurrent_ppo"])
def test_a_pickled_field_that_runs_code_does_not_run(tmp_path, name):
    agent = sb3_agent(name)
    agent.save(tmp_path)
    marker = tmp_path / "pwned"
    poison(tmp_path / "checkpoint.zip", "lr_schedule", Touch(marker))

    sb3_agent(name).load(tmp_path)  # loads, taking lr_schedule from the config
    assert not marker.exists()

    if name == "ppo":  # the same file through SB3's own loader does run the code: the test can fail
        PPO.load(tmp_path / "checkpoint.zip")
        assert marker.exists()


def test_an_unknown_pickled_field_is_refused_without_running(tmp_path):
    sb3_agent().save(tmp_path)
    marker = tmp_path / "pwned"
    poison(tmp_path / "checkpoint.zip", "surprise", Touch(marker))
    with pytest.raises(ValueError, match="pickled field 'surprise'"):
        sb3_agent().load(tmp_path)
    assert not marker.exists()


def test_hyperparameters_come_from_the_config_on_load(tmp_path):
    sb3_agent().save(tmp_path)
    agent = sb3_agent(learning_rate=0.002, ent_coef=0.5)
    agent.load(tmp_path)
    assert agent.model.learning_rate == 0.002 and agent.model.lr_schedule(1.0) == 0.002
    assert agent.model.ent_coef == 0.5
