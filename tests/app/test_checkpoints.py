"""Checkpoints: atomic, weights-only, resumable after a kill, and never overwritten by a diverged update."""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from devlearn import checkpoint
from devlearn.agents import make_agent
from devlearn.config import AGENT_SCHEMAS
from devlearn.envs.vector.make import make_vector_env
from devlearn.logging.runlog import RunLog

DEVLEARN = str(Path(sys.executable).parent / "devlearn")
SMALL = [
    "agent=ppo",
    "agent.n_steps=32",
    "agent.batch_size=64",
    "env.num_envs=4",
    "log.eval_episodes=2",
    "log.video=false",
]


def test_save_is_atomic_and_load_is_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    checkpoint.save({"w": torch.ones(3), "step": 7}, path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        checkpoint.save({"w": torch.zeros(3), "step": 8}, path)
    monkeypatch.undo()
    state = checkpoint.load(path)  # the old checkpoint survived the failed write
    assert state["step"] == 7 and torch.equal(state["w"], torch.ones(3))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        checkpoint.load(tmp_path / "evil.pt")


def test_rng_state_round_trips():
    state = checkpoint.rng_state()
    a = (np.random.rand(), torch.rand(1).item())
    checkpoint.set_rng_state(state)
    assert (np.random.rand(), torch.rand(1).item()) == a


def small_agent(tmp_path, name="ppo"):
    cfg = OmegaConf.structured(AGENT_SCHEMAS[name](n_steps=32, batch_size=64, n_epochs=1))
    env = make_vector_env("devlearn/CliffEdge-v0", 4)
    writer = SummaryWriter(str(tmp_path / "tb"))
    return make_agent(cfg, env, seed=0, device="cpu", writer=writer), RunLog(writer, 256, progress=False)


@pytest.mark.parametrize("name", ["ppo", "recurrent_ppo"])
def test_nan_update_is_rolled_back_not_saved(tmp_path, name):
    agent, log = small_agent(tmp_path, name)
    agent.learn(128, log, tmp_path, checkpoint_every=64)
    good = checkpoint.all_finite(agent.model.policy)
    with torch.no_grad():
        next(agent.model.policy.parameters()).fill_(float("nan"))  # a diverged update
    agent.learn(256, log, tmp_path, checkpoint_every=64)
    assert good and agent.rollbacks == 1
    assert checkpoint.all_finite(agent.model.policy)
    agent.load(tmp_path)  # what is on disk is finite too
    assert checkpoint.all_finite(agent.model.policy) and agent.num_timesteps >= 256


def test_resume_continues_at_the_saved_step(tmp_path):
    run_dir = tmp_path / "runs" / "cliff-ppo-seed0-first"
    first = [DEVLEARN, "train", *SMALL, "agent.total_timesteps=256", f"hydra.run.dir={run_dir}"]
    subprocess.run(first, cwd=tmp_path, check=True, capture_output=True, timeout=600)
    steps = json.loads((run_dir / "results.json").read_text())["env_steps"]
    second = [DEVLEARN, "train", *SMALL, "agent.total_timesteps=512", "resume=true"]
    out = subprocess.run(second, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"resuming {run_dir} at step {steps:,}" in out.stdout
    assert json.loads((run_dir / "results.json").read_text())["env_steps"] == 512


@pytest.mark.parametrize("agent", ["ppo", "developmental"])
def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, agent):
    run_dir = tmp_path / "runs" / f"cliff-{agent}-seed0-killed"
    small = [a if a != "agent=ppo" else f"agent={agent}" for a in SMALL]
    args = [DEVLEARN, "train", *small, "agent.total_timesteps=1000000", "checkpoint_every=256"]
    proc = subprocess.Popen([*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path, stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _saved_steps(run_dir) < 256 and time.time() < deadline:  # a periodic checkpoint, past the first
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved_step = _saved_steps(run_dir)
    assert saved_step >= 256
    out = subprocess.run(
        [*args[:-2], "agent.total_timesteps=" + str(saved_step + 128), "resume=true"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert f"at step {saved_step:,}" in out.stdout
    # the killed session's points past its checkpoint were dropped: the curves never double back (purge_step)
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if (p / "tb").is_dir()]
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    for tag in ("rollout/episodes_total", "time/steps_per_s"):
        steps = [e.step for e in events.Scalars(tag)]
        assert steps == sorted(set(steps)), (tag, steps)
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 2  # both sessions wrote


def _saved_steps(run_dir: Path) -> int:
    """The step of the checkpoint on disk: SB3's zip, or the developmental agent's checkpoint.pt."""
    try:
        if (run_dir / "checkpoint.pt").is_file():
            return int(checkpoint.load(run_dir / "checkpoint.pt")["num_timesteps"])
        with zipfile.ZipFile(run_dir / "checkpoint.zip") as z:
            return int(json.loads(z.read("data"))["num_timesteps"])
    except (FileNotFoundError, KeyError, zipfile.BadZipFile, EOFError, RuntimeError):
        return 0


def test_memory_round_trips_and_a_resumed_run_starts_with_empty_memory(tmp_path):
    """Memory's parameters are in the checkpoint; its state is not: a resumed run restarts its envs, so
    every episode (and its memory) begins afresh (README: "Memory")."""
    cfg = OmegaConf.structured(AGENT_SCHEMAS["developmental"](n_steps=32, batch_size=64, n_epochs=1))
    cfg.memory.variant = "hybrid"
    writer = SummaryWriter(str(tmp_path / "tb"))
    agent = make_agent(cfg, make_vector_env("devlearn/Recall-v0", 4, delay=200), 0, "cpu", writer)
    agent.learn(384, RunLog(writer, 384, progress=False), tmp_path, checkpoint_every=64)
    assert int(agent.context.memory_state.t.min()) == 96  # 3 rollouts of 32 steps into 200-step episodes
    saved = {k: v.clone() for k, v in agent.net.memory.state_dict().items()}

    again = make_agent(cfg, make_vector_env("devlearn/Recall-v0", 4, delay=200), 1, "cpu", writer)
    assert not all(torch.equal(again.net.memory.state_dict()[k], v) for k, v in saved.items())
    again.load(tmp_path)
    for k, v in again.net.memory.state_dict().items():
        assert torch.equal(v, saved[k]), k
    again.learn(400, RunLog(writer, 400, progress=False), tmp_path, checkpoint_every=64)
    # one rollout (32 steps per env) after the restart: memory holds only the new episodes' steps
    state = again.context.memory_state
    assert int(state.t.max()) == 32 and int(state.store.size.max()) == 33
