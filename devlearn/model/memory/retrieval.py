"""A per-episode retrieval store, one per sub-env, batched on the agent's device.

Each sub-env's store holds up to ``capacity`` entries of this episode: a ``key`` (what a query is
matched against), a ``value`` (what a read returns to the core), an ``item`` (the verbatim
observation tokens, or any fixed-shape payload such as the raw observation's index in a rollout
buffer), the episode ``step`` it was written at and its ``surprise``.

* **Writes** (``write``): one candidate entry per sub-env per call. ``write="always"`` stores every
  candidate; ``write="surprise"`` only those with ``surprise > threshold`` (store what the world
  model failed to predict).
* **Eviction**: a full store keeps the ``capacity`` entries of highest surprise. The victim is the
  stored entry of lowest surprise, ties broken by age (oldest step first); a candidate whose surprise
  is below every stored one is itself dropped. With equal surprises everywhere (e.g. ``"always"``
  with a constant surprise) this is FIFO: the store is a window over the most recent steps.
* **Reads** (``read``): the query's top-``k`` entries by inner product, for every sub-env at once
  (one ``bmm`` and one ``topk``; empty slots are masked; on the CPU only the slots in use, ``span``),
  with a validity mask for stores holding fewer than ``k`` entries. ``scores`` is that ``bmm`` alone, for a caller that also wants a soft
  read over every entry (``Memory``) without paying for it twice. Brute force on the device is the default because it is exact and, at
  the sizes an episode reaches, fast (``bench/memory_retrieval.py``; docs/benchmarks.md).
* **Memory** is allocated once at construction and bounded by ``capacity``: ``nbytes``.

Stored tensors are detached copies: the store is a record of what was seen, not part of the
autograd graph; an update that needs gradients recomputes keys and values from stored inputs.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import Tensor

WRITE_MODES = ("always", "surprise")


class Retrieved(NamedTuple):
    """The result of ``RetrievalStore.read`` for ``E`` sub-envs, ``Q`` queries each, ``k`` entries each."""

    values: Tensor  # (E, Q, k, value_dim); zeros where not valid
    items: Tensor  # (E, Q, k, *item_shape); zeros where not valid
    steps: Tensor  # (E, Q, k) long; -1 where not valid
    surprise: Tensor  # (E, Q, k); 0 where not valid
    scores: Tensor  # (E, Q, k) inner products, best first; -inf where not valid
    slots: Tensor  # (E, Q, k) long slot indices into the store; -1 where not valid
    valid: Tensor  # (E, Q, k) bool: the entry exists (the store held at least that many)


class RetrievalStore:
    """``num_envs`` episodic stores of ``capacity`` entries each (see the module docstring).

    Args:
        num_envs: sub-envs ``E``, one store each.
        capacity: entries per sub-env's episode.
        key_dim: width of keys and queries.
        value_dim: width of values.
        item_shape: shape of the verbatim payload per entry (``()`` for one index per entry).
        item_dtype: its dtype (``torch.long`` for token ids or indices, ``torch.uint8`` for raw bytes).
        write: ``"always"`` or ``"surprise"`` (only entries with ``surprise > threshold``).
        threshold: the surprise gate of ``write="surprise"``.
        device: where every buffer lives (the agent's device).
        dtype: dtype of keys, values and surprise.
    """

    def __init__(
        self,
        num_envs: int,
        capacity: int,
        key_dim: int,
        value_dim: int,
        item_shape: tuple[int, ...] = (),
        item_dtype: torch.dtype = torch.long,
        write: str = "always",
        threshold: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        for name, value in (
            ("num_envs", num_envs),
            ("capacity", capacity),
            ("key_dim", key_dim),
            ("value_dim", value_dim),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RetrievalStore: {name}={value!r} must be a positive integer.")
        if write not in WRITE_MODES:
            raise ValueError(
                f"RetrievalStore: write={write!r} is not valid; allowed values: {', '.join(WRITE_MODES)}."
            )
        self.num_envs, self.capacity, self.key_dim, self.value_dim = num_envs, capacity, key_dim, value_dim
        self.item_shape, self.write_mode, self.threshold = tuple(item_shape), write, float(threshold)
        e, c = num_envs, capacity
        self.keys = torch.zeros(e, c, key_dim, dtype=dtype, device=device)
        self.values = torch.zeros(e, c, value_dim, dtype=dtype, device=device)
        self.items = torch.zeros(e, c, *self.item_shape, dtype=item_dtype, device=device)
        self.steps = torch.full((e, c), -1, dtype=torch.long, device=device)
        self.surprise = torch.zeros(e, c, dtype=dtype, device=device)
        self.filled = torch.zeros(e, c, dtype=torch.bool, device=device)
        self._rows = torch.arange(e, device=self.keys.device)

    # --- bookkeeping ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.keys.device

    @property
    def size(self) -> Tensor:
        """``(E,)`` entries held by each sub-env's store."""
        return self.filled.sum(1)

    def span(self) -> int:
        """Slots ``0 .. span - 1`` hold every stored entry of every sub-env, so reads look no further.

        Writes fill the first empty slot, so an episode of ``n`` steps occupies about its first ``n`` slots, and a
        read of a short episode (Recall's 21 steps, against a capacity of 1,024) need not score the empty rest.
        On the CPU it is exact (a scan of ``filled``); on an accelerator it is ``capacity``: reading it there
        would stall every step on a device-to-host copy. At least 1, so a read of empty stores still has a slot.
        """
        if self.device.type != "cpu":
            return self.capacity
        used = self.filled.any(0).nonzero()
        return int(used[-1]) + 1 if len(used) else 1

    @property
    def nbytes(self) -> int:
        """Bytes held by the store: fixed at construction, so bounded by ``capacity``."""
        buffers = (self.keys, self.values, self.items, self.steps, self.surprise, self.filled)
        return sum(b.numel() * b.element_size() for b in buffers)

    def clone(self) -> RetrievalStore:
        """An independent copy (e.g. the store at a rollout segment's start, for the update to replay from)."""
        twin = copy.copy(self)
        for name in ("keys", "values", "items", "steps", "surprise", "filled"):
            setattr(twin, name, getattr(self, name).clone())
        return twin

    def select(self, rows: Tensor) -> RetrievalStore:
        """An independent copy holding the stores of sub-envs ``rows`` only (a ``(R,)`` index), in that order."""
        twin = copy.copy(self)
        for name in ("keys", "values", "items", "steps", "surprise", "filled"):
            setattr(twin, name, getattr(self, name)[rows])  # advanced indexing copies
        twin.num_envs = len(rows)
        twin._rows = torch.arange(len(rows), device=self.device)
        return twin

    def reset(self, mask: Tensor | None = None) -> None:
        """Empty the stores of the sub-envs where ``mask`` (``(E,)`` bool) is True (all when None): an episode starts.

        Only ``filled`` and ``steps`` are cleared: every reader masks by ``filled``, so an emptied slot's old
        key, value and item are unreachable until a write overwrites them. (Zeroing them with a boolean
        index cost 2 ms a step on the CPU at capacity 1,024: most of a memory step, even with nothing to reset.)
        """
        mask = self._check(mask, "mask", (self.num_envs,), torch.bool) if mask is not None else None
        if mask is None:
            self.filled.fill_(False)
            self.steps.fill_(-1)
            return
        self.filled &= ~mask.unsqueeze(1)
        self.steps.masked_fill_(mask.unsqueeze(1), -1)

    # --- writing ----------------------------------------------------------------------------------
    def write(
        self,
        key: Tensor,
        value: Tensor,
        item: Tensor,
        step: Tensor,
        surprise: Tensor | None = None,
        active: Tensor | None = None,
    ) -> Tensor:
        """Offer one entry per sub-env; returns ``(E,)`` long: the slot each entry went to, -1 where it was not stored.

        Args:
            key: ``(E, key_dim)``; value: ``(E, value_dim)``; item: ``(E, *item_shape)``.
            step: ``(E,)`` the episode step of the entry.
            surprise: ``(E,)``; required for ``write="surprise"``, zeros otherwise.
            active: optional ``(E,)`` bool: sub-envs that offer nothing this call are False.
        """
        e = self.num_envs
        key = self._check(key, "key", (e, self.key_dim))
        value = self._check(value, "value", (e, self.value_dim))
        item = self._check(item, "item", (e, *self.item_shape))
        step = self._check(step, "step", (e,))
        if surprise is None:
            if self.write_mode == "surprise":
                raise ValueError("RetrievalStore(write='surprise').write needs surprise, an (E,) tensor.")
            surprise = torch.zeros(e, dtype=self.surprise.dtype, device=self.device)
        surprise = self._check(surprise, "surprise", (e,))
        gate = torch.ones(e, dtype=torch.bool, device=self.device)
        if active is not None:
            gate &= self._check(active, "active", (e,), torch.bool)
        if self.write_mode == "surprise":
            gate &= surprise > self.threshold

        # Where each candidate would go: the first empty slot, else the eviction victim
        # (lowest surprise, then oldest step).
        empty = ~self.filled
        has_empty = empty.any(1)
        lowest = self.surprise.masked_fill(empty, torch.inf).min(1, keepdim=True).values
        tied = self.filled & (self.surprise == lowest)
        victim = self.steps.masked_fill(~tied, torch.iinfo(torch.long).max).argmin(1)
        target = torch.where(has_empty, empty.long().argmax(1), victim)
        # A full store takes the candidate only if it is not the lowest-surprise entry itself
        # (ties go to the candidate: it is the newest).
        stored = gate & (has_empty | (surprise.to(self.surprise.dtype) >= self.surprise[self._rows, target]))

        rows, slot = self._rows[stored], target[stored]
        self.keys[rows, slot] = key[stored].detach().to(self.keys.dtype)
        self.values[rows, slot] = value[stored].detach().to(self.values.dtype)
        self.items[rows, slot] = item[stored].detach().to(self.items.dtype)
        self.steps[rows, slot] = step[stored].long()
        self.surprise[rows, slot] = surprise[stored].detach().to(self.surprise.dtype)
        self.filled[rows, slot] = True
        return torch.where(stored, target, -1)

    # --- reading ----------------------------------------------------------------------------------
    def scores(self, query: Tensor) -> Tensor:
        """``(E, Q, span)`` inner products of ``query`` (``(E, key_dim)`` or ``(E, Q, key_dim)``) with the slots in use.

        Index ``i`` of the last axis is the store's slot ``i``; -inf where empty (``span()`` slots in all).
        """
        if query.dim() == 2:
            query = query.unsqueeze(1)
        query = self._check(query, "query", (self.num_envs, query.shape[1], self.key_dim))
        span = self.span()
        scores = torch.bmm(query.to(self.keys.dtype), self.keys[:, :span].transpose(1, 2))
        return scores.masked_fill(~self.filled[:, :span].unsqueeze(1), -torch.inf)

    def read(self, query: Tensor, k: int, scores: Tensor | None = None) -> Retrieved:
        """The top-``k`` entries of each sub-env's store by inner product with ``query``.

        ``query``: ``(E, key_dim)`` (one query per sub-env) or ``(E, Q, key_dim)``; results are
        ``(E, Q, k, ...)`` (``Q = 1`` for the first form), best first. Entries past the store's
        size (or past ``capacity`` when ``k > capacity``) are marked not ``valid``. ``scores``:
        ``self.scores(query)`` when the caller has it already.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"RetrievalStore.read: k={k!r} must be a positive integer.")
        if scores is None:
            scores = self.scores(query)
        top, slots = scores.topk(min(k, scores.shape[-1]), dim=-1)
        valid = torch.isfinite(top)
        rows = self._rows[:, None, None]
        grown = valid.view(*valid.shape, *(1,) * len(self.item_shape))
        out = Retrieved(
            values=self.values[rows, slots] * valid.unsqueeze(-1),
            items=torch.where(grown, self.items[rows, slots], 0),
            steps=torch.where(valid, self.steps[rows, slots], -1),
            surprise=torch.where(valid, self.surprise[rows, slots], 0),
            scores=top,
            slots=torch.where(valid, slots, -1),
            valid=valid,
        )
        if k > top.shape[-1]:  # more asked than the slots in use (at most the capacity): pad with invalid entries
            fills = (0, 0, -1, 0, -torch.inf, -1, False)  # in the order of Retrieved's fields
            out = Retrieved(*(_pad(x, k, fill) for x, fill in zip(out, fills, strict=True)))
        return out

    # --- helpers ----------------------------------------------------------------------------------
    def _check(
        self, x: Tensor, name: str, shape: tuple[int, ...], dtype: torch.dtype | None = None
    ) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"RetrievalStore: {name} must be a torch.Tensor, got {type(x).__name__}.")
        if tuple(x.shape) != shape:
            raise ValueError(f"RetrievalStore: {name} must have shape {shape}, got {tuple(x.shape)}.")
        if dtype is not None and x.dtype != dtype:
            raise ValueError(f"RetrievalStore: {name} must be {dtype}, got {x.dtype}.")
        return x.to(self.device)


def _pad(x: Tensor, k: int, fill: float | bool) -> Tensor:
    """Pad dim 2 (the ``k`` entries) of a ``Retrieved`` field to ``k`` with ``fill``."""
    extra = x.new_full((*x.shape[:2], k - x.shape[2], *x.shape[3:]), fill)
    return torch.cat([x, extra], dim=2)
