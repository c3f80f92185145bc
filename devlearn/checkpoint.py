"""Checkpoints that survive a kill: atomic writes, safe loads, and the RNG state to continue exactly.

``save`` writes to a temporary file in the same directory and renames it over the old one, so a
run killed mid-write leaves the previous checkpoint intact. ``load`` uses
``torch.load(weights_only=True)``: a checkpoint holds tensors, numbers, strings, lists and dicts,
never pickled code.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def save(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
