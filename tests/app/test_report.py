"""``devlearn report``: medians and bootstrap CIs checked by hand, curves from TensorBoard, clear bad-input lines."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from torch.utils.tensorboard import SummaryWriter

from devlearn.app.cli import main
from devlearn.app.curves import curve_bands
from devlearn.app.report import report
from devlearn.stats import bootstrap_median_ci

DEVLEARN = str(Path(sys.executable).parent / "devlearn")


def exact_bootstrap_ci(values, confidence=0.95):
    """The percentile CI of the median over *all* n^n equally likely resamples (no Monte Carlo)."""
    medians = [np.median(r) for r in itertools.product(values, repeat=len(values))]
    alpha = (1 - confidence) / 2
    # the bootstrap distribution is discrete: its quantile is the smallest value whose CDF reaches alpha
    return tuple(np.quantile(medians, [alpha, 1 - alpha], method="inverted_cdf"))


def make_run(
    folder: Path,
    agent: str,
    seed: int,
    heldout_return: float,
    env: str = "devlearn/CliffEdge-v0",
    curve=None,
    lr: float = 3e-4,
):
    """A run folder as devlearn train writes it: results.json, .hydra/{config,overrides}.yaml, tb/."""
    (folder / ".hydra").mkdir(parents=True)
    config = {
        "env": {"name": "cliff", "id": env, "kwargs": {}, "num_envs": 2},
        "agent": {"name": agent, "learning_rate": lr, "total_timesteps": 300},
        "log": {"video": False, "eval_episodes": 2, "progress_bar": False},
        "seed": seed,
        "device": "cpu",
        "resume": False,
    }
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}", f"agent={agent}"]))
    row = {"return": 0.0, "success": 0.0, "catastrophe_rate": 0.5, "cost": 0.0, "length": 10.0, "episodes": 2}
    results = {
        "env": env,
        "agent": agent,
        "seed": seed,
        "env_steps": 300,
        "env_steps_per_second": 100.0 + seed,
        "training": {"episodes": 10, "catastrophes": 3 + seed},
        "eval": {"train": dict(row, success=0.5), "heldout": dict(row, **{"return": heldout_return})},
    }
    (folder / "results.json").write_text(json.dumps(results))
    if curve is not None:
        writer = SummaryWriter(str(folder / "tb"))
        for step, value in curve:
            writer.add_scalar("rollout/return", value, step)
            writer.add_scalar("rollout/catastrophe_rate", 1 - value, step)
        writer.close()


@pytest.fixture
def sweep(tmp_path):
    """2 agents x 3 seeds; developmental's held-out returns 1, 2, 3 and ppo's 0, 0, 6; linear curves."""
    root = tmp_path / "multirun"
    for agent, returns in (("developmental", [1.0, 2.0, 3.0]), ("ppo", [0.0, 0.0, 6.0])):
        for seed, ret in enumerate(returns):
            curve = [(step, ret * step / 300) for step in (100, 200, 300)]
            make_run(root / f"cliff-{agent}-seed{seed}", agent, seed, ret, curve=curve)
    return root


@pytest.mark.parametrize("values", [[1.0, 2.0, 3.0], [0.0, 0.0, 6.0], [0.1, 0.4, 0.5, 0.9, 3.0], [2.0, 7.0]])
def test_bootstrap_ci_matches_the_exact_bootstrap(values):
    median, low, high = bootstrap_median_ci(np.array(values), resamples=20_000)
    assert median == pytest.approx(np.median(values))
    exact = exact_bootstrap_ci(values)
    # Monte Carlo with 20,000 resamples: within a small fraction of the data's range of the exact quantiles
    tol = 0.02 * (max(values) - min(values))
    assert low == pytest.approx(exact[0], abs=tol) and high == pytest.approx(exact[1], abs=tol)


def test_bootstrap_of_one_value_and_nans():
    assert bootstrap_median_ci(np.array([4.0])) == (4.0, 4.0, 4.0)
    median, low, high = bootstrap_median_ci(
        np.array([1.0, np.nan, 3.0])
    )  # a run without the figure is dropped
    assert median == 2.0 and (low, high) == pytest.approx(exact_bootstrap_ci([1.0, 3.0]))
    assert all(np.isnan(bootstrap_median_ci(np.array([np.nan, np.nan]))))


def test_curve_bands_interpolate_onto_the_steps_every_run_has():
    runs = [
        (np.array([0.0, 100.0]), np.array([0.0, 1.0])),
        (np.array([50.0, 150.0]), np.array([1.0, 3.0])),
        (np.array([0.0, 100.0]), np.array([0.0, 10.0])),
    ]
    steps, median, low, high = curve_bands(runs)
    assert steps[0] == 50.0 and steps[-1] == 100.0  # only where every run has data
    # at step 100 the runs read 1, 2, 10: median 2, band the exact bootstrap's
    assert median[-1] == pytest.approx(2.0)
    assert (low[-1], high[-1]) == pytest.approx(exact_bootstrap_ci([1.0, 2.0, 10.0]), abs=0.2)
    assert np.all(low <= median) and np.all(median <= high)


def test_report_groups_by_all_but_the_seed_and_writes_json_markdown_and_curves(sweep, tmp_path):
    out = tmp_path / "report"
    summary = report(sweep, out, resamples=20_000)
    groups = {g["label"]: g for g in summary["groups"]}
    assert set(groups) == {"agent=developmental", "agent=ppo"}
    dev, ppo = groups["agent=developmental"], groups["agent=ppo"]
    assert sorted(dev["seeds"]) == [0, 1, 2] and len(ppo["runs"]) == 3
    fig = dev["figures"]["heldout/return"]
    assert fig["median"] == 2.0 and (fig["ci_low"], fig["ci_high"]) == pytest.approx((1.0, 3.0))
    fig = ppo["figures"]["heldout/return"]  # the one lucky seed does not move the median
    assert fig["median"] == 0.0 and fig["ci_low"] == 0.0 and fig["ci_high"] == pytest.approx(6.0)
    assert dev["figures"]["training/catastrophes"]["median"] == 4.0  # 3 + seed
    assert dev["figures"]["env_steps_per_second"]["median"] == 101.0
    assert dev["figures"]["train/success"] == {"median": 0.5, "ci_low": 0.5, "ci_high": 0.5}
    for split in ("train", "heldout"):
        for key in ("return", "success", "catastrophe_rate"):
            assert f"{split}/{key}" in dev["figures"]
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["groups"][0]["figures"] == summary["groups"][0]["figures"]
    markdown = (out / "report.md").read_text()
    assert "| agent=developmental | 3 |" in markdown and "2.000 [1.000, 3.000]" in markdown
    assert "![learning curves](curves.png)" in markdown
    png = (out / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_a_hand_made_set_without_overrides_is_labelled_by_the_differing_keys(tmp_path):
    for seed in (0, 1):
        for lr in (1e-3, 3e-4):
            run = tmp_path / f"lr{lr}-s{seed}"
            make_run(run, "developmental", seed, 1.0, lr=lr)
            (run / ".hydra" / "overrides.yaml").unlink()
    summary = report(tmp_path, resamples=200)
    assert sorted(g["label"] for g in summary["groups"]) == [
        "agent.learning_rate=0.0003",
        "agent.learning_rate=0.001",
    ]
    assert all(len(g["runs"]) == 2 for g in summary["groups"])
    assert (
        summary["curves"] is None and not (tmp_path / "curves.png").exists()
    )  # no tb/: no picture, no crash


def test_cli_prints_the_table_and_where_it_wrote(sweep, capsys):
    main(["report", str(sweep), "--resamples", "1000"])
    out = capsys.readouterr().out
    assert "agent=developmental  (devlearn/CliffEdge-v0, 3 seeds: 0, 1, 2)" in out
    assert "heldout/return              2.000 [1.000, 3.000]" in out
    assert "report.md" in out and (sweep / "report.md").is_file() and (sweep / "curves.png").is_file()


def test_help():
    out = subprocess.run([DEVLEARN, "report", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage: devlearn report DIR" in out.stdout


def bad_line(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(["report", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("devlearn: error: ") and "Traceback" not in err
    return err


def test_bad_inputs_get_one_clear_line(sweep, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "No runs under" in bad_line([str(empty)], capsys)
    assert "is not a folder" in bad_line([str(tmp_path / "missing")], capsys)

    make_run(sweep / "carwash-ppo-seed0", "ppo", 0, 1.0, env="devlearn/CarWash-v0")
    err = bad_line([str(sweep)], capsys)
    assert "mixes runs of 2 envs" in err and "devlearn/CarWash-v0 (1 runs)" in err and "--env" in err
    report(sweep, tmp_path / "only-cliff", env="devlearn/CliffEdge-v0", resamples=200)  # the way out it names
    assert "matches no run" in bad_line([str(sweep), "--env", "devlearn/Inbox-v0"], capsys)

    (sweep / "carwash-ppo-seed0" / "results.json").unlink()
    err = bad_line([str(sweep)], capsys)
    assert "carwash-ppo-seed0 has no results.json" in err

    (sweep / "carwash-ppo-seed0" / "results.json").write_text("{not json")
    assert "results.json is not valid JSON" in bad_line([str(sweep)], capsys)

    assert "Unknown option '--outt'" in bad_line([str(sweep), "--outt", "x"], capsys)
    assert "takes one folder" in bad_line([], capsys)
    assert "must be an integer" in bad_line([str(sweep), "--resamples=many"], capsys)


def test_a_crashed_run_is_a_clear_error_from_the_command_line(sweep):
    (sweep / "cliff-ppo-seed1" / "results.json").unlink()
    out = subprocess.run([DEVLEARN, "report", str(sweep)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (
        "devlearn: error: Run cliff-ppo-seed1 has no results.json (did it crash or is it still running?); "
        "finish or remove it."
    )
