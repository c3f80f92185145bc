"""Start the ranks of a ``distributed.nproc=N`` run on this machine, and report how they ended.

What ``torchrun --nproc_per_node=N`` does for one node, inside ``devlearn train``: the Hydra job (one
run folder, one composed config) starts N processes with ``multiprocessing``'s spawn method; each
joins a process group (gloo on CPU, NCCL on GPUs, one GPU per rank) and runs ``fn(*args)``. The
parent only waits: if a rank fails, the others are stopped (they would wait forever in a collective).

Rank 0's outcome comes back through a queue as a small message, and becomes the same exception a
single-process run raises (``ConfigError``, ``Diverged``, ``Interrupted``), so ``devlearn train``
answers it the same way. Ctrl-C reaches rank 0 only (the other ranks ignore SIGINT): it saves the
checkpoint and reports the step, and the parent then stops the rest. So do the stop signals (SIGTERM,
SIGUSR1, SIGUSR2): the other ranks ignore them, and one sent to the parent alone is passed on to rank 0.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from devlearn.app import signals
from devlearn.errors import ConfigError, Interrupted, Stopped
from devlearn.logging.runlog import Diverged
from devlearn.registry import RegistryError

TIMEOUT = timedelta(minutes=10)  # a collective that waits longer than this fails instead of hanging
INTERRUPT_GRACE_S = 120  # after Ctrl-C, how long rank 0 may take to save its checkpoint


class RankFailed(RuntimeError):
    """A rank ended with an error that is not one devlearn answers in one line (its traceback is above)."""


def free_port() -> int:
    """A TCP port nobody listens on now, for rank 0's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(
    rank: int, nproc: int, backend: str, port: int, queue: Any, fn: Callable[..., Any], args: tuple
) -> None:
    """One rank: join the group, run ``fn(*args)``, put ``(rank, kind, payload)`` on ``queue``."""
    if rank > 0:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is rank 0's to handle (it saves)
        signals.ignored()  # so are the stop signals: rank 0 stops at its safe point, then the parent stops the rest
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc),
    )  # fmt: skip
    if "OMP_NUM_THREADS" not in os.environ:  # share the cores instead of each rank taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, rank=rank, world_size=nproc, timeout=TIMEOUT)
    try:
        with signals.answered():
            fn(*args)
        queue.put((rank, "ok", None))
    except Interrupted as err:
        queue.put((rank, "interrupted", (str(err.run_dir), err.step, err.signum)))
    except Diverged as err:
        queue.put((rank, "diverged", str(err)))
    except (ConfigError, RegistryError) as err:
        queue.put((rank, "config", str(err)))
    except BaseException as err:
        traceback.print_exc()
        queue.put((rank, "error", f"{type(err).__name__}: {err}"[:2000]))
        raise SystemExit(1) from None
    finally:
        dist.destroy_process_group()


def _wait(procs: list[Any], queue: Any) -> tuple[dict[int, tuple[str, Any]], list[int], float | None]:
    """Wait for the ranks: each one's last message, the ranks that failed (in order), when Ctrl-C came."""
    messages: dict[int, tuple[str, Any]] = {}
    failed: list[int] = []  # ranks in the order they failed
    interrupted_at: float | None = None
    try:
        while True:
            try:
                while not queue.empty():
                    r, kind, payload = queue.get()
                    messages[r] = (kind, payload)
                    if kind != "ok" and r not in failed:
                        failed.append(r)
                for r, p in enumerate(procs):
                    if p.exitcode not in (None, 0) and r not in failed:
                        failed.append(r)
                if failed or all(p.exitcode is not None for p in procs):
                    break
                if interrupted_at is not None and time.time() - interrupted_at > INTERRUPT_GRACE_S:
                    break
                time.sleep(0.1)
            except KeyboardInterrupt as err:  # rank 0 got Ctrl-C too: wait for it to save and report
                interrupted_at = interrupted_at or time.time()
                if isinstance(err, Stopped) and procs[0].is_alive():  # a signal sent to this process alone
                    os.kill(procs[0].pid, err.signum)  # rank 0 stops at its next safe point, saved
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()
        while not queue.empty():
            r, kind, payload = queue.get()
            messages.setdefault(r, (kind, payload))
    return messages, failed, interrupted_at


def start(fn: Callable[..., Any], args: tuple, nproc: int, backend: str) -> None:
    """Run ``fn(*args)`` in ``nproc`` ranks; return when all succeeded, else raise rank 0's error.

    ``fn`` and ``args`` must pickle (a module-level function; configs and paths do). Raises what rank 0
    raised (``Interrupted``, ``Diverged``, ``ConfigError``), or ``RankFailed`` naming the first rank
    that failed otherwise.
    """
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = free_port()
    procs = [
        ctx.Process(target=_rank_main, args=(r, nproc, backend, port, queue, fn, args), daemon=False)
        for r in range(nproc)
    ]
    for p in procs:
        p.start()
    messages, failed, interrupted_at = _wait(procs, queue)
    kind, payload = messages.get(0, (None, None))
    if kind == "ok" and not failed:
        return
    if kind == "interrupted":
        run_dir, step, signum = payload
        raise Interrupted(Path(run_dir), step, signum)
    if kind == "diverged":
        raise Diverged(payload)
    if kind == "config":
        raise ConfigError(payload)
    if interrupted_at is not None:
        raise KeyboardInterrupt
    first = failed[0] if failed else 0
    why = messages.get(first, (None, f"exit code {procs[first].exitcode}"))[1]
    raise RankFailed(f"rank {first} of {nproc} failed ({why}); the other ranks were stopped.")
