"""The constructor arguments of CliffEdge, validated once for the single env and its batched twin.

``CliffEdgeEnv(**kwargs)`` and ``CliffEdgeVecEnv(num_envs, **kwargs)`` both build a ``CliffEdgeArgs``
from their keyword arguments and read every setting from it, so the two can never disagree on
what is allowed, on the error a bad value raises, or on how a value is normalised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from devlearn.envs.egocentric import check_view

SPLITS: tuple[str, ...] = ("train", "heldout")
# rgb_array only: frames are MiniGrid's; a window would get in the way of headless training and checks.
RENDER_MODES: list[str] = ["rgb_array"]


def check_split(split: Any) -> str:
    """Return ``split`` if it is a known split, else raise ``ValueError`` naming the allowed values."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(repr(s) for s in SPLITS)}; got {split!r}.")
    return split


@dataclass(frozen=True)
class CliffEdgeArgs:
    """CliffEdge's settings; construction raises ``ValueError`` naming the first bad one and what is allowed.

    Checked in the order ``split``, ``view``, ``slip``, ``max_steps``, ``render_mode``; once valid,
    ``slip`` is stored as a ``float`` and ``max_steps`` as an ``int`` (numpy scalars are accepted).
    """

    split: str = "train"
    slip: float = 0.0
    max_steps: int = 100
    render_mode: str | None = None
    view: str = "egocentric"

    def __post_init__(self) -> None:
        check_split(self.split)
        check_view(self.view)
        slip, max_steps = self.slip, self.max_steps
        if isinstance(slip, bool) or not isinstance(slip, Real) or math.isnan(slip) or not 0.0 <= slip < 1.0:
            raise ValueError(f"slip must be a probability in [0, 1); got {slip!r}.")
        if isinstance(max_steps, bool) or not isinstance(max_steps, Integral) or max_steps < 1:
            raise ValueError(f"max_steps must be an integer >= 1; got {max_steps!r}.")
        if self.render_mode is not None and self.render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode must be None or one of {RENDER_MODES}; got {self.render_mode!r}.")
        # Frozen, so the normalised values go in through object.__setattr__ (the dataclass idiom).
        object.__setattr__(self, "slip", float(slip))
        object.__setattr__(self, "max_steps", int(max_steps))
