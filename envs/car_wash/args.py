"""The constructor arguments of CarWash, validated once for the single env and its batched twin.

``CarWashEnv(**kwargs)`` and ``CarWashVecEnv(num_envs, **kwargs)`` both build a ``CarWashArgs`` from
their keyword arguments and read every setting from it, so the two can never disagree on what is
allowed, on the error a bad value raises, or on how a value is normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from devlearn.envs.egocentric import check_view

SPLITS: tuple[str, ...] = ("train", "heldout")
RENDER_MODES: list[str] = ["rgb_array"]  # MiniGrid's frames; no window, which headless runs cannot open


def check_split(split: Any) -> str:
    """Return ``split`` if it is a known split, else raise ``ValueError`` naming the allowed values."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    return split


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but True steps or True episodes is a mistake, not a number.
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


@dataclass(frozen=True)
class CarWashArgs:
    """CarWash's settings; construction raises ``ValueError`` naming the first bad one and what is allowed.

    Checked in the order ``split``, ``view``, ``curriculum`` (which applies to ``split="train"`` only),
    ``max_steps``, ``render_mode``; once valid, ``max_steps`` and ``curriculum`` are stored as ``int``.
    """

    split: str = "train"
    max_steps: int = 150
    render_mode: str | None = None
    view: str = "egocentric"
    curriculum: int = 0  # episodes to ramp over from the easiest layouts to the full task; 0 = off

    def __post_init__(self) -> None:
        check_split(self.split)
        check_view(self.view)
        if not _is_int(self.curriculum) or self.curriculum < 0:
            raise ValueError(
                f"curriculum must be an integer >= 0 (episodes to ramp over; 0 = off); got {self.curriculum!r}."
            )
        if self.curriculum and self.split != "train":
            raise ValueError(
                f"curriculum applies to split='train' only (evaluation runs the full task); got split={self.split!r}."
            )
        if not _is_int(self.max_steps) or self.max_steps < 1:
            raise ValueError(f"max_steps must be an integer >= 1, got {self.max_steps!r}.")
        if self.render_mode is not None and self.render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {self.render_mode!r}.")
        # Frozen, so the normalised values go in through object.__setattr__ (the dataclass idiom).
        object.__setattr__(self, "max_steps", int(self.max_steps))
        object.__setattr__(self, "curriculum", int(self.curriculum))
