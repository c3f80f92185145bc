"""The sequence context: what the core sees for each sub-env, built in one place.

The core reads a *window*: the last ``W`` (observation, action) steps of one sub-env's episode,
plus (when memory is on) extra tokens and a recurrent state. ``SequenceContext`` is the only
code that builds windows, for every reader:

* acting, in training (``DevelopmentalAgent._collect``) and in evaluation (``DevelopmentalPolicy``):
  ``acting_window(j)``, from observations encoded once as they arrive;
* the PPO + world-model update: ``training_window(env, j, encoder)``, the same slots re-encoded
  with gradients, so what the agent acted on is, tensor for tensor, what it learns from
  (``tests/model/test_context.py`` checks it).

Storage: one stream per sub-env of ``L = W - 1 + n_steps + 1`` positions: the last ``W - 1``
steps before the segment (context for its first windows), the segment's ``n_steps`` steps and
the observation after the last one. Position ``j`` holds o_j and the action taken from it; its
window is positions ``j - W + 1 .. j`` and its next observation is position ``j + 1``. Every
position carries an episode id; a window slot is *valid* only if it belongs to the episode of the
window's last step, so no window spans an episode's start. ``carry_over`` moves the last ``W``
positions to the front for the next segment (together with any per-position buffers the caller
keeps aligned with the streams, e.g. rewards).

Memory (``devlearn.model.memory.Memory``, optional): each stored observation also advances the
memory (``Memory.step``) and its memory tokens are kept at its position; a window's tokens are those
of its *last* step (``Core.layout`` shows them to that step only, so no earlier slot's prediction
sees a later observation). The memory state before the segment's first position is kept
(``memory_start``), and the update replays the whole segment from it (``Memory.sequence``), as
sb3-contrib's RecurrentPPO replays LSTM states: the tokens the update reads equal acting's, with
gradients. What the retrieval store returned at each position, and where each write went, is kept as
acting did it, so the replay reads the very entries acting read. Episode starts reset memory, so does
``begin``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from devlearn.model.memory import Memory, MemoryState, Reads

Tree = Any  # a tensor, or a dict of trees (Dict observations)
Encoder = Callable[[Tree], Tensor]  # observations (*lead, ...) -> (*lead, d_model)


def tree_map(fn: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """Apply ``fn`` leaf-wise to one or several trees of the same structure."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v, *(r[k] for r in rest)) for k, v in tree.items()}
    return fn(tree, *rest)


def to_device(obs: Any, device: torch.device) -> Tree:
    """A batch of (numpy) observations -> a tree of tensors on ``device``."""
    return tree_map(lambda x: torch.as_tensor(np.asarray(x)).to(device, non_blocking=True), obs)


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` for an integer ``index`` of any shape, with a backward that is the same run to run.

    Overlapping windows repeat rows, and the backward of ``x[index]`` then sums into them with
    ``index_put_(accumulate=True)``, whose order on a multi-threaded CPU changes from call to call:
    two runs of one seed drifted apart from this alone (``tests/app/test_deterministic.py``).
    ``index_select``'s backward sums in index order: the single-threaded result, on any thread count.
    """
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


def zeros_like_space(space: spaces.Space, lead: tuple[int, ...], device: torch.device) -> Tree:
    """A zero tree shaped ``(*lead, *space.shape)`` with the space's dtype."""
    if isinstance(space, spaces.Dict):
        return {k: zeros_like_space(s, lead, device) for k, s in space.spaces.items()}
    dtype = torch.from_numpy(np.zeros(0, dtype=space.dtype)).dtype
    return torch.zeros(*lead, *space.shape, dtype=dtype, device=device)


class Window(NamedTuple):
    """What the core reads for a batch of windows (``B`` windows of ``W`` steps)."""

    obs: Tensor  # (B, W, d) encoded observations
    act: Tensor  # (B, W) actions; while acting, the last slot's is a placeholder the core ignores
    valid: Tensor  # (B, W) bool: the slot belongs to the episode of the window's last step
    memory: Tensor | None = None  # (B, M, d) memory tokens of the window's last step, or None


class SequenceContext:
    """Per-sub-env streams of steps, and the windows cut from them (see the module docstring).

    Segment step ``t`` lives at position ``first + t``, ``first = window - 1``.
    """

    def __init__(
        self,
        obs_space: spaces.Space,
        num_envs: int,
        n_steps: int,
        window: int,
        d_model: int,
        device: torch.device,
        memory: Memory | None = None,
    ) -> None:
        if window < 1 or n_steps < 1:
            raise ValueError(f"window={window} and n_steps={n_steps} must both be >= 1.")
        if memory is not None and memory.n_tokens == 0:
            memory = None  # ``none`` and ``window``: the window is all there is
        self.num_envs, self.n_steps, self.window = num_envs, n_steps, window
        self.first = window - 1
        self.length = window - 1 + n_steps + 1
        lead = (num_envs, self.length)
        self.obs = zeros_like_space(obs_space, lead, device)
        self.enc = torch.zeros(*lead, d_model, device=device)  # encoded observations, for acting
        self.act = torch.zeros(lead, dtype=torch.long, device=device)
        self.episode = torch.full(lead, -1, dtype=torch.long, device=device)
        self.start = torch.zeros(lead, dtype=torch.bool, device=device)  # an episode begins at this position
        self._offsets = torch.arange(-window + 1, 1, device=device)
        self.memory = memory
        if memory is not None:
            self.mem = torch.zeros(*lead, memory.n_tokens, d_model, device=device)  # tokens, for acting
            # surprise of the observation at each position (write="surprise"); set by the caller before ``put``
            self.surprise = torch.zeros(lead, device=device)
            self.memory_state: MemoryState = memory.initial_state(num_envs, device)
            self.memory_start: MemoryState = self.memory_state.snapshot()  # before position ``first``
            if memory.uses_store:  # what acting's store did at each position: the update reads it again
                k = memory.cfg.k
                self.read_values = torch.zeros(*lead, k, d_model, device=device)
                self.read_valid = torch.zeros(*lead, k, dtype=torch.bool, device=device)
                self.read_steps = torch.full((*lead, k), -1, dtype=torch.long, device=device)
                self.write_slot = torch.full(lead, -1, dtype=torch.long, device=device)
            self._reads: Reads | None = None  # the store's reads over the segment (the update's)

    # --- writing ----------------------------------------------------------------------------
    def begin(self, obs: Tree, encoder: Encoder) -> None:
        """Start every stream at a reset: ``obs`` is each sub-env's first observation (position ``first``)."""
        self.episode.fill_(-1)  # the context before the first observation belongs to no episode
        if self.memory is not None:
            self.memory_state = self.memory.initial_state(self.num_envs, self.act.device)
            self._reads = None
            self.surprise[:, self.first] = torch.inf  # an episode's first observation: always stored, never evicted
        self.put(self.first, obs, torch.ones(self.num_envs, dtype=torch.bool, device=self.act.device), encoder)

    def put(self, j: int, obs: Tree, start: Tensor, encoder: Encoder) -> None:
        """Store o_j (and its encoding, and its memory tokens); ``start`` marks the sub-envs where it begins an episode."""
        tree_map(lambda buf, x: buf[:, j].copy_(x), self.obs, obs)
        self.enc[:, j] = encoder(obs)
        self.episode[:, j] = self.episode[:, j - 1] + start.long()
        self.start[:, j] = start
        if self.memory is not None:
            if j == self.first:  # begin
                self.memory_start = self.memory_state.snapshot()
            elif j == self.length - 1:  # the next segment's first position: its start, once carried over
                self._memory_next = self.memory_state.snapshot()
            self._step_memory(j)

    def _step_memory(self, j: int) -> None:
        surprise = self.surprise[:, j] if self.memory.cfg.write == "surprise" else None
        state = self.memory_state
        self.mem[:, j] = self.memory.step(state, self.enc[:, j], self.start[:, j], surprise)
        if self.memory.uses_store:
            self.read_values[:, j], self.read_valid[:, j] = state.last_values, state.last_valid
            self.read_steps[:, j] = state.last_read
            self.write_slot[:, j] = state.last_slot

    def reencode(self, encoder: Encoder, upto: int) -> None:
        """Encode positions ``0 .. upto`` again (the encoder changed since they were stored).

        With memory, the tokens of position ``first`` are recomputed too, from ``memory_start``: the
        memory's parameters changed as well, and the update will replay the segment from there.
        """
        self.enc[:, : upto + 1] = encoder(tree_map(lambda b: b[:, : upto + 1], self.obs))
        if self.memory is not None and upto >= self.first:
            self.memory_state = self.memory_start.snapshot()
            self._step_memory(self.first)
            self._reads = None  # a new segment is about to be acted: its reads are gathered once, later

    def carry_over(self, *aligned: Tensor) -> None:
        """The last ``W`` positions become the next segment's context and first observation.

        ``aligned``: the caller's ``(E, L, ...)`` per-position buffers, shifted the same way.
        """
        keep = slice(self.length - self.window, self.length)
        own = (self.enc, self.act, self.episode, self.start)
        if self.memory is not None:
            own += (self.mem, self.surprise)
            if self.memory.uses_store:
                own += (self.read_values, self.read_valid, self.read_steps, self.write_slot)
            self.memory_start = self._memory_next
        for buf in (*own, *aligned):
            buf[:, : self.window] = buf[:, keep].clone()
        tree_map(lambda buf: buf[:, : self.window].copy_(buf[:, keep].clone()), self.obs)

    # --- reading ----------------------------------------------------------------------------
    def acting_window(self, j: int) -> Window:
        """The window of every sub-env's step at position ``j`` (encodings as stored)."""
        s = slice(j - self.window + 1, j + 1)
        valid = self.episode[:, s] == self.episode[:, j : j + 1]
        memory = None if self.memory is None else self.mem[:, j]
        return Window(self.enc[:, s], self.act[:, s], valid, memory)

    def positions(self, env: Tensor, j: Tensor) -> Tensor:
        """Flat indices ``(M, W)`` into ``(E * L)`` of the windows of steps at positions ``j`` of sub-envs ``env``."""
        return env[:, None] * self.length + j[:, None] + self._offsets

    def training_window(self, env: Tensor, j: Tensor, encoder: Encoder) -> tuple[Window, Tensor]:
        """The windows of steps ``(env, j)``, re-encoded by ``encoder`` (with gradients), and their positions.

        Overlapping windows share observations: each stored observation is encoded once. With
        memory, every position of the windows' sub-envs is encoded and their segment's memory is replayed
        from ``memory_start`` (``Memory.sequence``): the tokens of step ``j`` depend on all steps before it,
        so the cost of a batch grows with the number of sub-envs it draws from.
        The store's reads (which stored steps each position retrieved, where each write went) are those acting
        recorded at each position (``read_values``, ``read_valid``, ``read_steps``, ``write_slot``), gathered once per segment on
        the first call after acting (``Memory.reads``) and reused: the minibatches read what acting read, with
        no step-by-step replay of the store.
        """
        pos = self.positions(env, j)
        episode = self.flat(self.episode)[pos]
        valid = episode == episode[:, -1:]
        if self.memory is None:
            unique, inverse = torch.unique(pos, return_inverse=True)
            obs = gather_rows(encoder(self.gather_obs(unique)), inverse)
            return Window(obs, self.flat(self.act)[pos], valid), pos
        seg = slice(self.first, self.length)
        start = self.start[:, seg]
        surprise = self.surprise[:, seg] if self.memory.cfg.write == "surprise" else None
        if self.memory.uses_store and self._reads is None:  # once per segment: what acting's store did
            with torch.no_grad():
                self._reads = self.memory.reads(
                    self.memory_start.store, self.enc[:, seg], start, self.read_values[:, seg],
                    self.read_valid[:, seg], self.read_steps[:, seg], self.write_slot[:, seg],
                )  # fmt: skip
        # Only the sub-envs these windows come from are encoded and replayed: the update's minibatches hold few
        # (``Update.minibatches (agents/developmental/update.py)``). ``rows``: their streams; ``local``: each window's row among them.
        rows, local = torch.unique(env, return_inverse=True)
        enc = encoder(tree_map(lambda b: b[rows], self.obs))  # (len(rows), L, d), with gradients
        reads = None if self._reads is None else self._reads.select(rows)
        state = self.memory_start.select(rows, store=False)  # the store's part is in ``reads``
        tokens = self.memory.sequence(
            state, enc[:, seg], start[rows], None if surprise is None else surprise[rows], reads
        )
        local_pos = local[:, None] * self.length + j[:, None] + self._offsets
        memory = tokens[local, j - self.first]
        return Window(gather_rows(self.flat(enc), local_pos), self.flat(self.act)[pos], valid, memory), pos

    def flat(self, buf: Tensor) -> Tensor:
        """``(E, L, ...)`` -> ``(E * L, ...)`` (a view, for indexing with ``positions``)."""
        return buf.reshape(-1, *buf.shape[2:])

    def gather_obs(self, index: Tensor) -> Tree:
        """Raw observations at flat indices ``index`` (any shape)."""
        return tree_map(lambda buf: self.flat(buf)[index], self.obs)
