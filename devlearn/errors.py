"""The errors a user is answered with in one line: a config they got wrong, a run they interrupted.

No Hydra here: the model, the envs and the agents import it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration value or key that devlearn cannot use; the message says what is allowed."""


def check_choice(key: str, value: Any, allowed: Sequence[str]) -> None:
    """Raise ``ConfigError`` unless ``value`` is one of ``allowed``: names the key, the closest match and the choices."""
    if value not in allowed:
        close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{key}={value!r} is not allowed.{hint} Allowed values: {', '.join(map(str, allowed))}.")


class Interrupted(Exception):
    """Ctrl-C during training: the checkpoint was saved; ``run_dir`` continues with ``resume=true``."""

    def __init__(self, run_dir: Path, step: int):
        super().__init__(f"interrupted at step {step:,}; checkpoint saved in {run_dir}")
        self.run_dir, self.step = run_dir, step


class EvaluationInterrupted(Exception):
    """Ctrl-C during the final evaluation: training finished and its checkpoint is on disk; only the table is missing."""

    def __init__(self, run_dir: Path, step: int, split: str):
        super().__init__(
            f"interrupted during the final evaluation; training finished at step {step:,} and its checkpoint "
            f"is saved in {run_dir}. Evaluate it later with: devlearn eval run_dir={run_dir} split={split}"
        )
        self.run_dir, self.step, self.split = run_dir, step, split
