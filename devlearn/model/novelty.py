"""Episodic novelty: a bonus of 1 for the first visit of a state in an episode, 0 after.

An intrinsic reward that is never negative and paid on every step (raw surprise is one) pays the
agent to keep episodes going; an *episodic* first-visit bonus (NovelD's episodic term, E3B's idea
with a count instead of an ellipse) pays each state once per episode, so an episode's bonus is at
most the number of distinct states it reached.

A state is a *key*, an integer:

* ``SimHash``: sign bits of a fixed random Gaussian projection of an embedding (the developmental
  agent's core encoder of o_t, the world model's latent). Equal embeddings give equal keys; the
  chance that two embeddings share a bit is 1 - angle / pi, so distant ones differ in some bit.
* ``byte_keys``: a hash of the raw observation's bytes, for agents without a latent (the SB3 baselines).

``EpisodicNovelty`` holds, per env, the set of keys seen in that env's current episode.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import Tensor

MAX_BITS = 63  # a key is a non-negative int64


class SimHash:
    """Embeddings ``(..., d)`` -> integer keys ``(...)``: the signs of ``bits`` fixed random projections.

    The projection is drawn once from ``seed`` (a standard Gaussian ``(d, bits)`` matrix) and never trained.
    """

    def __init__(self, d: int, bits: int, seed: int, device: torch.device | str = "cpu") -> None:
        if not 1 <= bits <= MAX_BITS:
            raise ValueError(f"bits={bits} must be in 1..{MAX_BITS}.")
        gen = torch.Generator().manual_seed(int(seed))
        self.projection = torch.randn(d, bits, generator=gen).to(device)
        self.weights = (2 ** torch.arange(bits, dtype=torch.long)).to(device)

    def __call__(self, z: Tensor) -> Tensor:
        signs = (z.float() @ self.projection) > 0
        return (signs.long() * self.weights).sum(-1)


def byte_keys(obs: Any, num_envs: int) -> np.ndarray:
    """A key per env from the raw bytes of its observation (a Dict observation: every entry, in key order)."""
    leaves = [obs[k] for k in sorted(obs)] if isinstance(obs, dict) else [obs]
    leaves = [np.ascontiguousarray(np.asarray(x).reshape(num_envs, -1)) for x in leaves]
    keys = np.empty(num_envs, dtype=np.int64)
    for i in range(num_envs):
        h = hashlib.blake2b(digest_size=8)
        for x in leaves:
            h.update(x[i].tobytes())
        keys[i] = int.from_bytes(h.digest(), "little") >> 1  # non-negative int64
    return keys


class EpisodicNovelty:
    """Per env, the keys seen in its current episode; ``bonus`` says which keys are new."""

    def __init__(self, num_envs: int) -> None:
        self.seen: list[set[int]] = [set() for _ in range(num_envs)]

    def bonus(self, keys: Any, episode_start: Any) -> np.ndarray:
        """``(num_envs,)`` float32: 1.0 where env ``i``'s key was not seen yet in its current episode, else 0.0.

        ``episode_start[i]`` True: env ``i``'s episode begins with this key (its set is cleared first,
        so the key is new). Every key is recorded as seen.
        """
        keys = _numpy(keys).reshape(-1).tolist()
        start = _numpy(episode_start).astype(bool).reshape(-1).tolist()
        out = np.zeros(len(self.seen), dtype=np.float32)
        for i, (key, begins, seen) in enumerate(zip(keys, start, self.seen, strict=True)):
            if begins:
                seen.clear()
            if key not in seen:
                seen.add(key)
                out[i] = 1.0
        return out


def _numpy(x: Any) -> np.ndarray:
    return x.cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
