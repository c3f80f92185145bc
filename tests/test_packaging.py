"""The built wheel installs envs/, agents/ and configs/ inside devlearn, every module and config of the tree,
and nothing else at the top level but devlearn's Hydra launchers (Hydra loads those only from hydra_plugins/)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALLED_AS = {
    "devlearn": "devlearn", "envs": "devlearn/envs", "agents": "devlearn/agents", "configs": "devlearn/configs",
    "hydra_plugins/devlearn_launcher": "hydra_plugins/devlearn_launcher",
}  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip would install, built from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("devlearn-*.whl")
    return built


def test_no_top_level_envs_or_agents_module_is_installed(wheel, tmp_path):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names}
    assert top_level == {"devlearn", "hydra_plugins", wheel.name.split("-py")[0] + ".dist-info"}
    # hydra_plugins is Hydra's namespace: devlearn adds its one plugin package to it, and no __init__.py
    assert all(n.startswith("hydra_plugins/devlearn_launcher/") for n in names if n.startswith("hydra_plugins/"))
    for config in ("launcher/slurm.yaml", "launcher/ray_cluster.yaml", "sweeper/cliff_search.yaml"):
        assert f"devlearn/configs/hydra/{config}" in names  # hydra/launcher=slurm works from an installed wheel
    # And outside the repo, `import envs` fails while `devlearn.envs` is found.
    code = "import importlib.util as u; print(u.find_spec('envs') is None, u.find_spec('agents') is None, u.find_spec('devlearn.envs') is not None)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True"]


def test_every_module_and_config_of_the_tree_is_in_the_wheel(wheel):
    """A new package folder missing from pyproject's list would install half a devlearn: catch it here."""
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for folder, target in INSTALLED_AS.items():
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
                expected.add(f"{target}/{path.relative_to(REPO / folder).as_posix()}")
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel: {missing}"
    assert "devlearn/model/context.py" in names and "devlearn/configs/agent/developmental.yaml" in names
