"""The errors a user is answered with in one line: a config they got wrong, a run they stopped, a disk that failed.

No Hydra here: the model, the envs and the agents import it.
"""

from __future__ import annotations

import difflib
import errno
import shutil
import signal
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


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGUSR1, SIGUSR2: what a cluster sends before it kills a job) outside training.

    A ``KeyboardInterrupt``, so every place that answers Ctrl-C answers it the same way (the final evaluation
    keeps the trained checkpoint; a distributed run's parent waits for rank 0). During training a first stop
    signal does not raise: the run checkpoints at its next safe point (``devlearn/app/signals.py``).
    """

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int | None) -> str:
    """``15`` -> ``"SIGTERM"``; None (Ctrl-C seen as KeyboardInterrupt) -> ``"Ctrl-C"``."""
    return "Ctrl-C" if signum is None else signal.Signals(signum).name


def exit_code(signum: int | None) -> int:
    """The shell's convention: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (2 if signum is None else signum)


class Interrupted(Exception):
    """Training stopped by Ctrl-C or a stop signal: the checkpoint was saved; ``run_dir`` continues with ``resume=true``.

    ``signum``: the signal that stopped it (None: Ctrl-C).
    """

    def __init__(self, run_dir: Path, step: int, signum: int | None = None):
        how = "interrupted" if signum is None else f"stopped by {signal_name(signum)}"
        super().__init__(f"{how} at step {step:,}; checkpoint saved in {run_dir}")
        self.run_dir, self.step, self.signum = run_dir, step, signum


class EvaluationInterrupted(Exception):
    """Ctrl-C (or a stop signal) during the final evaluation: training finished and its checkpoint is on disk; only
    the table is missing."""

    def __init__(self, run_dir: Path, step: int, split: str, signum: int | None = None):
        how = "interrupted" if signum is None else f"stopped by {signal_name(signum)}"
        super().__init__(
            f"{how} during the final evaluation; training finished at step {step:,} and its checkpoint "
            f"is saved in {run_dir}. Evaluate it later with: devlearn eval run_dir={run_dir} split={split}"
        )
        self.run_dir, self.step, self.split, self.signum = run_dir, step, split, signum


class StorageError(OSError):
    """A file devlearn could not write (a full disk, a read-only or missing folder); the message says what was kept.

    An ``OSError`` with ``errno`` and ``filename`` set, so code that handles OSError handles it too.
    """

    def __init__(self, err: OSError, message: str):
        super().__init__(err.errno, message, err.filename)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _size(n: float) -> str:
    return f"{n / 2**20:,.1f} MB" if n >= 2**20 / 10 else f"{n / 2**10:,.1f} KB"


def write_error(err: OSError, path: Path, needed: int | None = None, kept: str = "") -> StorageError:
    """``err`` (raised writing ``path``) as a one-line ``StorageError``: what failed, why, and what to do.

    ``needed``: the bytes the file needs (a full disk says how much more must be freed); ``kept``: what survived,
    e.g. "the previous checkpoint is kept".
    """
    path = Path(path)
    tail = f" {kept[0].upper()}{kept[1:]}." if kept else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        free = _free_bytes(path.parent)
        if needed is not None and free is not None:
            why = f"it needs {_size(needed)} and {_size(free)} {'is' if free < 2 else 'are'} free there"
            todo = f"Free at least {_size(max(needed - free, 0) + 2**20)} there"
        else:
            why, todo = "the disk is full", "Free some space there"
        return StorageError(err, f"no space left on the device to write {path}: {why}.{tail} {todo}.")
    if err.errno == errno.EROFS:
        return StorageError(err, f"cannot write {path}: {path.parent} is on a read-only filesystem.{tail} Use a writable folder.")
    if err.errno in (errno.EACCES, errno.EPERM):
        return StorageError(err, f"cannot write {path}: permission denied.{tail} Use a folder you can write to.")
    if err.errno in (errno.ENOTDIR, errno.EEXIST) and not path.parent.is_dir():
        return StorageError(err, f"cannot write {path}: {_first_file(path)} is a file, not a folder.{tail} Use another folder.")
    return StorageError(err, f"cannot write {path}: {err.strerror or err}.{tail}")


def _free_bytes(folder: Path) -> int | None:
    """Free bytes on the filesystem holding ``folder`` (or its nearest existing parent), None if unknown."""
    for candidate in (folder, *folder.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def _first_file(path: Path) -> Path:
    """The first ancestor of ``path`` that exists but is not a folder (what blocks creating ``path``)."""
    for candidate in reversed([path, *path.parents]):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return path.parent
