"""Every command the README shows runs, and CI runs the README's own test command."""

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


def test_quickstart_trains_the_default_agent():
    quickstart = bash_blocks()[0]
    assert re.search(r"^pip install torch==\S+ -e \. && devlearn train$", quickstart, flags=re.M)


@pytest.mark.parametrize("line", readme_lines("devlearn train "), ids=lambda line: line)
def test_readme_train_commands_run(line, tmp_path):
    args = shrink(shlex.split(line)[1:])
    if "resume=true" in args:  # there must be a run to resume: make one, then resume it for more steps
        first = [a for a in args if a != "resume=true"]
        subprocess.run(
            [str(BIN / "devlearn"), *first], cwd=tmp_path, check=True, capture_output=True, timeout=600
        )
        args = [
            a if not a.startswith("agent.total_timesteps=") else "agent.total_timesteps=512" for a in args
        ]
    out = subprocess.run(
        [str(BIN / "devlearn"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    if "--cfg" in args:
        assert "env:" in out.stdout and "agent:" in out.stdout
    else:
        results = list((tmp_path / "runs").rglob("results.json"))
        assert len(results) == (3 if "-m" in args else 1)


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
