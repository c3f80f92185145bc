"""``devlearn grok``: the modular-arithmetic data, a tiny run that memorises, the ensemble, and the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from devlearn.app.grok import dataset, ensemble_accuracy, train_seed, validate_grok
from devlearn.config import GrokConfig
from devlearn.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny(**overrides) -> GrokConfig:
    cfg = OmegaConf.structured(
        GrokConfig(p=13, d_model=32, n_heads=4, steps=300, eval_every=50, device="cpu")
    )
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


@pytest.mark.parametrize("op", ["add", "mul"])
def test_random_split_covers_every_pair_once_with_the_right_answers(op: str) -> None:
    data = dataset(op, 11, 0.3, "random", seed=0)
    x = torch.cat([data["x_train"], data["x_val"]])
    y = torch.cat([data["y_train"], data["y_val"]])
    assert len(data["x_train"]) == round(0.3 * 121) and len(x) == 121
    assert len({tuple(row) for row in x.tolist()}) == 121  # every pair exactly once
    assert (x[:, 2] == 11).all()  # the "=" token
    expected = (x[:, 0] + x[:, 1]) % 11 if op == "add" else (x[:, 0] * x[:, 1]) % 11
    assert torch.equal(y, expected)
    again = dataset(op, 11, 0.3, "random", seed=0)
    assert torch.equal(again["x_train"], data["x_train"])  # the split is a function of its seed
    assert not torch.equal(dataset(op, 11, 0.3, "random", seed=1)["x_train"], data["x_train"])


def test_operand_split_trains_below_the_bound_and_validates_above() -> None:
    data = dataset("add", 11, 0.5, "operand", seed=0)
    bound = round(0.5 * 11)
    assert (data["x_train"][:, 0] < bound).all() and (data["x_val"][:, 0] >= bound).all()
    assert len(data["x_train"]) == bound * 11
    # the numbers above the bound still appear in training, as the second operand
    assert set(data["x_train"][:, 1].tolist()) == set(range(11))


def test_a_tiny_run_reaches_full_train_accuracy() -> None:
    result = train_seed(tiny(), seed=0)
    assert result["final_train_acc"] == 1.0
    curve = result["curve"]
    assert curve["step"][-1] == 300 and curve["train_acc"][0] < 1.0  # it learned during the run
    assert set(curve["lr"]) == {1e-3} and set(curve["weight_decay"]) == {1.0}  # constant schedule


def test_the_schedule_drives_the_optimizer_each_step() -> None:
    result = train_seed(
        tiny(steps=40, eval_every=1, **{"schedule.name": "catapult_sleep", "schedule.period": 20}), seed=0
    )
    curve = result["curve"]
    assert max(curve["lr"]) == pytest.approx(
        1e-2
    )  # the triangle's top (peak_ratio 10), 2 steps into each cycle
    assert max(curve["weight_decay"]) == pytest.approx(10.0)  # asleep at the end of each cycle
    assert curve["weight_decay"][19] == pytest.approx(10.0) and curve["weight_decay"][20] == pytest.approx(
        1.0
    )


def test_stop_at_target_ends_the_seed_once_it_generalises() -> None:
    result = train_seed(tiny(steps=3000, eval_every=10, stop_at_target=True, target_accuracy=0.05), seed=0)
    assert result["steps_to_target"] is not None and result["steps"] == result["steps_to_target"] < 3000


def test_ensemble_gain_is_measured_against_the_mean_member() -> None:
    y = torch.tensor([0, 1, 2])

    def member(predictions: list[int]) -> dict:
        probs = torch.nn.functional.one_hot(torch.tensor(predictions), 3).float() * 0.7 + 0.1
        return {"val_probs": probs, "y_val": y}

    # each member is wrong on a different pair: each scores 2/3, their mean softmax is right everywhere
    result = ensemble_accuracy([member([0, 1, 0]), member([0, 0, 2]), member([1, 1, 2])])
    assert result["mean_member_val_acc"] == pytest.approx(2 / 3)
    assert result["ensemble_val_acc"] == pytest.approx(1.0)
    assert result["gain"] == pytest.approx(1 / 3)
    assert ensemble_accuracy([member([0, 1, 0])] * 2)["gain"] == 0.0


@pytest.mark.parametrize(
    ("key", "bad", "message"),
    [
        ("op", "sub", "op='sub' is not allowed. Allowed values: add, mul"),
        ("split", "operands", "split='operands' is not allowed. Did you mean 'operand'?"),
        ("train_fraction", 1.5, "train_fraction=1.5 must be in (0, 1)"),
        ("schedule.name", "slep", "schedule.name='slep' is not allowed. Did you mean 'sleep'?"),
    ],
)
def test_a_bad_value_names_the_allowed_ones(key: str, bad, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_grok(tiny(**{key: bad}))
    assert message in str(err.value)


def test_devlearn_grok_writes_results_and_tensorboard(tmp_path: Path, capsys) -> None:
    from devlearn.app.cli import main

    run_dir = tmp_path / "grok"
    main(["grok", "p=11", "d_model=32", "steps=60", "eval_every=20", "n_seeds=2", "schedule=sleep",
          "device=cpu", "progress_bar=false", f"hydra.run.dir={run_dir}"])  # fmt: skip
    out = capsys.readouterr().out
    assert "ensemble val acc" in out and "median steps to target" in out
    result = json.loads((run_dir / "results.json").read_text())
    assert result["schedule"] == "sleep" and [s["seed"] for s in result["seeds"]] == [0, 1]
    assert set(result["ensemble"]) == {"ensemble_val_acc", "mean_member_val_acc", "gain"}
    events = EventAccumulator(str(run_dir / "tb" / "seed0"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "train/lr", "train/weight_decay"} <= tags

    with pytest.raises(SystemExit):
        main(["grok", "stpes=10"])
    err = capsys.readouterr().err
    assert "Unknown config key 'stpes' for devlearn grok. Did you mean 'steps'?" in err
    with pytest.raises(SystemExit):
        main(["grok", "schedule=catapul"])
    assert "Did you mean 'catapult'?" in capsys.readouterr().err
