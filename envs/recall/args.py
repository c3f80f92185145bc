"""The constructor arguments of Recall, validated once for the single env and its batched twin.

``RecallEnv(**kwargs)`` and ``RecallVecEnv(num_envs, **kwargs)`` both build a ``RecallArgs`` from their
keyword arguments and read every setting from it, so the two can never disagree on what is allowed,
on the error a bad value raises, or on how a value is normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

from devlearn.envs.checks import check_choice, check_int

SPLITS: tuple[str, ...] = ("train", "heldout")
MIN_DELAY, MAX_DELAY = 1, 1_000_000
MIN_FACTS, MAX_FACTS = 2, 256
MIN_DISTRACTORS, MAX_DISTRACTORS = 1, 4096
RENDER_MODES: list[str] = ["ansi"]  # one text line per step: the world is two symbols, so no frames


@dataclass(frozen=True)
class RecallArgs:
    """Recall's settings; construction raises ``ValueError`` naming the first bad one and what is allowed.

    Checked in the order ``split``, ``delay``, ``num_facts``, ``num_distractors``, ``render_mode``;
    once valid, the integers are stored as ``int`` (numpy integers are accepted).
    """

    split: str = "train"
    delay: int = 100
    num_facts: int = 4
    num_distractors: int = 16
    render_mode: str | None = None

    def __post_init__(self) -> None:
        check_choice("split", self.split, SPLITS)
        for name, low, high in (
            ("delay", MIN_DELAY, MAX_DELAY),
            ("num_facts", MIN_FACTS, MAX_FACTS),
            ("num_distractors", MIN_DISTRACTORS, MAX_DISTRACTORS),
        ):
            # Frozen, so the normalised value goes in through object.__setattr__ (the dataclass idiom).
            object.__setattr__(self, name, check_int(name, getattr(self, name), low, high))
        check_choice("render_mode", self.render_mode, (None, *RENDER_MODES))
