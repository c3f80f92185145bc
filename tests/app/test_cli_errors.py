"""Every refusal of `devlearn` is one line (exit 2, no traceback), before any run folder exists; Ctrl-C saves."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from devlearn import checkpoint
from devlearn.app.launch import compose_run, normalize_overrides

DEVLEARN = [str(Path(sys.executable).parent / "devlearn")]
TINY = [
    "agent.total_timesteps=256",
    "agent.n_steps=32",
    "agent.batch_size=64",
    "env.num_envs=4",
    "log.eval_episodes=2",
    "log.video=false",
]


def run(args, cwd, env=None, timeout=600):
    return subprocess.run(DEVLEARN + args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def start(args, run_dir, cwd) -> subprocess.Popen:
    """`devlearn *args` in the background, to be sent Ctrl-C.

    The child gets SIGINT's default disposition back: a shell starts background jobs with SIGINT ignored, and
    Python then installs no KeyboardInterrupt handler, so a suite run in the background would never see Ctrl-C.
    """
    return subprocess.Popen(
        [*DEVLEARN, *args, f"hydra.run.dir={run_dir}"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def assert_one_line(out, message):
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1 and lines[0].startswith("devlearn: error: "), out.stderr
    assert message in lines[0], lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["env.kwargs.slip=2"], "env.kwargs.slip=2: slip must be a probability in [0, 1); got 2."),
        (["env.kwargs.max_stepz=3"], "no keyword argument 'max_stepz'. Did you mean 'max_steps'?"),
        (["env=gym"], "env=gym needs env.id, e.g. devlearn train env=gym env.id="),
        (["seed=-1"], "seed=-1 must be an integer >= 0."),
        (["env=gym", "env.id=Pendulum-v1"], "agent=developmental needs a Discrete action space; Pendulum-v1 has Box"),
        (["log.eval_episodes=0"], "log.eval_episodes=0 must be >= 1"),
        (["agent.shield_tau=5"], "agent.shield_tau=5.0 must be in [0, 1]"),
        (["resume=maybe"], "resume='maybe' is not allowed. Allowed values: false, true, force."),
        (["max_rollbacks=0"], "max_rollbacks=0 must be >= 1."),
        (["agent.n_steps=many"], "agent.n_steps=many must be an integer."),
        (["resume=true"], "no run of env.id=devlearn/CliffEdge-v0 agent=developmental seed=0"),
        (["env.id=nope:Env-v0"], "Cannot import module 'nope' (named before ':' in 'nope:Env-v0')"),
        (["memory=hybird"], "memory='hybird' is not allowed. Did you mean 'hybrid'? Allowed values: none, window"),
        (["agent=ppo", "memory=ssm"], "memory= sets the developmental agent's memory; agent=ppo has none."),
        (["memory=hybrid", "agent.memory.k=0"], "agent.memory.k=0 must be > 0."),
        (["memory=hybrid", "agent.memory.gist_horizon=-1"], "agent.memory.gist_horizon=-1 must be >= 0"),
        (["memory=hybrid", "agent.memory.capacity=1000000000"], "agent.memory.capacity=1000000000 needs"),
        (["agent=ablation", "agent.memory.write=surprise"], "agent.memory.write=surprise needs a world model"),
        (["agent.intrinsic=novelyt"], "agent.intrinsic='novelyt' is not allowed. Did you mean 'novelty'? Allowed values: none, novelty, surprise."),
        (["agent=ppo", "agent.intrinsic=surprise", "agent.intrinsic_coef=0.1"], "agent.intrinsic=surprise needs a world model"),
        (["agent=ablation", "agent.intrinsic=surprise", "agent.intrinsic_coef=0.1"], "agent.intrinsic=surprise needs a world model"),
        (["agent.intrinsic_coef=-1"], "agent.intrinsic_coef=-1.0 must be >= 0."),
        (["agent.novelty_bits=64"], "agent.novelty_bits=64 must be in 1..63"),
    ],
)
def test_refusals_are_one_line_and_leave_no_folder(tmp_path, args, message):
    out = run(["train", *TINY, *args], tmp_path, timeout=120)  # the case's value last: it wins
    assert_one_line(out, message)
    assert "Traceback" not in out.stderr and not (tmp_path / "runs").exists()


def test_devlearn_debug_shows_the_traceback(tmp_path):
    out = run(["train", "seed=-1"], tmp_path, env={**os.environ, "DEVLEARN_DEBUG": "1"})
    assert out.returncode != 0 and "Traceback" in out.stderr and "seed=-1 must be" in out.stderr


def test_env_kwargs_need_no_plus():
    cfg, _ = compose_run(normalize_overrides(["env.kwargs.max_steps=50", "env.kwargs.slip=0.1"]))
    assert cfg.env.kwargs.max_steps == 50 and cfg.env.kwargs.slip == 0.1 and cfg.env.kwargs.split == "train"


def corrupt_run(root: Path, name: str, agent: str) -> Path:
    """A run folder with its config and a checkpoint cut in half (a kill or a full disk mid-write)."""
    cfg, _ = compose_run([f"agent={agent}", *TINY])
    run_dir = root / "runs" / "r"
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    checkpoint.save({"w": torch.randn(4000)}, root / "whole")
    data = (root / "whole").read_bytes()
    (run_dir / name).write_bytes(data[: len(data) // 2])
    return run_dir


@pytest.mark.parametrize("name, agent", [("checkpoint.pt", "developmental"), ("checkpoint.zip", "ppo")])
def test_truncated_checkpoint_on_eval_and_resume_is_one_line(tmp_path, name, agent):
    run_dir = corrupt_run(tmp_path, name, agent)
    out = run(["eval", f"run_dir={run_dir}", "episodes=2"], tmp_path)
    assert_one_line(out, f"{run_dir / name} is truncated or corrupt")
    out = run(["train", f"agent={agent}", *TINY, "resume=true"], tmp_path)
    assert_one_line(out, f"{name} is truncated or corrupt")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r"]


def test_ctrl_c_saves_and_prints_the_resume_command(tmp_path):
    run_dir = tmp_path / "runs" / "killed"
    args = ["train", "agent=ppo", *TINY[1:], "agent.total_timesteps=1000000", "checkpoint_every=64"]
    proc = start(args, run_dir, tmp_path)
    deadline = time.time() + 300
    while not (run_dir / "checkpoint.zip").is_file() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # well into training
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "Continue with:" in stderr
    command = stderr.strip().splitlines()[-1].strip()
    assert command.startswith("devlearn train agent=ppo") and command.endswith(
        f"hydra.run.dir={run_dir} resume=true"
    )
    # the printed command continues the run (with a smaller budget so the test ends)
    out = run([*command.split()[1:], "agent.total_timesteps=64"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"resuming {run_dir} at step" in out.stdout
    # and `devlearn eval --json` reads the run
    out = run(["eval", f"run_dir={run_dir}", "split=heldout", "episodes=2", "--json"], tmp_path)
    assert out.returncode == 0 and json.loads(out.stdout)["episodes"] == 2


def test_ctrl_c_in_the_final_evaluation_keeps_the_checkpoint_and_says_how_to_evaluate(tmp_path):
    run_dir = tmp_path / "runs" / "trained"
    args = ["train", "agent=ppo", *TINY[1:], "agent.total_timesteps=128", "log.eval_episodes=100000"]
    proc = start(args, run_dir, tmp_path)
    shown = ""
    while "eval train argmax" not in shown:  # the evaluation's progress line: training is over
        line = proc.stdout.readline()
        assert line, "the run ended before its evaluation showed progress"
        shown += line
    saved = (run_dir / "checkpoint.zip").read_bytes()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("devlearn: interrupted during the final evaluation; training finished at step 128")
    command = lines[0].split("Evaluate it later with: ")[1]
    assert command == f"devlearn eval run_dir={run_dir} split=heldout"
    assert (run_dir / "checkpoint.zip").read_bytes() == saved  # the trained model is kept as it was
    results = json.loads((run_dir / "results.json").read_text())
    assert results["env_steps"] == 128 and "final evaluation" in results["stopped"] and "eval" not in results
    # the printed command evaluates it, with a progress line per policy
    out = run([*command.split()[1:], "episodes=2"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "eval heldout argmax: 2/2 episodes" in out.stdout and "eval heldout sampled: 2/2 episodes" in out.stdout
    assert re.search(r"^heldout argmax\s+-?\d", out.stdout, flags=re.M), out.stdout


def test_endless_rollbacks_stop_the_run_in_one_line(tmp_path):
    args = [*TINY[1:], "agent.learning_rate=1e6", "max_rollbacks=2", "agent.total_timesteps=2048"]
    out = run(["train", *args], tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert "training diverged: 2 updates in a row ended in non-finite" in lines[0] and "agent.learning_rate" in lines[0]
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["training"]["rollbacks"] == 2 and "diverged" in results["stopped"]
