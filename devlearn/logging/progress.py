"""Console progress lines: the bar of training and evaluation.

``bar`` draws the ``[#####.....]`` of every progress line (``RunLog`` for training, ``EpisodeProgress``
for evaluation). A sweep's line per finished job is the app's (``devlearn/app/progress.py``).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 30
PRINT_EVERY = 2.0  # seconds between two progress lines


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``[#########.....................]``: ``fraction`` (clipped to [0, 1]) of ``width`` filled."""
    filled = int(width * min(max(fraction, 0.0), 1.0))
    return "[" + "#" * filled + "." * (width - filled) + "]"


class EpisodeProgress:
    """Evaluation's progress line, in the style of training's: episodes done, env steps, steps/s.

    ``[##########....................] eval heldout argmax: 8/24 episodes | 1,608 steps | 3,050 steps/s``

    Printed at most every ``PRINT_EVERY`` seconds and once at the end (``finish``); on a terminal the
    line is redrawn in place.
    """

    def __init__(self, label: str, episodes: int, stream: TextIO | None = None) -> None:
        self.label, self.total = label, episodes
        self.stream = stream if stream is not None else sys.stdout
        self.t0 = time.time()
        self._next_print = self.t0 + PRINT_EVERY

    def line(self, episodes: int, steps: int) -> str:
        rate = steps / max(time.time() - self.t0, 1e-9)
        return (
            f"{bar(episodes / max(self.total, 1))} {self.label}: {episodes:,}/{self.total:,} episodes | "
            f"{steps:,} steps | {rate:,.0f} steps/s"
        )

    def update(self, episodes: int, steps: int) -> None:
        """Show ``episodes`` finished after ``steps`` env steps (if the last line is ``PRINT_EVERY`` s old)."""
        if time.time() >= self._next_print:
            self._next_print = time.time() + PRINT_EVERY
            tty = getattr(self.stream, "isatty", lambda: False)()
            print(self.line(episodes, steps), end="\r" if tty else "\n", file=self.stream, flush=True)

    def finish(self, episodes: int, steps: int) -> None:
        """The last line: every episode done."""
        print(self.line(episodes, steps), file=self.stream, flush=True)
