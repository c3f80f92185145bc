"""Sweeps past one process: Hydra's joblib and submitit launchers, the SLURM/Ray configs, objective=, and the
progress line per finished job. The Optuna search is in tests/app/test_optuna_search.py."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from devlearn.app.cli import check_overrides
from devlearn.app.progress import job_line
from devlearn.app.report import final_figures
from devlearn.config import OBJECTIVES
from devlearn.errors import ConfigError

DEVLEARN = str(Path(sys.executable).parent / "devlearn")
# PPO (fast on 2 cores) at a budget where a run is a few seconds; the launchers are what is tested
TINY = [
    "agent=ppo",
    "agent.total_timesteps=128",
    "agent.n_steps=32",
    "agent.batch_size=32",
    "env.num_envs=2",
    "log.eval_episodes=1",
    "log.video=false",
    "log.progress_bar=false",
]


def plugin(name: str):
    """Skip (naming the extra) when a Hydra plugin is not installed."""
    if importlib.util.find_spec(f"hydra_plugins.{name}") is None:
        pytest.skip(f"{name} is not installed: pip install -e '.[cluster]' (the test extra has it)")


def devlearn(args, cwd, timeout=600):
    # jobs run side by side on 2 shared cores: one torch thread each (joblib does this for its own workers)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [DEVLEARN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def sweep_dir(cwd: Path) -> Path:
    (folder,) = (cwd / "runs").glob("multirun-*")
    return folder


def test_launcher_and_sweeper_overrides_pass_the_key_check():
    check_overrides(
        ["-m", "seed=0,1,2", "agent=developmental,ppo", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    )
    check_overrides(["hydra/sweeper=cliff_search", "hydra.sweeper.n_trials=2", "objective=heldout/return"])
    with pytest.raises(ConfigError, match="Did you mean 'objective'"):
        check_overrides(["objectiv=heldout/return"])


def test_objectives_are_the_figures_the_report_aggregates():
    row = {"return": 1.0, "success": 0.0, "catastrophe_rate": 0.5}
    results = {
        "eval": {"train": row, "heldout": row},
        "training": {"catastrophes": 3},
        "env_steps_per_second": 9.0,
    }
    assert set(final_figures(results)) == set(OBJECTIVES)


def test_job_line_has_the_headline_figures():
    results = {
        "env_steps": 2048,
        "train_seconds": 12.4,
        "env_steps_per_second": 165.2,
        "training": {"catastrophes": 7},
        "eval": {
            "train": {"return": 0.5, "success": 0.5, "catastrophe_rate": 0.0},
            "heldout": {"return": 0.25, "success": 0.25, "catastrophe_rate": 0.5},
        },
    }
    assert job_line(results, "[job 3] cliff-ppo-seed1-3") == (
        "[job 3] cliff-ppo-seed1-3: done | heldout return 0.250 success 25% catastrophe 50% | "
        "7 training catastrophes | 2,048 steps in 12 s (165 steps/s)"
    )


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_a_two_job_sweep_runs_to_completion(launcher, tmp_path):
    plugin("hydra_joblib_launcher" if launcher == "joblib" else "hydra_submitit_launcher")
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=10"]
    out = devlearn(["train", "-m", "seed=0,1", f"hydra/launcher={launcher}", *extra, *TINY], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    root = sweep_dir(tmp_path)
    launched_by = yaml.safe_load((root / "multirun.yaml").read_text())["hydra"]["launcher"]["_target_"]
    assert launcher.split("_")[0] in launched_by.lower()
    runs = sorted(p.parent for p in root.rglob("results.json"))
    assert [json.loads((r / "results.json").read_text())["seed"] for r in runs] == [0, 1]
    if launcher == "submitit_local":
        assert (root / ".submitit").is_dir()  # the jobs really went through submitit
    # one progress line per finished job, on the console and in progress.log, then the report hint
    lines = (root / "progress.log").read_text().splitlines()
    assert len(lines) == 2 and all(": done | heldout return" in line for line in lines)
    for line in lines:
        assert f"devlearn sweep: {line}" in out.stdout
    assert f"2 jobs ended (0 failed) under {root.relative_to(tmp_path)}" in out.stdout
    assert f"devlearn report {root.relative_to(tmp_path)}" in out.stdout


def test_slurm_launcher_config_composes_with_its_defaults(tmp_path):
    plugin("hydra_submitit_launcher")
    out = devlearn(
        ["train", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra"], tmp_path
    )
    assert out.returncode == 0, out.stderr
    launcher = yaml.safe_load(out.stdout)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (
        launcher["timeout_min"] == 240 and launcher["cpus_per_task"] == 4 and launcher["partition"] == "gpu"
    )
    assert launcher["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"


def test_ray_launcher_config_composes_with_its_defaults(tmp_path):
    plugin("hydra_ray_launcher")
    out = devlearn(["train", "hydra/launcher=ray_cluster", "--cfg", "hydra"], tmp_path)
    assert out.returncode == 0, out.stderr
    launcher = yaml.safe_load(out.stdout)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("RayLauncher")
    assert launcher["ray"]["init"]["address"] is None and launcher["ray"]["remote"]["num_cpus"] == 1


@pytest.mark.slow
def test_ray_local_sweep_runs_to_completion(tmp_path):
    plugin("hydra_ray_launcher")
    out = devlearn(
        [
            "train",
            "-m",
            "seed=0,1",
            "hydra/launcher=ray_cluster",
            "++hydra.launcher.ray.init.num_cpus=2",
            *TINY,
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    root = sweep_dir(tmp_path)
    assert len(list(root.rglob("results.json"))) == 2
    assert len((root / "progress.log").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["objective=heldout/retrun"],
            "objective='heldout/retrun' is not allowed. Did you mean 'heldout/return'?",
        ),
        (
            ["env=gym", "env.id=CartPole-v1", "objective=heldout/return"],
            "CartPole-v1 is evaluated on train only.",
        ),
    ],
)
def test_a_wrong_objective_is_refused_before_training(args, message, tmp_path):
    out = devlearn(["train", *TINY, *args], tmp_path)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert "training ppo" not in out.stdout


def _task_pids(folder: Path) -> list[int]:
    """The pids of the submitit task processes (``python -m submitit.core._submit``) of jobs under ``folder``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "submitit.core._submit" in cmdline and any(str(folder) in part for part in cmdline):
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_submitit_requeues_a_preempted_job_and_it_resumes_its_run(tmp_path):
    """submitit's protocol end to end, on its local executor: SIGUSR2 to the job (what SLURM sends before the time
    limit) -> devlearn checkpoints at its next safe point -> submitit calls checkpoint() (resume=true) and requeues
    -> the requeued job continues the run from that checkpoint to the end (~1 min on 2 cores)."""
    plugin("hydra_submitit_launcher")
    from devlearn.app.checkpoints import checkpoint_step  # deferred: torch, for this slow test only

    sweep = tmp_path / "sweep"
    args = ["train", "-m", *TINY[:1], *TINY[2:], "agent.total_timesteps=8192", "checkpoint_every=512",
            "hydra/launcher=submitit_local", "hydra.launcher._target_=hydra_plugins.devlearn_launcher.LocalLauncher",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    console = open(tmp_path / "console.txt", "w+")  # noqa: SIM115
    proc = subprocess.Popen([DEVLEARN, *args], cwd=tmp_path, stdout=console, stderr=subprocess.STDOUT, text=True)
    job = sweep / "devlearn_CliffEdge-v0-ppo-seed0-0"
    deadline = time.time() + 300
    while not (checkpoint_step(job) or 0) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)  # a periodic checkpoint: mid-training
    (pid,) = _task_pids(sweep / ".submitit") or [console.seek(0) or pytest.fail(console.read())]
    os.kill(pid, signal.SIGUSR2)
    proc.wait(timeout=600)
    console.seek(0)
    assert proc.returncode == 0, console.read()
    results = json.loads((job / "results.json").read_text())
    assert results["resumes"] == 1 and results["env_steps"] >= 4096 and "stopped" not in results, results
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "stopped by SIGUSR2 at step" in logs and "Requeued job" in logs and "resuming " in logs, logs
