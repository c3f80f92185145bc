"""Stop signals: what a cluster sends before it kills a job, answered with a checkpoint at the next safe point.

SLURM sends SIGTERM on preemption and ``scancel`` (and, with ``--signal=USR1@90``, SIGUSR1 90 s before the
time limit); Kubernetes and ``timeout`` send SIGTERM before SIGKILL; submitit sends SIGUSR2 before the time
limit. ``devlearn train`` answers all three the same way:

* during training, the first one asks the run log to stop (``RunLog.request_stop``): the agent's learn
  loop ends after its current update and saves its checkpoint there; ``devlearn train`` prints one line
  and the command that continues the run, and exits with 128 + the signal's number. A second one, more
  than ``DUPLICATE_S`` later, stops at once, as Ctrl-C does (the checkpoint is saved from where training is).
* outside training (setting up, the final evaluation) it raises ``Stopped``, a ``KeyboardInterrupt``: the
  final evaluation keeps the trained checkpoint and says how to evaluate it.
* the handler that was installed before devlearn's (submitit's, which requeues the job) is called once
  the checkpoint is saved and the line printed (``forward``).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from devlearn.errors import Stopped

if TYPE_CHECKING:  # the run log loads torch's TensorBoard writer; `devlearn --help` answers the signals too
    from devlearn.logging.runlog import RunLog

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, name))
# One signal often arrives twice (SLURM signals every process of the job, and a parent forwards it to its rank 0):
# a repeat this soon after the first is the same request, not an impatient second one.
DUPLICATE_S = 2.0

_previous: dict[int, Any] = {}  # signal -> the handler devlearn's replaced
_training: list[RunLog] = []  # the run log of the training under way in this process (at most one)
_requested_at: list[float] = []


def _handle(signum: int, frame: Any) -> None:
    if _training and not _training[-1].stop_requested:
        _training[-1].request_stop(signum)
        _requested_at[:] = [time.monotonic()]
        return
    if _training and _requested_at and time.monotonic() - _requested_at[0] < DUPLICATE_S:
        return
    raise Stopped(signum)


@contextmanager
def answered() -> Iterator[bool]:
    """Answer the stop signals in this process while the block runs (yields False where Python cannot: off the main
    thread, e.g. a Ray worker); the handlers that were there before come back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    _previous.update({sig: h for sig, h in before.items() if h is not _handle})
    for sig in STOP_SIGNALS:
        signal.signal(sig, _handle)
    try:
        yield True
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def ignored() -> None:
    """Ignore the stop signals in this process (a distributed run's ranks but 0: rank 0 stops the run for all)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextmanager
def training(log: RunLog) -> Iterator[None]:
    """While the block runs, a first stop signal asks ``log`` to stop at the next safe point instead of raising."""
    _training.append(log)
    try:
        yield
    finally:
        _training.remove(log)
        _requested_at.clear()


def forward(signum: int | None) -> None:
    """Call the handler devlearn's replaced for ``signum``, if it is Python's (submitit's requeues the job and exits)."""
    previous = _previous.get(signum) if signum is not None else None
    if callable(previous) and previous is not signal.default_int_handler:
        previous(signum, None)
