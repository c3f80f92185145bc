"""Resume identifies a run by its config, refuses to mix experiments, and continues the run's counters."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from devlearn import checkpoint
from devlearn.app.launch import compose_run, prepare
from devlearn.app.resume import check_checkpoint, differences, find_resumable
from devlearn.errors import ConfigError
from devlearn.logging.runlog import Diverged, RunLog

DEVLEARN = str(Path(sys.executable).parent / "devlearn")
SMALL = [
    "agent=ppo",
    "agent.n_steps=32",
    "agent.batch_size=64",
    "env.num_envs=4",
    "log.eval_episodes=2",
    "log.video=false",
]


def fake_run(root: Path, name: str, overrides: list[str]) -> Path:
    """A run folder as `devlearn train` leaves it: the composed config and a (valid) checkpoint file."""
    cfg, _ = compose_run(overrides)
    run_dir = root / name
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    checkpoint.save({"w": torch.ones(2)}, run_dir / "checkpoint.pt")
    return run_dir


def requested(overrides: list[str]):
    return compose_run(overrides)[0]


def test_run_folders_are_named_by_env_id():
    _, run_dir = compose_run(["env=gym", "env.id=MiniGrid-DoorKey-5x5-v0", "agent=ppo", "seed=3"])
    assert run_dir.name.startswith("MiniGrid-DoorKey-5x5-v0-ppo-seed3-")
    _, run_dir = compose_run(["env=cliff"])
    assert run_dir.name.startswith("devlearn_CliffEdge-v0-developmental-seed0-")  # no slash in a folder name


def test_free_keys_do_not_count_as_differences():
    a = requested(["agent=ppo"])
    b = requested(["agent=ppo", "agent.total_timesteps=7", "log.video=false", "resume=true", "checkpoint_every=5"])
    assert differences(a, b) == {}
    c = requested(["agent=ppo", "agent.learning_rate=0.1", "env.kwargs.slip=0.2"])
    assert set(differences(a, c)) == {"agent.learning_rate", "env.kwargs.slip"}


def test_resume_picks_the_run_with_the_same_config_not_the_newest_name(tmp_path):
    same = fake_run(tmp_path, "a-run", ["agent=ppo", "env.kwargs.slip=0.1"])
    time.sleep(0.05)
    fake_run(tmp_path, "b-newer-other-seed", ["agent=ppo", "env.kwargs.slip=0.1", "seed=1"])
    fake_run(tmp_path, "c-newer-other-env", ["agent=ppo", "env=carwash"])
    cfg = requested(["agent=ppo", "env.kwargs.slip=0.1", "resume=true", "agent.total_timesteps=99"])
    assert find_resumable(cfg, tmp_path) == same


def test_structural_difference_is_refused_in_one_line_naming_the_key(tmp_path):
    fake_run(tmp_path, "run", ["agent=ppo"])
    for mode in ("true", "force"):
        cfg = requested(["agent=ppo", "env.kwargs.slip=0.2", "agent.hidden_sizes=[8]", f"resume={mode}"])
        with pytest.raises(ConfigError) as err:
            find_resumable(cfg, tmp_path)
        message = str(err.value)
        assert "\n" not in message and "structural keys" in message
        assert "env.kwargs.slip (0.0 -> 0.2)" in message and "agent.hidden_sizes ([128, 128] -> [8])" in message


def test_other_differences_need_resume_force(tmp_path, capsys):
    run = fake_run(tmp_path, "run", ["agent=ppo"])
    cfg = requested(["agent=ppo", "agent.learning_rate=0.001", "resume=true"])
    with pytest.raises(ConfigError, match=r"agent.learning_rate \(0.0003 -> 0.001\). resume=force continues"):
        find_resumable(cfg, tmp_path)
    cfg = requested(["agent=ppo", "agent.learning_rate=0.001", "resume=force"])
    assert find_resumable(cfg, tmp_path) == run
    assert "resume=force: continuing" in capsys.readouterr().out


def test_no_matching_run_is_one_line(tmp_path):
    fake_run(tmp_path, "run", ["agent=ppo", "seed=1"])
    with pytest.raises(ConfigError, match="no run of env.id=devlearn/CliffEdge-v0 agent=ppo seed=0"):
        find_resumable(requested(["agent=ppo", "resume=true"]), tmp_path)


def test_a_named_run_is_that_run_or_a_refusal_never_a_sibling(tmp_path):
    """hydra.run.dir=ck3/typo_run resume=true once trained the run beside it; hydra.run.dir=ck/nope named ck/empty."""
    sibling = fake_run(tmp_path, "typo_run2", ["agent=ppo"])
    (tmp_path / "empty" / ".hydra").mkdir(parents=True)  # a folder with a config and no checkpoint
    OmegaConf.save(requested(["agent=ppo"]), tmp_path / "empty" / ".hydra" / "config.yaml")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    cfg = requested(["agent=ppo", "resume=true"])
    with pytest.raises(ConfigError) as err:
        find_resumable(cfg, tmp_path, tmp_path / "typo_run")
    assert str(err.value) == (
        f"hydra.run.dir={tmp_path / 'typo_run'} does not exist, so resume=true has nothing to continue there. "
        f"Did you mean hydra.run.dir={sibling}? Drop resume to start a new run in that folder."
    )
    with pytest.raises(ConfigError, match=r"empty holds no checkpoint \(checkpoint.pt or checkpoint.zip\), so resume"):
        find_resumable(cfg, tmp_path, tmp_path / "empty")
    assert find_resumable(cfg, tmp_path, sibling) == sibling  # the folder named, when it holds a run
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before  # nothing was written anywhere


def test_resume_alone_takes_the_newest_matching_run_and_says_which(tmp_path, capsys):
    fake_run(tmp_path, "older", ["agent=ppo"])
    time.sleep(0.05)
    newer = fake_run(tmp_path, "newer", ["agent=ppo"])
    assert find_resumable(requested(["agent=ppo", "resume=true"]), tmp_path) == newer
    assert capsys.readouterr().out.strip() == (
        f"devlearn: resume=true: continuing {newer} (the newest of 2 runs of env.id=devlearn/CliffEdge-v0 agent=ppo "
        "seed=0 there; hydra.run.dir=PATH names another)"
    )


def test_a_new_run_in_a_folder_that_holds_one_is_refused(tmp_path):
    run = fake_run(tmp_path, "run", ["agent=ppo"])
    with pytest.raises(ConfigError, match=f"hydra.run.dir={run} already holds a run. resume=true continues it"):
        prepare(["agent=ppo", f"hydra.run.dir={run}"])


def test_a_corrupt_stored_config_is_named_with_where_its_yaml_breaks(tmp_path):
    run = fake_run(tmp_path, "run", ["agent=ppo"])
    (run / ".hydra" / "config.yaml").write_text("env:\n  id: [devlearn/CliffEdge-v0\nagent: {name: ppo\n")
    with pytest.raises(ConfigError) as err:
        find_resumable(requested(["agent=ppo", "resume=true"]), tmp_path, run)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{run}/.hydra/config.yaml is not valid YAML (")
    assert " at line " in message and len(message) - len(str(run)) < 250, message


@pytest.mark.parametrize("name", ["checkpoint.pt", "checkpoint.zip"])
def test_truncated_checkpoint_is_detected(tmp_path, name):
    checkpoint.save({"w": torch.randn(1000)}, tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    check_checkpoint_dir = tmp_path / "run"
    check_checkpoint_dir.mkdir()
    (check_checkpoint_dir / name).write_bytes(data)
    check_checkpoint(check_checkpoint_dir)  # a whole file passes
    (check_checkpoint_dir / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="is truncated or corrupt"):
        check_checkpoint(check_checkpoint_dir)


def test_runlog_counters_round_trip_and_wall_time_continues():
    log = RunLog(None, 100, progress=False)
    log.episodes([{"return": 1.0, "length": 3, "cost": 0.5, "catastrophe": True, "success": False}] * 3)
    log.rollback(10, "non-finite loss")
    state = log.state_dict()
    state["train_seconds"] = 100.0
    resumed = RunLog(None, 100, progress=False)
    resumed.load_state_dict(state)
    assert (resumed.episodes_total, resumed.catastrophes_total, resumed.cost_total) == (3, 3, 1.5)
    assert resumed.rollbacks_total == 1 and len(resumed.recent) == 3
    assert 100.0 <= resumed.train_seconds() < 110.0
    assert resumed.headline()["catastrophe_rate"] == 1.0


def test_consecutive_rollbacks_stop_the_run_and_a_good_update_resets_the_count():
    log = RunLog(None, 100, progress=False, max_rollbacks=3)
    for step in range(2):
        log.rollback(step, "non-finite loss")
        log.rollout_end(step)
    log.rollout_end(2)  # an update went through: the streak is over
    for step in range(3, 5):
        log.rollback(step, "non-finite loss")
        log.rollout_end(step)
    with pytest.raises(Diverged, match="3 updates in a row ended in non-finite loss at step 5.*learning_rate"):
        log.rollback(5, "non-finite loss")
    assert log.rollbacks_total == 5


def _scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


@pytest.mark.parametrize("agent", ["ppo", "developmental"])
def test_counters_continue_across_a_resume(tmp_path, agent):
    run_dir = tmp_path / "runs" / "r"
    small = [f"agent={agent}", *SMALL[1:]]
    first = [DEVLEARN, "train", *small, "agent.total_timesteps=256", f"hydra.run.dir={run_dir}"]
    subprocess.run(first, cwd=tmp_path, check=True, capture_output=True, timeout=600)
    before = json.loads((run_dir / "results.json").read_text())
    second = [DEVLEARN, "train", *small, "agent.total_timesteps=512", "resume=true"]
    out = subprocess.run(second, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r"]  # no junk folder from the resume
    after = json.loads((run_dir / "results.json").read_text())
    assert after["resumes"] == 1 and after["env_steps"] == 512
    assert after["training"]["episodes"] > before["training"]["episodes"] > 0
    assert after["training"]["catastrophes"] >= before["training"]["catastrophes"]
    assert after["train_seconds"] > before["train_seconds"]  # the whole run's training time, not the last part
    totals = [v for _, v in sorted(_scalars(run_dir, "rollout/episodes_total"))]
    assert totals == sorted(totals) and totals[-1] == after["training"]["episodes"]  # never back to zero


def test_resume_finds_each_seeds_run_inside_an_earlier_sweep(tmp_path):
    sweep = tmp_path / "multirun-20260101-000000"
    zero = fake_run(sweep, "cliff-ppo-seed0-0", ["agent=ppo", "seed=0"])
    one = fake_run(sweep, "cliff-ppo-seed1-1", ["agent=ppo", "seed=1"])
    assert find_resumable(requested(["agent=ppo", "seed=1", "resume=true"]), tmp_path) == one
    assert find_resumable(requested(["agent=ppo", "seed=0", "resume=true"]), tmp_path) == zero


def test_resume_in_a_multirun_continues_each_jobs_own_run(tmp_path):
    """`devlearn train -m seed=0,1 resume=true` looked only in its own new sweep folder and failed."""
    small = [*SMALL, "agent.total_timesteps=128"]
    first = subprocess.run([DEVLEARN, "train", "-m", "seed=0,1", *small], cwd=tmp_path, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    (old_sweep,) = (tmp_path / "runs").iterdir()
    runs = {json.loads((d / "results.json").read_text())["seed"]: d for d in old_sweep.iterdir() if d.is_dir()}
    time.sleep(1.1)  # the next sweep gets its own folder (named by the second)
    second = [DEVLEARN, "train", "-m", "seed=0,1", *small, "agent.total_timesteps=256", "resume=true"]
    out = subprocess.run(second, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    for seed, run_dir in runs.items():
        results = json.loads((run_dir / "results.json").read_text())
        assert (results["seed"], results["resumes"], results["env_steps"]) == (seed, 1, 256)
        assert f"resuming {run_dir.relative_to(tmp_path)} at step 128" in out.stdout
    (new_sweep,) = set((tmp_path / "runs").iterdir()) - {old_sweep}
    jobs = [d for d in new_sweep.iterdir() if d.is_dir()]
    assert len(jobs) == 2 and all(d.is_symlink() for d in jobs)  # no junk folders: links to the resumed runs
    assert sorted(d.resolve() for d in jobs) == sorted(d.resolve() for d in runs.values())
