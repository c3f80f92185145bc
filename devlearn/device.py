"""Where a run computes: ``device=auto|cpu|cuda`` resolved against what torch sees, and the process-group backend."""

from __future__ import annotations

import torch

from devlearn.errors import ConfigError


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` if torch sees a GPU, else ``cpu``; ``cuda`` without one is a one-line ``ConfigError``."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda, but no CUDA device is available. Allowed here: auto, cpu.")
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def choose_backend(backend: str, device: str, nproc: int) -> str:
    """``distributed.backend``: auto -> NCCL on CUDA, gloo on CPU; checks that NCCL has a GPU per rank."""
    if backend == "auto":
        backend = "nccl" if device == "cuda" else "gloo"
    if backend == "nccl":
        if device != "cuda":
            raise ConfigError(
                f"distributed.backend=nccl needs device=cuda (the run is on {device}). Use distributed.backend=gloo."
            )
        if torch.cuda.device_count() < nproc:
            raise ConfigError(
                f"distributed.nproc={nproc} needs one GPU per process with NCCL; {torch.cuda.device_count()} are "
                f"visible. Use distributed.nproc={max(torch.cuda.device_count(), 1)}."
            )
    return backend
