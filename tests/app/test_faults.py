"""Filesystem faults lose nothing and are answered in one line: a full disk, read-only and unwritable folders.

Real faults where the machine allows (a tmpfs of a few MB that fills up; a read-only bind mount, since chmod
does not stop root), an injected ``OSError(ENOSPC)`` where it does not.
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from devlearn import checkpoint
from devlearn.app import cli
from devlearn.app.checkpoints import check_checkpoint, checkpoint_step
from devlearn.app.launch import compose_run
from devlearn.errors import StorageError

DEVLEARN = str(Path(sys.executable).parent / "devlearn")
TINY = ["agent=ppo", "agent.n_steps=32", "agent.batch_size=64", "env.num_envs=4", "log.eval_episodes=2", "log.video=false"]


def ppo_run(folder: Path) -> Path:
    """A run folder as devlearn train leaves it, built in-process: the config and an untrained PPO checkpoint."""
    from devlearn.agents import make_agent  # deferred: SB3 loads for the tests that need a run
    from devlearn.envs.vector.make import make_vector_env

    cfg, _ = compose_run(TINY)
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")
    env = make_vector_env(cfg.env.id, 4)
    make_agent(cfg.agent, env, 0, "cpu", writer=None).save(folder)
    env.close()
    return folder


class FullDisk:
    """A file whose writes stop with ENOSPC after ``room`` bytes, as on a disk that fills up mid-write."""

    def __init__(self, path, mode, room):
        self.f, self.room = open(path, mode), room  # noqa: SIM115

    def write(self, data):
        if len(data) > self.room:
            self.f.write(bytes(data[: self.room]))
            raise OSError(errno.ENOSPC, "No space left on device", str(self.f.name))
        self.room -= len(data)
        return self.f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_full_disk_keeps_the_old_checkpoint_removes_the_temp_file_and_says_how_much_is_needed(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save({"w": torch.ones(10), "step": 1}, path)
    monkeypatch.setattr(checkpoint, "open", lambda p, mode: FullDisk(p, mode, 1000), raising=False)
    with pytest.raises(StorageError) as failed:
        checkpoint.save({"w": torch.zeros(1_000_000), "step": 2}, path)  # 3.8 MB: the disk holds 1000 bytes more
    message = str(failed.value)
    assert "\n" not in message and message.startswith(f"no space left on the device to write {path}: it needs 3.8 MB")
    assert "The previous checkpoint is kept." in message and failed.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no .checkpoint.pt.tmp left behind
    assert checkpoint.load(path)["step"] == 1


@pytest.mark.parametrize("kind", ["developmental", "ppo"])
def test_a_real_full_disk_is_one_line_for_either_checkpoint(kind, tmp_path, small_disk):
    from devlearn.agents import make_agent  # deferred: torch and SB3 load for this test only
    from devlearn.envs.vector.make import make_vector_env

    disk = small_disk(0.25)  # 256 KB: less than either agent's checkpoint (SB3 compresses its zip to ~320 KB)
    cfg = compose_run([f"agent={kind}", *TINY[1:]])[0]
    agent = make_agent(cfg.agent, make_vector_env(cfg.env.id, 4), 0, "cpu", writer=None)
    with pytest.raises(StorageError, match=r"^no space left on the device to write .*: it needs [\d.]+ MB and"):
        agent.save(disk)
    assert list(disk.iterdir()) == []  # the temp file is gone too


def test_training_on_a_disk_that_fills_up_stops_in_one_line_and_keeps_its_checkpoint(tmp_path, small_disk):
    disk = small_disk(8)
    run_dir = disk / "run"
    args = [*TINY, "agent.total_timesteps=1000000", "checkpoint_every_s=0.5", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen([DEVLEARN, "train", *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (checkpoint_step(run_dir) or 0) and time.time() < deadline:  # a checkpoint past step 0
        time.sleep(0.2)
    saved = (run_dir / "checkpoint.zip").stat().st_size
    free = shutil.disk_usage(disk).free
    (disk / "filler").write_bytes(b"\0" * (free - saved // 2))  # the next checkpoint does not fit
    try:
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.send_signal(signal.SIGKILL)
    lines = stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(f"devlearn: error: no space left on the device to write {run_dir}/checkpoint.zip: it needs")
    assert "The previous checkpoint is kept." in lines[0] and lines[0].endswith(f"hydra.run.dir={run_dir} resume=true")
    assert not list(run_dir.glob(".*.tmp"))
    check_checkpoint(run_dir)  # whole, and loadable from its step
    assert checkpoint_step(run_dir) > 0


def test_eval_of_a_read_only_run_prints_the_table_and_says_where_it_could_not_write(tmp_path, read_only, capsys):
    run_dir = read_only(ppo_run(tmp_path / "run"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["eval", f"run_dir={run_dir}", "episodes=2"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 1
    assert "heldout argmax" in out and "heldout sampled" in out  # every episode ran, and the table is shown
    (line,) = err.strip().splitlines()[-1:]
    assert line.startswith(f"devlearn: cannot write {run_dir}/eval-heldout.json: ") and "The table above" in line
    assert len([x for x in err.splitlines() if x.startswith("devlearn:")]) == 1


def test_report_of_a_read_only_sweep_prints_the_table_and_says_where_it_could_not_write(tmp_path, read_only, capsys):
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        run = sweep / f"run{seed}"
        (run / ".hydra").mkdir(parents=True)
        config = {"env": {"id": "devlearn/CliffEdge-v0"}, "agent": {"name": "ppo"}, "seed": seed}
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        row = {"return": 0.5, "success": 0.5, "catastrophe_rate": 0.0, "cost": 0.0, "length": 9.0, "episodes": 2}
        results = {"env": "devlearn/CliffEdge-v0", "agent": "ppo", "seed": seed, "env_steps": 64,
                   "env_steps_per_second": 10.0, "training": {"episodes": 2, "catastrophes": 0},
                   "eval": {"train": row, "heldout": row}}  # fmt: skip
        (run / "results.json").write_text(json.dumps(results))
    read_only(sweep)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["report", str(sweep), "--resamples=100"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 1 and "heldout/return" in out, out
    (line,) = err.strip().splitlines()
    assert line.startswith(f"devlearn: cannot write {sweep}/") and "--out DIR writes it elsewhere" in line


def test_a_read_only_folder_for_a_new_run_is_refused_before_hydra(tmp_path, read_only, capsys):
    (tmp_path / "ro").mkdir()
    parent = read_only(tmp_path / "ro")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", f"hydra.run.dir={parent}/run"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and not (parent / "run").exists()
    why = "is on a read-only filesystem" if os.geteuid() == 0 else "takes no new folder (Permission denied)"
    assert line == f"devlearn: error: hydra.run.dir={parent}/run cannot be created: {parent} {why}. Choose a writable hydra.run.dir."
