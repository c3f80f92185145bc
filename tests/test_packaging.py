"""The distribution installs envs/ and agents/ inside devlearn and nothing at the top level."""

import subprocess
import sys
import zipfile
from pathlib import Path


def test_no_top_level_envs_or_agents_module_is_installed(tmp_path):
    # Build the wheel pip would install and list what lands at the top of site-packages.
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(repo),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("devlearn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names}
    assert top_level == {"devlearn", wheel.name.split("-py")[0] + ".dist-info"}
    for config in ("launcher/slurm.yaml", "launcher/ray_cluster.yaml", "sweeper/cliff_search.yaml"):
        assert f"devlearn/configs/hydra/{config}" in names  # hydra/launcher=slurm works from an installed wheel
    assert "devlearn/envs/cliff_edge.py" in names and "devlearn/agents/sb3_vec.py" in names
    assert "devlearn/configs/train.yaml" in names and "devlearn/configs/env/cliff.yaml" in names
    # And outside the repo, `import envs` fails while `devlearn.envs` is found.
    code = "import importlib.util as u; print(u.find_spec('envs') is None, u.find_spec('agents') is None, u.find_spec('devlearn.envs') is not None)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True", "True"]


def test_configs_ship_with_the_package():
    from importlib.resources import files

    configs = files("devlearn.configs")
    assert configs.joinpath("train.yaml").is_file()
    for group, name in [
        ("env", "cliff"),
        ("env", "carwash"),
        ("env", "inbox"),
        ("env", "bystanders"),
        ("agent", "ppo"),
    ]:
        assert configs.joinpath(group, f"{name}.yaml").is_file()
