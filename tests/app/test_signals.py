"""Stop signals (what SLURM, Kubernetes, submitit and `timeout` send before a kill) and time-based checkpoints.

SIGTERM during `devlearn train` checkpoints at the next safe point, prints one line and the command that
continues the run, and exits 143; the command continues from the saved step, and TensorBoard keeps one point
per step across the two sessions. In-process: the signal handlers, and both agents' learn loops honouring a
stop request and `checkpoint_every_s`.
"""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from devlearn import checkpoint
from devlearn.agents import make_agent
from devlearn.app import signals
from devlearn.config import AGENT_SCHEMAS
from devlearn.envs.vector.make import make_vector_env
from devlearn.errors import Stopped
from devlearn.logging.runlog import RunLog

DEVLEARN = str(Path(sys.executable).parent / "devlearn")
SMALL = ["agent=ppo", "agent.n_steps=32", "agent.batch_size=64", "env.num_envs=4", "log.eval_episodes=2", "log.video=false"]


def saved_step(run_dir: Path) -> int:
    """The step of the checkpoint on disk (SB3's zip, or the developmental agent's checkpoint.pt)."""
    if (run_dir / "checkpoint.pt").is_file():
        return int(checkpoint.load(run_dir / "checkpoint.pt")["num_timesteps"])
    with zipfile.ZipFile(run_dir / "checkpoint.zip") as z:
        return int(json.loads(z.read("data"))["num_timesteps"])


def tensorboard_steps(run_dir: Path, tag: str) -> list[int]:
    """The steps TensorBoard shows for ``tag`` (after its purge of a resumed session's replaced points)."""
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


def test_sigterm_after_the_first_rollout_saves_and_the_printed_command_resumes(tmp_path):
    run_dir = tmp_path / "runs" / "preempted"
    args = [DEVLEARN, "train", *SMALL, "agent.total_timesteps=1000000", "log.progress_bar=true"]
    proc = subprocess.Popen(
        [*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for line in proc.stdout:  # the progress line of the first rollout: training is under way
        if "/1,000,000 steps" in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    lines = stderr.strip().splitlines()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and len(lines) == 2, stderr
    assert lines[0].startswith("devlearn: stopped by SIGTERM at step ") and lines[0].endswith(
        f"checkpoint saved in {run_dir}. Continue with:"
    )
    step = int(lines[0].split(" at step ")[1].split(";")[0].replace(",", ""))
    assert step >= 128 and saved_step(run_dir) == step  # past the first rollout, and on disk
    results = json.loads((run_dir / "results.json").read_text())  # the counters so far, and why it stopped
    assert results["env_steps"] == step and "stopped by SIGTERM" in results["stopped"]
    command = lines[1].strip()
    assert command.endswith(f"hydra.run.dir={run_dir} resume=true")

    out = subprocess.run(
        [DEVLEARN, *command.split()[1:], f"agent.total_timesteps={step + 256}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"resuming {run_dir} at step {step:,}" in out.stdout
    results = json.loads((run_dir / "results.json").read_text())
    assert results["env_steps"] >= step + 256 and results["resumes"] == 1 and "stopped" not in results
    steps = tensorboard_steps(run_dir, "rollout/episodes_total")
    assert steps == sorted(set(steps)) and steps[-1] >= step + 256  # one point per step, both sessions


@pytest.fixture
def handlers():
    """The stop signals answered as devlearn train answers them, SIGUSR1's earlier handler recorded."""
    seen = []
    before = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        with signals.answered() as active:
            assert active
            yield seen
    finally:
        signal.signal(signal.SIGUSR1, before)


def test_a_stop_signal_in_training_asks_the_log_outside_it_raises(handlers, monkeypatch):
    log = RunLog(None, 100, progress=False)
    with signals.training(log):
        os.kill(os.getpid(), signal.SIGUSR1)
        assert log.stop_requested and log.stop_signal == signal.SIGUSR1  # no exception: the loop stops itself
        os.kill(os.getpid(), signal.SIGUSR1)  # the same request delivered twice (a parent forwarding it): ignored
        monkeypatch.setattr(signals, "DUPLICATE_S", 0.0)
        with pytest.raises(Stopped):  # a second, later one: stop at once, as Ctrl-C does
            os.kill(os.getpid(), signal.SIGUSR1)
    with pytest.raises(KeyboardInterrupt) as stopped:  # the final evaluation: answered as Ctrl-C
        os.kill(os.getpid(), signal.SIGTERM)
    assert stopped.value.signum == signal.SIGTERM
    signals.forward(signal.SIGUSR1)  # after the save: the handler that was there before (submitit's requeues)
    assert handlers == [signal.SIGUSR1]


def small_agent(tmp_path: Path, name: str):
    cfg = OmegaConf.structured(AGENT_SCHEMAS[name](n_steps=32, batch_size=64, n_epochs=1))
    if name == "developmental":
        cfg.core.window = 4
    return make_agent(cfg, make_vector_env("devlearn/CliffEdge-v0", 4), seed=0, device="cpu", writer=None)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", ["ppo", "developmental"])
def test_learn_checkpoints_every_checkpoint_every_s_and_stops_at_the_safe_point(tmp_path, name, monkeypatch):
    agent = small_agent(tmp_path, name)
    saves = []
    save = agent.save
    monkeypatch.setattr(agent, "save", lambda run_dir: (saves.append(agent.num_timesteps), save(run_dir)))
    # every rollout takes longer than 1 ns: a checkpoint after each, though checkpoint_every is never reached
    log = RunLog(None, 10**6, progress=False, checkpoint_every_s=1e-9)
    agent.learn(3 * 128, log, tmp_path, checkpoint_every=10**9)
    assert saves[:4] == [0, 128, 256, 384], saves  # the first, one per rollout, the last
    saves.clear()
    rollout_end = log.rollout_end
    monkeypatch.setattr(log, "rollout_end", lambda step: (rollout_end(step), log.request_stop(signal.SIGTERM)))
    log.checkpoint_every_s = float("inf")
    agent.learn(10**6, log, tmp_path, checkpoint_every=10**9)  # a stop request during the first rollout's update
    step = agent.num_timesteps
    assert step - 384 in (128, 128 + 4), step  # one rollout (SB3 stops one env step into the next)
    assert saves == [step] and saved_step(tmp_path) == step  # saved once, where it stopped


def test_runlog_says_a_checkpoint_is_due_by_steps_or_seconds(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    log = RunLog(None, 100, progress=False, checkpoint_every_s=600)
    log.checkpointed(0)
    assert not log.checkpoint_due(100, every=1000)
    assert log.checkpoint_due(1000, every=1000) and not log.checkpoint_due(1500, every=1000)
    now[0] += 599
    assert not log.checkpoint_due(1600, every=1000)
    now[0] += 2
    assert log.checkpoint_due(1700, every=1000)  # 600 s since the checkpoint at 1000, 700 steps only


def test_a_resumed_run_drops_the_killed_sessions_points_past_its_checkpoint(tmp_path, monkeypatch):
    """The killed session logged steps 0-10 and checkpointed at 5; the resumed one logs 6-12 again: TensorBoard
    shows each step once, the resumed session's values from step 6 on (``SummaryWriter(purge_step=...)``)."""
    from devlearn.app import run

    first = run._writer(tmp_path, resume=False)
    for step in range(11):
        first.add_scalar("rollout/return", 1.0, step)
    first.close()
    monkeypatch.setattr(run, "checkpoint_step", lambda run_dir: 5)
    second = run._writer(tmp_path, resume=True)
    for step in range(6, 13):
        second.add_scalar("rollout/return", 2.0, step)
    second.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    points = [(e.step, e.value) for e in events.Scalars("rollout/return")]
    assert points == [(s, 1.0) for s in range(6)] + [(s, 2.0) for s in range(6, 13)]


@pytest.mark.parametrize("command", ["eval", "report", "train"])
def test_a_stop_signal_outside_training_is_one_line(command, monkeypatch, capsys):
    from devlearn.app import cli

    def stopped(*args):
        raise Stopped(signal.SIGTERM)

    monkeypatch.setattr(cli, {"eval": "_eval", "report": "report_main", "train": "_prepare_train"}[command], stopped)
    monkeypatch.setattr(cli, "check_overrides", lambda args: None)
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "x=1"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 143 and line.startswith(f"devlearn: SIGTERM stopped devlearn {command}; ")
