"""Every command the README shows runs, and CI runs the README's own test command."""

import importlib.util
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
BIN = Path(sys.executable).parent
TINY = {
    "agent.total_timesteps": "256",
    "agent.n_steps": "32",
    "agent.batch_size": "64",
    "env.num_envs": "4",
    "log.eval_episodes": "2",
    "log.video_max_steps": "20",
}


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def readme_lines(prefix: str) -> list[str]:
    lines = [line.split("#")[0].strip() for block in bash_blocks() for line in block.splitlines()]
    return [line for line in lines if line.startswith(prefix)]


def shrink(args: list[str]) -> list[str]:
    """The same command with training shortened: README values for the TINY keys are replaced."""
    kept = [a for a in args if a.split("=")[0] not in TINY]
    if "--cfg" in kept:
        return kept
    return kept + [f"{k}={v}" for k, v in TINY.items()]


def test_ci_runs_the_readme_test_command():
    quickstart = bash_blocks()[0].splitlines()
    test_command = next(line for line in quickstart if "pytest" in line)
    assert test_command in (REPO / ".ci" / "run").read_text()


def test_quickstart_trains_the_default_agent(tmp_path):
    """The quickstart's first command (shortened) trains the developmental agent, prints the table and logs."""
    quickstart = bash_blocks()[0]
    command = re.search(r"^pip install torch==\S+ -e \. && (devlearn train)$", quickstart, flags=re.M)
    assert command, quickstart
    out = subprocess.run(
        [str(BIN / "devlearn"), "train", *shrink([])], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "training developmental on devlearn/CliffEdge-v0" in out.stdout
    for split in ("train", "heldout"):  # argmax and sampled rows for both splits
        assert re.search(rf"^{split} argmax\s+-?\d", out.stdout, flags=re.M), out.stdout
        assert re.search(rf"^{split} sampled\s+-?\d", out.stdout, flags=re.M), out.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert list((run_dir / "tb").glob("events.out.tfevents.*")) and (run_dir / "checkpoint.pt").is_file()
    monitors = json.loads((run_dir / "results.json").read_text())["monitors"]  # the world model's end figures
    assert {"world_model/acc_changed", "world_model/acc_obs", "world_model/acc_obs_copy"} <= set(monitors), monitors


def expected_runs(args: list[str]) -> int:
    """How many runs a command makes: 1, or the product of its comma-separated sweeps, or an Optuna budget."""
    if "-m" not in args:
        return 1
    for arg in args:
        if arg.startswith("hydra.sweeper.n_trials="):
            return int(arg.split("=")[1])
    return math.prod(len(a.split("=", 1)[1].split(",")) for a in args if "=" in a and "," in a)


def for_this_machine(args: list[str]) -> list[str]:
    """README sweep commands as a test can run them: no SLURM here, so its jobs go to submitit's local
    executor (configs/hydra/launcher/slurm.yaml itself is tested in tests/app/test_sweeps.py); an Optuna search
    gets two trials. Skips when the launcher's plugin (the cluster extra) is not installed."""
    plugins = {
        "slurm": "hydra_submitit_launcher",
        "submitit": "hydra_submitit_launcher",
        "joblib": "hydra_joblib_launcher",
    }
    plugins |= {"ray": "hydra_ray_launcher", "sweeper=": "hydra_optuna_sweeper"}
    for word, plugin in plugins.items():
        if any(word in a for a in args if a.startswith("hydra/")) and not importlib.util.find_spec(
            f"hydra_plugins.{plugin}"
        ):
            pytest.skip(f"{plugin} is not installed (pip install -e '.[cluster]')")
    args = [a for a in args if not a.startswith("hydra.launcher.partition=")]
    args = [a.replace("hydra/launcher=slurm", "hydra/launcher=submitit_local") for a in args]
    if any(a.startswith("hydra/sweeper=") for a in args):
        args.append("hydra.sweeper.n_trials=2")
    return args


def train_lines() -> list:
    # Ray starts a local cluster (several processes, a minute on 2 cores): slow, and its wheel is not in the test extra
    slow = pytest.mark.slow
    return [
        pytest.param(line, marks=slow) if "launcher=ray" in line else line
        for line in readme_lines("devlearn train ")
    ]


@pytest.mark.parametrize("line", train_lines(), ids=lambda line: line)
def test_readme_train_commands_run(line, tmp_path):
    args = for_this_machine(shrink(shlex.split(line)[1:]))
    if "resume=true" in args:  # there must be a run to resume: make one, then resume it for more steps
        first = [a for a in args if a != "resume=true"]
        subprocess.run(
            [str(BIN / "devlearn"), *first], cwd=tmp_path, check=True, capture_output=True, timeout=600
        )
        args = [
            a if not a.startswith("agent.total_timesteps=") else "agent.total_timesteps=512" for a in args
        ]
    # Launchers that run jobs side by side (submitit_local starts all at once) on 2 shared cores: one torch
    # thread per job, or the jobs' threads fight for the cores (joblib sets this for its own workers).
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if "-m" in args else None
    out = subprocess.run(
        [str(BIN / "devlearn"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    assert out.returncode == 0, out.stdout + out.stderr
    if "--cfg" in args:
        assert "env:" in out.stdout and "agent:" in out.stdout
    else:
        results = list((tmp_path / "runs").rglob("results.json"))
        assert len(results) == expected_runs(args)


def test_readme_report_command_runs(tmp_path):
    (line,) = readme_lines("devlearn report ")
    sweep = ["train", "-m", "seed=0,1", "agent=ppo", *shrink([])]
    subprocess.run(
        [str(BIN / "devlearn"), *sweep], cwd=tmp_path, check=True, capture_output=True, timeout=600
    )
    (sweep_dir,) = (tmp_path / "runs").glob("multirun-*")
    args = [a.replace("runs/multirun-DATE", str(sweep_dir)) for a in shlex.split(line)[1:]]
    out = subprocess.run(
        [str(BIN / "devlearn"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    assert "agent=ppo" in out.stdout or "seeds: 0, 1" in out.stdout
    for name in ("report.json", "report.md", "curves.png"):
        assert (sweep_dir / name).is_file()


@pytest.mark.parametrize("line", readme_lines("devlearn eval "), ids=lambda line: line)
def test_readme_eval_command_runs(line, tmp_path):
    train = ["train", *shrink([])]
    subprocess.run(
        [str(BIN / "devlearn"), *train], cwd=tmp_path, check=True, capture_output=True, timeout=600
    )
    (run_dir,) = (tmp_path / "runs").iterdir()
    args = [a.replace("runs/RUN", str(run_dir)) for a in shlex.split(line)[1:]]
    args = [a if not a.startswith("episodes=") else "episodes=4" for a in args]
    out = subprocess.run(
        [str(BIN / "devlearn"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    dynamic = "dynamic_eval=true" in args
    assert (run_dir / ("eval-heldout-dynamic.json" if dynamic else "eval-heldout.json")).is_file()
    if dynamic:
        assert "with dynamic eval" in out.stdout


GROK_TINY = {"p": "11", "d_model": "32", "steps": "40", "eval_every": "20", "progress_bar": "false"}


@pytest.mark.parametrize("line", readme_lines("devlearn grok"), ids=lambda line: line)
def test_readme_grok_commands_run(line, tmp_path):
    args = [a for a in shlex.split(line)[1:] if a.split("=")[0] not in GROK_TINY]
    args += [f"{k}={v}" for k, v in GROK_TINY.items()]
    out = subprocess.run(
        [str(BIN / "devlearn"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(list((tmp_path / "runs").rglob("results.json"))) == 1


def test_readme_python_example_runs():
    block = re.findall(r"```python\n(.*?)```", README, flags=re.S)[0]
    namespace: dict = {}
    exec(block, namespace)  # the make_vec / reset / step example
    assert namespace["obs"].shape[0] == 256 and namespace["falls"].shape == (256,)


def tensorboard_section() -> str:
    return README.split("## Reading TensorBoard")[1].split("\n## ")[0]


def documented(tag: str, section: str) -> bool:
    """``tag`` is named in full, or as a leaf of a ``prefix/*`` in the same bullet (``latent_k2``: ``latent_kN``)."""
    if f"`{tag}`" in section:
        return True
    prefix, leaf = tag.rsplit("/", 1)
    leaf = re.sub(r"\d+$", "N", leaf)
    bullets = re.split(r"\n- ", section)
    return any(f"`{prefix}/*`" in b and f"`{leaf}`" in b for b in bullets)


@pytest.mark.parametrize("agent", ["developmental", "ppo"])
def test_every_tensorboard_tag_is_documented(tmp_path, agent):
    """Every tag a run writes (scalars, images, text) is named in README's "Reading TensorBoard"."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    extra = ["agent.world_model.k=2", "memory=hybrid", "agent.intrinsic_coef=0.05"] if agent == "developmental" else []
    args = [f"agent={agent}", *extra, *shrink([])]
    out = subprocess.run([str(BIN / "devlearn"), "train", *args], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = {*events.Tags()["scalars"], *events.Tags()["images"]}
    tags |= {t.removesuffix("/text_summary") for t in events.Tags()["tensors"] if t != "custom_scalars__config__"}
    assert "eval_sampled/heldout/return" in tags and "rollout/video" in tags and "config" in tags
    if agent == "developmental":
        assert {"world_model/latent_k2", "world_model/predicted_vs_actual", "shield/fire_rate", "memory/hit_rate"} <= tags
        assert "rollout/novelty_rate" in tags
    section = tensorboard_section()
    missing = sorted(t for t in tags if not documented(t, section))
    assert not missing, f"tags written but not documented in README: {missing}"


def error_examples() -> list[tuple[str, str]]:
    """``$ devlearn ...`` lines of README's plain (unlabelled) code blocks and the line each is answered with."""
    pairs, fence, lines = [], None, README.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fence = None if fence is not None else line[3:]
        elif fence == "" and line.startswith("$ devlearn ") and i + 1 < len(lines):
            pairs.append((line.removeprefix("$ ").split("  #")[0].strip(), lines[i + 1]))
    return pairs


@pytest.mark.parametrize("command, answer", error_examples(), ids=[c for c, _ in error_examples()])
def test_readme_error_examples_are_what_devlearn_says(command, answer, tmp_path, monkeypatch, capsys):
    """Word for word: README's sample answers are devlearn's (a trailing ``...`` stands for the rest of a long list)."""
    from devlearn.app import cli

    if "device=cuda" in command:
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("a GPU is visible: device=cuda is accepted here")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_train_main", lambda: pytest.fail(f"{command} was accepted"))
    with pytest.raises(SystemExit):
        cli.main(shlex.split(command)[1:])
    (said,) = capsys.readouterr().err.strip().splitlines()
    if answer.endswith("..."):
        assert said.startswith(answer[:-3]), said
    else:
        assert said == answer


def test_readme_has_error_examples():
    assert len(error_examples()) >= 10
