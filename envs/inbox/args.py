"""The constructor arguments of Inbox, validated once for the single env and its batched twin.

``InboxEnv(**kwargs)`` and ``InboxVecEnv(num_envs, **kwargs)`` both build an ``InboxArgs`` from their
keyword arguments and read every setting from it, so the two can never disagree on what is allowed,
on the error a bad value raises, or on how a value is normalised.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from devlearn.envs.checks import check_choice, check_int
from devlearn.envs.inbox.content import SPLITS

MIN_EMAILS, MAX_EMAILS = 10, 1_000_000
MIN_OBS_BYTES, MAX_OBS_BYTES = 64, 4096
RENDER_MODES: list[str] = ["ansi"]  # a bounded text transcript: the world is text, so no frames


@dataclass(frozen=True)
class InboxArgs:
    """Inbox's settings; construction raises ``ValueError`` naming the first bad one and what is allowed.

    Checked in the order ``split``, ``num_emails``, ``obs_bytes``, ``injection_rate``, ``render_mode``;
    once valid, the integers are stored as ``int`` and ``injection_rate`` as ``float``.
    """

    split: str = "train"
    num_emails: int = 200
    obs_bytes: int = 256
    injection_rate: float = 0.1
    render_mode: str | None = None

    def __post_init__(self) -> None:
        check_choice("split", self.split, SPLITS)
        for name, low, high in (
            ("num_emails", MIN_EMAILS, MAX_EMAILS),
            ("obs_bytes", MIN_OBS_BYTES, MAX_OBS_BYTES),
        ):
            # Frozen, so the normalised value goes in through object.__setattr__ (the dataclass idiom).
            object.__setattr__(self, name, check_int(name, getattr(self, name), low, high))
        rate = self.injection_rate
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate <= 1:
            raise ValueError(f"injection_rate={rate!r} is not valid; it must be a number in [0, 1].")
        object.__setattr__(self, "injection_rate", float(rate))
        check_choice("render_mode", self.render_mode, (None, *RENDER_MODES))
