"""Checkpoints that survive a kill and a full disk: atomic writes, safe loads, and the RNG state to continue exactly.

``save`` writes to a temporary file in the same directory and renames it over the old one, so a
run killed mid-write leaves the previous checkpoint intact. A write that fails (a full disk, a
read-only folder) removes its temporary file, leaves the previous checkpoint as it was, and raises a
one-line ``StorageError`` that says how much space the checkpoint needs (``atomic``). ``load`` uses
``torch.load(weights_only=True)``: a checkpoint holds tensors, numbers, strings, lists and dicts,
never pickled code.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from devlearn.errors import write_error

KEPT = "the previous checkpoint is kept"


@contextmanager
def atomic(path: Path, needed: int | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; once the block has written it, it is fsynced and renamed over ``path``.

    An ``OSError`` in the block or the rename removes the temporary file and becomes a one-line ``StorageError``
    (``needed``: the file's size, if known; else the previous file's is the estimate a full disk reports).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # a read-only folder holds no temporary file to remove
            pass
        if needed is None and path.is_file():
            needed = path.stat().st_size
        raise write_error(err, path, needed, KEPT if path.is_file() else "") from None


def save(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` atomically (temp file + fsync + rename); see ``atomic`` for a failed write.

    The state is serialized in memory first: a full disk then fails in a plain ``write`` (an ``OSError`` naming
    the cause, not torch's zip writer's RuntimeError), and the message can say exactly how many bytes it needs.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(buffer.getbuffer(), path)


def write_bytes(data: bytes | memoryview, path: Path) -> None:
    """Write ``data`` to ``path`` atomically; a failed write says how many bytes it needed (``atomic``)."""
    with atomic(path, needed=memoryview(data).nbytes) as tmp, open(tmp, "wb") as f:
        f.write(data)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save`` (``weights_only=True``: no code is unpickled)."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch global RNG states, in types ``weights_only`` loading accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": list(random.getstate()[1]),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    random.setstate((3, tuple(state["python"]), None))
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, np_state["pos"], np_state["has_gauss"], np_state["gauss"]))
    torch.set_rng_state(state["torch"])


def all_finite(module: torch.nn.Module) -> bool:
    """Whether every parameter of ``module`` is finite (a diverged update leaves NaN or inf behind)."""
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())
