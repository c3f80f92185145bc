"""What memory is configured with and carries between steps: ``MemoryConfig``, ``MemoryState``, ``Reads``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from devlearn.model.memory.retrieval import RetrievalStore

VARIANTS = ("none", "window", "ssm", "retrieval", "hybrid")
STATS = ("steps", "writes", "hits", "retrieved", "age", "soft_top")  # MemoryState.counts, in this order


@dataclass
class MemoryConfig:
    """Memory for long episodes (``memory=`` on the command line)."""

    variant: str = "hybrid"  # none | window | ssm | retrieval | hybrid
    k: int = 1  # retrieved tokens per step (1: the probe learned recall with 1 and not with 4; docs/benchmarks.md)
    capacity: int = 1024  # stored steps per episode and env (eviction: lowest surprise, then oldest)
    write: str = "always"  # always | surprise (only steps with surprise > threshold are stored)
    threshold: float = 0.0
    n_heads: int = 4  # SSM heads
    d_state: int = 16  # SSM state size per channel
    chunk: int = 64  # SSM chunk length for the parallel scan
    # the gist forgets at least 1/gist_horizon a step (0: unbounded): its state then settles within a few horizons,
    # so a network trained on short episodes meets the same states in long ones (docs/benchmarks.md)
    gist_horizon: int = 0
    soft: bool = True  # one more token: a softmax read over the whole store (gradient to every entry)


class Reads(NamedTuple):
    """What acting's store did over a segment of ``T`` steps (``Memory.replay``), for the update to read again."""

    values: Tensor  # (E, T, k, d) the top-k entries each step read, best first; zeros where not valid
    valid: Tensor  # (E, T, k) bool
    steps: Tensor  # (E, T, k) the episode step each of them was written at; -1 where not valid
    # the soft read's candidates and which of them each step's read saw (None without the soft read):
    # the candidates some step held (``Memory.held_only``), drawn from the store's C slots at the segment's start
    # and the segment's own T steps:
    entries: Tensor | None  # (E, U, d) their embeddings as acting stored them
    held: Tensor | None  # (E, T, U) bool: which of them each step's read saw (``Memory.soft_visibility``)
    written: Tensor | None  # (E, U) the segment position that wrote each of them; -1: in the store at its start

    def select(self, rows: Tensor) -> Reads:
        """The reads of sub-envs ``rows`` only (a ``(R,)`` index), in that order."""
        return Reads(*(None if x is None else x[rows] for x in self))


class MemoryState:
    """What memory carries from step to step for ``E`` sub-envs: the SSM state, the store and each episode's step."""

    def __init__(self, ssm: Tensor | None, store: RetrievalStore | None, t: Tensor) -> None:
        self.ssm, self.store, self.t = ssm, store, t
        # the episode steps the latest ``Memory.step`` read from the store, best first: (E, k), -1 where empty
        self.last_read: Tensor | None = None
        # what the latest ``Memory.step`` did to the store: its top-k values (E, k, d) and validity (E, k), and the
        # slot its write went to (E,), -1 where not stored. A context keeps them per step (``Memory.reads``).
        self.last_values: Tensor | None = None
        self.last_valid: Tensor | None = None
        self.last_slot: Tensor | None = None
        # what acting did since ``pop_stats`` (``Memory.step`` counts; ``sequence`` replays and does not)
        self.counts = torch.zeros(len(STATS), device=t.device)

    def pop_stats(self) -> dict[str, float]:
        """``memory/`` scalars since the last call: store size, write rate, hit rate, age of retrieved steps, SSM state norm."""
        c = dict(zip(STATS, self.counts.tolist(), strict=True))
        self.counts = torch.zeros_like(self.counts)
        out: dict[str, float] = {}
        if self.store is not None:
            out["memory/store_size"] = float(self.store.size.float().mean())
            out["memory/store_bytes"] = float(self.store.nbytes)
            out["memory/write_rate"] = c["writes"] / max(c["steps"], 1)  # stored / offered
            out["memory/hit_rate"] = c["hits"] / max(c["steps"], 1)  # reads that returned >= 1 entry
            out["memory/retrieved_age"] = c["age"] / max(c["retrieved"], 1)  # steps back, mean over entries
            if c["soft_top"] > 0:  # the soft read's largest weight, mean over reads: 1 = all on one step, 1/n = uniform
                out["memory/soft_top_weight"] = c["soft_top"] / max(c["hits"], 1)
        if self.ssm is not None:
            out["memory/ssm_state_norm"] = float(self.ssm.detach().flatten(1).norm(dim=1).mean())
        return out

    def snapshot(self) -> MemoryState:
        """An independent copy: save it at a segment's start, replay the segment from it in the update."""
        return MemoryState(  # its counts start at zero: a replay counts nothing
            None if self.ssm is None else self.ssm.clone(),
            None if self.store is None else self.store.clone(),
            self.t.clone(),
        )

    def select(self, rows: Tensor, store: bool = True) -> MemoryState:
        """An independent copy holding sub-envs ``rows`` only (a ``(R,)`` index), in that order: an update replays
        the few sub-envs of its minibatch, not all of them. ``store=False`` leaves the store out (a ``sequence``
        given the segment's ``Reads`` does not read it)."""
        return MemoryState(
            None if self.ssm is None else self.ssm[rows],
            None if self.store is None or not store else self.store.select(rows),
            self.t[rows],
        )

    @property
    def nbytes(self) -> int:
        """Bytes held (bounded by the store's capacity and the SSM state's size)."""
        ssm = 0 if self.ssm is None else self.ssm.numel() * self.ssm.element_size()
        return ssm + (0 if self.store is None else self.store.nbytes) + self.t.numel() * self.t.element_size()
