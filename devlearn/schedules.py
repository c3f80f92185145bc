"""Learning-rate and weight-decay schedules: pure functions of the step.

Five schedules (``schedule=constant|cosine|catapult|sleep|catapult_sleep`` on the command line):

* ``constant``: the base values (after an optional linear warmup).
* ``cosine``: linear warmup, then a cosine from the base LR down to ``min_lr_ratio`` x base at ``total_steps``.
* ``catapult``: cyclical LR with high peaks. Every ``period`` steps the LR rises to ``peak_ratio`` x base
  and falls back, over the first ``peak_fraction`` of the cycle (``shape``: triangle, cosine or square).
  A short burst at a high LR can throw the weights out of a sharp, memorising minimum (the "catapult"
  phase of Lewkowycz et al. 2020); the rest of the cycle at the base LR settles into a flatter one.
* ``sleep``: cyclical weight decay. The last ``sleep_fraction`` of every cycle is a consolidation
  phase with the weight decay at ``sleep_decay_ratio`` x base, optionally at a lower LR
  (``sleep_lr_ratio``). Decay removes weights the data do not keep paying for, which is how the
  generalising circuit overtakes the memorising one in grokking (Nanda et al. 2023).
* ``catapult_sleep``: both in one cycle, the peak first and the sleep last.

Every function here returns *multipliers* of the base LR and base weight decay, so one schedule
serves any optimizer built by ``devlearn/optim.py`` (its groups carry ``base_lr`` and
``base_weight_decay``); ``apply_schedule`` writes the values into the optimizer. Because the values
depend on nothing but the step, a resumed run that restores its step counter gets exactly the
values of the run that never stopped.

Note that AdamW's decay per step is ``lr x weight_decay`` (decoupled decay), so a sleep phase at a
low LR decays less per step than its ``weight_decay`` alone suggests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from devlearn.errors import ConfigError, check_choice

if TYPE_CHECKING:  # the config schema imports this module: no torch at import time
    import torch

SCHEDULES = ("constant", "cosine", "catapult", "sleep", "catapult_sleep")
SHAPES = ("triangle", "cosine", "square")


@dataclass
class ScheduleConfig:
    """How LR and weight decay move with the step (``schedule.*`` on the command line).

    ``period``, ``warmup_steps`` and ``total_steps`` count the steps of whoever applies the schedule:
    PPO updates for the developmental agent, optimizer steps for ``devlearn grok``.
    """

    name: str = "constant"  # constant | cosine | catapult | sleep | catapult_sleep
    warmup_steps: int = 0  # linear warmup from base / warmup_steps to base (every schedule)
    total_steps: int = 0  # cosine: the step where it reaches its floor (0: the run's length)
    min_lr_ratio: float = 0.1  # cosine: floor LR / base LR
    period: int = 50  # catapult, sleep: steps per cycle
    peak_ratio: float = 10.0  # catapult: peak LR / base LR
    peak_fraction: float = 0.2  # catapult: part of each cycle spent in the peak (at its start)
    shape: str = "triangle"  # catapult: triangle | cosine | square
    sleep_fraction: float = 0.2  # sleep: part of each cycle spent asleep (at its end)
    sleep_decay_ratio: float = 10.0  # sleep: weight decay while asleep / base weight decay
    sleep_lr_ratio: float = 1.0  # sleep: LR while asleep / base LR (< 1: consolidate at a low LR)


class ScheduleValue(NamedTuple):
    """The multipliers of the base LR and the base weight decay at one step."""

    lr: float
    weight_decay: float



def validate_schedule(cfg: Any, prefix: str = "schedule") -> None:
    """Raise ``ConfigError`` naming the key (``schedule.<key>``) and what is allowed."""
    check_choice(f"{prefix}.name", cfg.name, SCHEDULES)
    check_choice(f"{prefix}.shape", cfg.shape, SHAPES)
    for key in ("warmup_steps", "total_steps"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{prefix}.{key}={getattr(cfg, key)!r} must be >= 0.")
    if cfg.period < 1:
        raise ConfigError(f"{prefix}.period={cfg.period!r} must be >= 1 (steps per cycle).")
    for key in ("min_lr_ratio", "sleep_lr_ratio"):
        if not 0 <= getattr(cfg, key) <= 1:
            raise ConfigError(f"{prefix}.{key}={getattr(cfg, key)!r} must be in [0, 1].")
    if cfg.peak_ratio < 1:
        raise ConfigError(
            f"{prefix}.peak_ratio={cfg.peak_ratio!r} must be >= 1 (the peak is above the base LR)."
        )
    if cfg.sleep_decay_ratio < 0:
        raise ConfigError(f"{prefix}.sleep_decay_ratio={cfg.sleep_decay_ratio!r} must be >= 0.")
    for key in ("peak_fraction", "sleep_fraction"):
        if not 0 < getattr(cfg, key) <= 1:
            raise ConfigError(f"{prefix}.{key}={getattr(cfg, key)!r} must be in (0, 1].")
    if cfg.name == "catapult_sleep" and cfg.peak_fraction + cfg.sleep_fraction > 1:
        raise ConfigError(
            f"{prefix}.peak_fraction + {prefix}.sleep_fraction = {cfg.peak_fraction + cfg.sleep_fraction:g} "
            "must be <= 1: the peak opens each cycle and the sleep closes it, they cannot overlap."
        )


def warmup(cfg: Any, step: int) -> float:
    """Linear warmup: ``(step + 1) / warmup_steps`` until it reaches 1."""
    return 1.0 if cfg.warmup_steps <= 0 else min(1.0, (step + 1) / cfg.warmup_steps)


def cosine(cfg: Any, step: int, total_steps: int) -> float:
    """From 1 after warmup down to ``min_lr_ratio`` at ``total_steps`` (and flat after it)."""
    span = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, max(0.0, (step - cfg.warmup_steps) / span))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def bump(shape: str, x: float) -> float:
    """A peak of height 1 over ``x`` in [0, 1): 0 at both ends for triangle and cosine, 1 throughout for square."""
    if shape == "square":
        return 1.0
    if shape == "triangle":
        return 1 - abs(2 * x - 1)
    return 0.5 * (1 - math.cos(2 * math.pi * x))  # cosine


def catapult(cfg: Any, step: int) -> float:
    """LR multiplier: ``1 + (peak_ratio - 1) x bump`` during the first ``peak_fraction`` of each cycle, else 1."""
    phase = (step % cfg.period) / cfg.period
    if phase >= cfg.peak_fraction:
        return 1.0
    return 1 + (cfg.peak_ratio - 1) * bump(cfg.shape, phase / cfg.peak_fraction)


def asleep(cfg: Any, step: int) -> bool:
    """Whether ``step`` falls in the last ``sleep_fraction`` of its cycle."""
    return (step % cfg.period) >= cfg.period * (1 - cfg.sleep_fraction)


def schedule_value(cfg: Any, step: int, total_steps: int = 0) -> ScheduleValue:
    """The LR and weight-decay multipliers of schedule ``cfg`` at ``step`` (a pure function).

    ``total_steps`` is the run's length, used by ``cosine`` when ``cfg.total_steps`` is 0.
    """
    if step < 0:
        raise ValueError(f"step={step} must be >= 0.")
    name, lr, wd = cfg.name, warmup(cfg, step), 1.0
    if name == "cosine":
        total = cfg.total_steps or total_steps
        if total <= 0:
            raise ConfigError(
                "schedule=cosine needs schedule.total_steps > 0 (or a run length to default to)."
            )
        lr *= cosine(cfg, step, total)
    elif name in ("catapult", "catapult_sleep"):
        lr *= catapult(cfg, step)
    elif name not in ("constant", "sleep"):
        check_choice("schedule.name", name, SCHEDULES)
    if name in ("sleep", "catapult_sleep") and asleep(cfg, step):
        lr, wd = warmup(cfg, step) * cfg.sleep_lr_ratio, cfg.sleep_decay_ratio
    return ScheduleValue(lr, wd)


def apply_schedule(
    optimizer: torch.optim.Optimizer, cfg: Any, step: int, total_steps: int = 0
) -> tuple[float, float]:
    """Set every group's ``lr`` (and the ``decay`` group's ``weight_decay``) for ``step``.

    ``optimizer`` comes from ``devlearn.optim.build_optimizer``: its groups carry ``base_lr``
    and ``base_weight_decay``. Returns the LR and the weight decay of the decay group now in force.
    """
    value = schedule_value(cfg, step, total_steps)
    lr, weight_decay = 0.0, 0.0
    for group in optimizer.param_groups:
        if "base_lr" not in group:
            raise ValueError("apply_schedule needs an optimizer from devlearn.optim.build_optimizer.")
        group["lr"] = lr = group["base_lr"] * value.lr
        if group.get("name") == "decay":
            group["weight_decay"] = weight_decay = group["base_weight_decay"] * value.weight_decay
    return lr, weight_decay
