"""Schedules: values at known steps, applied to the optimizer, checked config, and the same after a resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from devlearn.errors import ConfigError
from devlearn.optim import build_optimizer
from devlearn.schedules import (
    SCHEDULES,
    ScheduleConfig,
    apply_schedule,
    schedule_value,
    validate_schedule,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def value(step: int, total: int = 0, **kwargs) -> tuple[float, float]:
    return tuple(schedule_value(ScheduleConfig(**kwargs), step, total))


def test_constant_and_warmup() -> None:
    assert value(0) == value(12345) == (1.0, 1.0)
    assert value(0, warmup_steps=4) == (0.25, 1.0)
    assert value(2, warmup_steps=4) == (0.75, 1.0)
    assert value(3, warmup_steps=4) == value(100, warmup_steps=4) == (1.0, 1.0)


def test_cosine_at_known_steps() -> None:
    kw = {"name": "cosine", "warmup_steps": 10, "min_lr_ratio": 0.1}
    assert value(0, 110, **kw)[0] == pytest.approx(0.1)  # warmup: 1/10 of the base
    assert value(10, 110, **kw)[0] == pytest.approx(1.0)  # warmup done: the top of the cosine
    assert value(60, 110, **kw)[0] == pytest.approx(0.55)  # halfway down: (1 + 0.1) / 2
    assert value(110, 110, **kw)[0] == pytest.approx(0.1)  # the floor at total_steps ...
    assert value(500, 110, **kw)[0] == pytest.approx(0.1)  # ... and after it
    assert value(60, 0, total_steps=110, **kw)[0] == pytest.approx(0.55)  # its own total_steps wins
    with pytest.raises(ConfigError, match="schedule.total_steps"):
        value(5, 0, **kw)


def test_catapult_peaks_at_known_steps() -> None:
    kw = {"name": "catapult", "period": 100, "peak_ratio": 10.0, "peak_fraction": 0.2}
    assert value(0, **kw) == (1.0, 1.0)  # the triangle starts at the base ...
    assert value(5, **kw)[0] == pytest.approx(5.5)  # ... climbs ...
    assert value(10, **kw)[0] == pytest.approx(10.0)  # ... peaks in the middle of the peak phase ...
    assert value(15, **kw)[0] == pytest.approx(5.5)  # ... and comes down
    assert value(20, **kw) == value(99, **kw) == (1.0, 1.0)  # the rest of the cycle at the base
    assert value(110, **kw)[0] == pytest.approx(10.0)  # every cycle alike
    assert value(5, shape="cosine", **kw)[0] == pytest.approx(1 + 9 * 0.5)  # (1 - cos(pi/2)) / 2 = 0.5
    assert value(1, shape="square", **kw)[0] == pytest.approx(10.0)
    assert all(value(s, **kw)[1] == 1.0 for s in range(200))  # catapult leaves the decay alone


def test_sleep_at_known_steps() -> None:
    kw = {
        "name": "sleep",
        "period": 100,
        "sleep_fraction": 0.2,
        "sleep_decay_ratio": 10.0,
        "sleep_lr_ratio": 0.5,
    }
    assert value(0, **kw) == value(79, **kw) == (1.0, 1.0)  # awake
    assert value(80, **kw) == value(99, **kw) == (0.5, 10.0)  # asleep: high decay at half the LR
    assert value(100, **kw) == (1.0, 1.0)  # awake again
    assert sum(value(s, **kw)[1] > 1 for s in range(1000)) == 200  # a fifth of every cycle


def test_catapult_sleep_combines_both() -> None:
    kw = {
        "name": "catapult_sleep",
        "period": 100,
        "peak_ratio": 5.0,
        "peak_fraction": 0.2,
        "sleep_fraction": 0.3,
    }
    assert value(10, **kw) == (5.0, 1.0)  # the peak opens the cycle
    assert value(50, **kw) == (1.0, 1.0)
    assert value(70, **kw) == (1.0, 10.0)  # the sleep closes it (default sleep_decay_ratio 10, LR ratio 1)
    with pytest.raises(ConfigError, match="cannot overlap"):
        validate_schedule(ScheduleConfig(name="catapult_sleep", peak_fraction=0.8, sleep_fraction=0.3))


def test_apply_schedule_sets_lr_of_every_group_and_decay_of_the_decay_group() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.5)
    cfg = ScheduleConfig(
        name="sleep", period=10, sleep_fraction=0.5, sleep_decay_ratio=4.0, sleep_lr_ratio=0.1
    )
    assert apply_schedule(optimizer, cfg, 7) == (pytest.approx(1e-4), pytest.approx(2.0))
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["decay"]["lr"] == groups["no_decay"]["lr"] == pytest.approx(1e-4)
    assert groups["decay"]["weight_decay"] == pytest.approx(2.0)
    assert groups["no_decay"]["weight_decay"] == 0.0  # biases and LayerNorm gains are never decayed
    apply_schedule(optimizer, cfg, 2)  # awake: back to the base values, not compounded
    assert groups["decay"]["lr"] == pytest.approx(1e-3) and groups["decay"]["weight_decay"] == pytest.approx(
        0.5
    )
    with pytest.raises(ValueError, match="build_optimizer"):
        apply_schedule(torch.optim.SGD(model.parameters(), lr=0.1), cfg, 0)


@pytest.mark.parametrize(
    ("key", "bad", "message"),
    [
        ("name", "catapul", "schedule.name='catapul' is not allowed. Did you mean 'catapult'? Allowed values: "
         + ", ".join(SCHEDULES)),
        ("shape", "zigzag", "schedule.shape='zigzag' is not allowed. Allowed values: triangle, cosine, square"),
        ("period", 0, "schedule.period=0 must be >= 1"),
        ("peak_ratio", 0.5, "schedule.peak_ratio=0.5 must be >= 1"),
        ("sleep_lr_ratio", 2.0, "schedule.sleep_lr_ratio=2.0 must be in [0, 1]"),
    ],
)  # fmt: skip
def test_a_bad_value_names_the_key_and_what_is_allowed(key: str, bad, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_schedule(OmegaConf.structured(ScheduleConfig(**{key: bad})))
    assert message in str(err.value)


def test_cli_names_the_allowed_schedules_and_keys(capsys) -> None:
    from devlearn.app.cli import main

    with pytest.raises(SystemExit):
        main(["train", "schedule=catapul"])
    err = capsys.readouterr().err
    assert "schedule='catapul' is not allowed. Did you mean 'catapult'?" in err
    assert "Allowed values: constant, cosine, catapult, sleep, catapult_sleep" in err
    with pytest.raises(SystemExit):
        main(["train", "schedule=catapult", "schedule.peak=3"])
    err = capsys.readouterr().err
    assert "Unknown config key 'schedule.peak'" in err and "schedule.peak_ratio" in err
    with pytest.raises(SystemExit):
        main(["train", "schedule=sleep", "device=cpu"])  # the developmental agent's default weight decay is 0
    assert "set agent.weight_decay > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "schedule=catapult", "schedule.shape=zigzag", "device=cpu"])
    assert "schedule.shape='zigzag' is not allowed" in capsys.readouterr().err


def _lr_trace(log_values: dict) -> list[tuple[float, float]]:
    return list(zip(log_values["train/lr"], log_values["train/weight_decay"], strict=True))


def test_schedule_survives_checkpoint_and_resume(tmp_path: Path) -> None:
    """The LR and weight decay of every update after a resume equal those of the run that never stopped."""
    from torch.utils.tensorboard import SummaryWriter

    from devlearn.agents import make_agent, observation_wrappers
    from devlearn.config import DevelopmentalConfig
    from devlearn.envs.vector.make import make_vector_env
    from devlearn.logging.runlog import RunLog

    class RecordingLog(RunLog):
        def __init__(self, writer: SummaryWriter) -> None:
            super().__init__(writer, 10**9, progress=False)
            self.values: dict[str, list[float]] = {}

        def scalars(self, values: dict[str, float], step: int) -> None:
            for tag, v in values.items():
                self.values.setdefault(tag, []).append(float(v))

    schedule = OmegaConf.structured(
        ScheduleConfig(
            name="catapult_sleep", period=3, peak_ratio=4.0, peak_fraction=0.34, sleep_fraction=0.34
        )
    )
    cfg = OmegaConf.structured(DevelopmentalConfig(n_steps=16, batch_size=32, n_epochs=1, weight_decay=0.1))
    cfg.core.window = 2
    per_update = 2 * 16  # 2 envs x 16 steps

    def agent_for(run_dir: Path):
        env_id = "devlearn/CliffEdge-v0"
        env = make_vector_env(env_id, 2, wrappers=observation_wrappers(cfg.name, env_id))
        writer = SummaryWriter(str(run_dir / "tb"))
        return make_agent(cfg, env, 0, "cpu", writer, schedule), RecordingLog(writer)

    full, full_log = agent_for(tmp_path / "full")
    full.learn(8 * per_update, full_log, tmp_path / "full", checkpoint_every=10**9)

    first, first_log = agent_for(tmp_path / "cut")
    first.learn(5 * per_update, first_log, tmp_path / "cut", checkpoint_every=10**9)  # saves at its end
    resumed, resumed_log = agent_for(tmp_path / "cut")
    resumed.load(tmp_path / "cut")
    assert resumed.updates == 5
    resumed.learn(8 * per_update, resumed_log, tmp_path / "cut", checkpoint_every=10**9)

    expected = _lr_trace(full_log.values)
    assert len(expected) == 8
    assert len({lr for lr, _ in expected}) > 1 and len({wd for _, wd in expected}) > 1  # the schedule moved
    assert _lr_trace(first_log.values) + _lr_trace(resumed_log.values) == expected
    for a, b in zip(full.optimizer.param_groups, resumed.optimizer.param_groups, strict=True):
        assert (a["lr"], a["weight_decay"]) == (b["lr"], b["weight_decay"])
