"""Constructor-argument checks in the ``name=value is not valid; ...`` style of Inbox and Recall.

Each raises ``ValueError`` naming the argument, the value it got and what is allowed, so a typo in
a config fails at construction with a message that says how to fix it. (CliffEdge and CarWash keep
their own, older wording, which tests and the README quote.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise unless ``value`` is one of ``allowed`` (listed in the message as their reprs)."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; allowed values: {', '.join(map(repr, allowed))}.")


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """Return ``value`` as an ``int`` if it is an integer in ``[low, high]`` (numpy integers too, not bools)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name}={value!r} is not valid; it must be an integer in [{low}, {high}].")
    return int(value)
