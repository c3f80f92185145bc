"""Memory for long episodes: the tokens a window gets beyond its last ``W`` steps.

The parts: ``ssm`` (a selective state-space layer: a parallel scan for training, an O(1) step for
acting) and ``retrieval`` (a per-episode, per-env store read by top-k inner product). ``Memory``
composes them into the ``(B, M, d)`` memory tokens of ``devlearn.model.context.Window``:

* ``M = 1`` *gist* token: the SSM's output after this step, a running summary of the episode;
* ``M = k`` *retrieved* tokens: the stored steps whose embedding best matches this step's query;
* ``M = 1`` *soft read* token (``soft=True``, with a store): the softmax-weighted mean of every stored
  step's embedding under the same query. It costs nothing beyond the top-k's ``bmm`` (the scores are
  shared), and it is what lets the query learn: a top-k read passes gradient only to the k entries it
  picked, so a fact that is never picked is never pulled towards; the softmax passes gradient to every
  stored entry, the unpicked fact included (docs/benchmarks.md: without it the agent could not learn to
  recall at delay 200).

Per step ``t`` of each sub-env, in this order (the same in ``step`` and in ``sequence``):

1. if an episode starts, the SSM state and the store are emptied;
2. **read**: the query ``W_q e_t`` picks the top ``k`` stored steps (steps ``< t`` of this episode) by
   inner product with their embeddings; each becomes ``sigmoid(score / sqrt(d)) * W_v e_s`` plus a
   type embedding, and an empty slot becomes a learned *empty* token (memory tokens carry no mask
   in ``Core.layout``, so "nothing here" must be a token the core can learn to ignore); the soft read
   is ``W_v sum_s softmax_s(score / sqrt(d)) e_s`` plus its own type embedding;
3. **gist**: the SSM reads ``e_t`` (plus, in ``hybrid``, ``W_r`` of the mean retrieved embedding: what was
   recalled re-enters the running summary: "resurfacing") and its output is the gist token;
4. **write**: ``e_t`` is offered to the store (every step, or only above the surprise threshold).

The tokens are a pure function of (the state at a segment's start, the segment's step embeddings,
episode starts and surprises), so the update recomputes them exactly (``sequence``) from a
``snapshot`` taken while acting, as sb3-contrib's RecurrentPPO does with LSTM states. Gradients flow
into ``W_q`` (through the scores), ``W_v``, ``W_r``, the SSM and the segment's embeddings, including those
the store returns from earlier in the same segment (``_written_here``): a rule read at step 0 and recalled
at step 9 teaches the encoder to read it, as backpropagation through time within a sequence would. Entries
stored before the segment are constants (no backpropagation into the past beyond the segment).
The update's soft read attends over the store at the segment's start plus the segment's own writes,
each masked to the steps where acting's store held it (``soft_visibility``): what acting read, exactly.

Variants (``MemoryConfig.variant``): ``none`` and ``window`` give no memory tokens (the core's window
is then all the agent remembers: ``none`` is meant with a window of 1 step, ``window`` with the
configured one); ``ssm`` gives the gist; ``retrieval`` the k retrieved tokens; ``hybrid`` both.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from devlearn.model.memory.retrieval import RetrievalStore, Retrieved
from devlearn.model.memory.ssm import SelectiveSSM
from devlearn.model.memory.state import STATS, VARIANTS, MemoryConfig, MemoryState, Reads

__all__ = ["STATS", "VARIANTS", "Memory", "MemoryConfig", "MemoryState", "Reads", "RetrievalStore", "Retrieved", "SelectiveSSM"]


class Memory(nn.Module):
    """Memory tokens for a window, from the stream of step embeddings (see the module docstring).

    Args:
        d_model: width of step embeddings and of memory tokens.
        cfg: ``MemoryConfig``.

    Attributes:
        n_tokens: ``M``, memory tokens per step (0 for ``none`` and ``window``).
    """

    def __init__(self, d_model: int, cfg: MemoryConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or MemoryConfig()
        if cfg.variant not in VARIANTS:
            raise ValueError(
                f"memory.variant={cfg.variant!r} is not valid; allowed values: {', '.join(VARIANTS)}."
            )
        if isinstance(cfg.k, bool) or not isinstance(cfg.k, int) or cfg.k < 1:
            raise ValueError(f"memory.k={cfg.k!r} must be a positive integer.")
        self.d_model = d_model
        self.uses_ssm = cfg.variant in ("ssm", "hybrid")
        self.uses_store = cfg.variant in ("retrieval", "hybrid")
        self.soft = self.uses_store and bool(cfg.soft)
        self.n_tokens = int(self.uses_ssm) + (cfg.k if self.uses_store else 0) + int(self.soft)
        if self.uses_ssm:
            if isinstance(cfg.gist_horizon, bool) or not isinstance(cfg.gist_horizon, int) or cfg.gist_horizon < 0:
                raise ValueError(
                    f"memory.gist_horizon={cfg.gist_horizon!r} must be 0 (unbounded) or a positive integer (steps)."
                )
            self.ssm = SelectiveSSM(
                d_model, n_heads=cfg.n_heads, d_state=cfg.d_state, chunk=cfg.chunk, horizon=cfg.gist_horizon
            )
            self.gist_type = nn.Parameter(torch.zeros(d_model))
        if self.uses_store:
            RetrievalStore(1, cfg.capacity, 1, 1, write=cfg.write)  # validate capacity and write mode now
            self.query = nn.Linear(d_model, d_model, bias=False)
            if self.soft:  # the first reads are uniform: no random preference of a fresh query hides the fact
                nn.init.zeros_(self.query.weight)
            self.value = nn.Linear(d_model, d_model)
            self.retrieved_type = nn.Parameter(torch.zeros(cfg.k, d_model))  # one per rank: memory tokens carry no position
            self.empty = nn.Parameter(torch.randn(d_model) * 0.02)
        if self.soft:
            self.soft_type = nn.Parameter(torch.zeros(d_model))
        if self.uses_ssm and self.uses_store:
            self.resurface = nn.Linear(d_model, d_model)
            nn.init.zeros_(self.resurface.weight)  # starts as a plain SSM over the step embeddings

    # --- state ------------------------------------------------------------------------------------
    def initial_state(self, num_envs: int, device: torch.device | str | None = None) -> MemoryState:
        """Empty memory for ``num_envs`` sub-envs (every sub-env must start an episode at its first step)."""
        ssm = self.ssm.initial_state(num_envs, device) if self.uses_ssm else None
        store = None
        if self.uses_store:
            c = self.cfg
            store = RetrievalStore(
                num_envs,
                c.capacity,
                self.d_model,
                self.d_model,
                write=c.write,
                threshold=c.threshold,
                device=device,
            )
        return MemoryState(ssm, store, torch.full((num_envs,), -1, dtype=torch.long, device=device))

    # --- acting: one step -------------------------------------------------------------------------
    def step(
        self, state: MemoryState, emb: Tensor, start: Tensor, surprise: Tensor | None = None
    ) -> Tensor | None:
        """Memory tokens ``(E, M, d)`` for step embeddings ``emb (E, d)`` (None when ``M = 0``); advances ``state``.

        ``start``: ``(E,)`` bool, True where ``emb`` is an episode's first step. ``surprise``: ``(E,)``
        surprise of this step's observation (needed for ``write="surprise"``).
        """
        state.t = torch.where(start, 0, state.t + 1)
        if self.n_tokens == 0:
            return None
        retrieved = soft = query = None
        soft_top = emb.new_zeros(())
        if self.uses_store:
            state.store.reset(start)
            query = self.query(emb)
            scores = state.store.scores(query.detach())  # (E, 1, span): shared by the top-k and the soft read
            got = state.store.read(query.detach(), self.cfg.k, scores)
            retrieved = (got.values[:, 0], got.valid[:, 0])
            if self.soft:
                mixed, held, weights = self._soft_read(scores, state.store.values[:, : scores.shape[-1]])
                soft = (mixed[:, 0], held[:, 0])
                soft_top = weights[:, 0].max(-1).values.sum()
        gist = None
        if self.uses_ssm:
            u = self._ssm_input(emb, retrieved)
            gist, state.ssm = self.ssm.step(u, state.ssm, reset=start)
        if self.uses_store:
            slot = state.store.write(emb, emb, state.t, state.t, surprise)
            stored = slot >= 0
            valid = got.valid[:, 0]
            state.last_read = torch.where(valid, got.steps[:, 0], -1)
            state.last_values, state.last_valid, state.last_slot = got.values[:, 0], valid, slot
            age = ((state.t[:, None] - got.steps[:, 0]) * valid).sum()
            state.counts += torch.stack(
                [emb.new_tensor(len(emb)), stored.sum(), valid.any(-1).sum(), valid.sum(), age, soft_top]
            ).to(state.counts.dtype)
        return self._tokens(query, gist, retrieved, soft)

    # --- the update: a whole segment --------------------------------------------------------------
    def sequence(
        self,
        state: MemoryState,
        emb: Tensor,
        start: Tensor,
        surprise: Tensor | None = None,
        retrieved: Reads | None = None,
    ) -> Tensor | None:
        """Memory tokens ``(E, T, M, d)`` for a segment ``emb (E, T, d)``; advances ``state`` to its end.

        Equal to ``T`` calls of ``step`` from the same state (tested); the SSM runs as a parallel
        scan, and the store replays the segment's reads and writes. Pass a ``snapshot`` to keep the original.

        ``retrieved``: the store's reads of this segment (``Reads``, as ``replay`` or ``reads`` returns them),
        to skip the step-by-step replay. Which entries are read is not differentiable, so the only thing a
        fresh replay would change is which entries a query picks
        after the parameters moved: an update may read what acting read (as RecurrentPPO starts each
        sequence from the hidden state acting had) and spend its time on the differentiable parts.
        """
        steps = self.episode_steps(state, start)
        state.t = steps[:, -1].clone()
        if self.n_tokens == 0:
            return None
        soft, topk, query = None, None, None
        if self.uses_store:
            if retrieved is None:
                retrieved = self.replay(state, emb, start, steps, surprise)
            topk = (self._written_here(retrieved.values, retrieved.steps, steps, emb), retrieved.valid)
            query = self.query(emb)
            if self.soft:  # stored keys and values are both the step's embedding
                mine = retrieved.written >= 0  # written by this segment: read with gradient, as the top-k
                own = emb.gather(1, retrieved.written.clamp(min=0).unsqueeze(-1).expand(-1, -1, emb.shape[-1]))
                entries = torch.where(mine.unsqueeze(-1), own, retrieved.entries)
                scores = (query @ entries.transpose(1, 2)).masked_fill(~retrieved.held, -torch.inf)
                soft = self._soft_read(scores, entries)[:2]
        gist = None
        if self.uses_ssm:
            gist, state.ssm = self.ssm(self._ssm_input(emb, topk), state.ssm, reset=start)
        return self._tokens(query, gist, topk, soft)

    @staticmethod
    def soft_visibility(filled: Tensor, slots: Tensor, start: Tensor) -> Tensor:
        """``(E, T, C + T)`` bool: which entries acting's store held when step ``i`` of a segment read it.

        The candidates are the first ``C`` slots of the store at the segment's start (``filled (E, C)``: every
        filled slot, and maybe more) and the segment's own ``T`` writes (``slots (E, T)``: where each went, -1 if
        not stored). Step ``i`` reads
        before it writes, after its episode start (if any) emptied the store. So a start slot is held until
        an episode starts or a segment write lands in it; the write of step ``s`` is held at steps
        ``s < i`` of its episode until a later write takes its slot.
        """
        e, t = slots.shape
        c = filled.shape[1]
        step = torch.arange(t, device=slots.device)
        episode = start.long().cumsum(1)  # (E, T): steps of one episode share it
        landed = slots.unsqueeze(-1) == torch.arange(c, device=slots.device)  # (E, T, C): step s wrote slot c
        taken = (landed.long().cumsum(1) - landed.long()) > 0  # (E, T, C): a write before step i took slot c
        held_start = filled.unsqueeze(1) & ~taken & (episode == 0).unsqueeze(-1)
        same = (slots.unsqueeze(2) == slots.unsqueeze(1)) & (slots >= 0).unsqueeze(2)  # (E, s, s')
        later = same & (step.view(1, 1, t) > step.view(1, t, 1))
        retaken = torch.where(later, step.view(1, 1, t), t).min(2).values  # (E, s): the next write to s's slot
        i, s = step.view(1, t, 1), step.view(1, 1, t)
        held_seg = (
            (slots >= 0).unsqueeze(1)
            & (s < i)
            & (i <= retaken.unsqueeze(1))
            & (episode.unsqueeze(2) == episode.unsqueeze(1))
        )
        return torch.cat([held_start, held_seg], 2)

    @staticmethod
    def held_only(entries: Tensor, held: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The soft read's candidates that some step held: ``entries (E, C + T, d)``, ``held (E, T, C + T)`` -> ``U`` of them.

        A candidate no step held has softmax weight exactly 0 at every step, so dropping it changes no read
        (only the order of float sums): the update's soft read then costs O(entries in use), not O(capacity).
        Each sub-env keeps its held candidates in their order, first; ``U`` is the most any sub-env holds, and
        the shorter rows are padded with candidates held by no step. Returns ``entries (E, U, d)``,
        ``held (E, T, U)`` and ``order (E, U)``, each kept candidate's index among the ``C + T``. Reading ``U``
        costs one device sync per segment on an accelerator.
        """
        used = held.any(1)  # (E, C + T)
        u = max(int(used.sum(1).max()), 1)
        order = torch.argsort((~used).to(torch.uint8), dim=1, stable=True)[:, :u]  # held ones first, in order
        entries = entries.gather(1, order.unsqueeze(-1).expand(-1, -1, entries.shape[-1]))
        return entries, held.gather(2, order.unsqueeze(1).expand(-1, held.shape[1], -1)), order

    @staticmethod
    def episode_steps(state: MemoryState, start: Tensor) -> Tensor:
        """``(E, T)``: each position's step in its episode, continuing ``state.t`` until an episode starts."""
        t = start.shape[1]
        arange = torch.arange(t, device=start.device)
        since = torch.cummax(torch.where(start, arange, -1), dim=1).values  # the latest start so far
        return torch.where(since >= 0, arange - since, state.t.unsqueeze(1) + 1 + arange)

    @torch.no_grad()
    def replay(
        self, state: MemoryState, emb: Tensor, start: Tensor, steps: Tensor, surprise: Tensor | None = None
    ) -> Reads:
        """The store's reads and writes of a segment, in step order (``Reads``).

        They depend on no SSM output, and advance ``state.store`` to the segment's end. ``steps``: each
        position's step in its episode.
        """
        t = emb.shape[1]
        emb = emb.detach()
        queries = self.query(emb)
        first = state.store.clone() if self.soft else None  # the soft read's first C candidates
        values, valid, read, slots = [], [], [], []
        for i in range(t):
            state.store.reset(start[:, i])
            got = state.store.read(queries[:, i], self.cfg.k)
            values.append(got.values[:, 0])
            valid.append(got.valid[:, 0])
            read.append(got.steps[:, 0])
            slots.append(
                state.store.write(
                    emb[:, i], emb[:, i], steps[:, i], steps[:, i], None if surprise is None else surprise[:, i]
                )
            )
        stacked = (torch.stack(x, 1) for x in (values, valid, read, slots))
        return self.reads(first, emb, start, *stacked)

    def reads(
        self,
        first: RetrievalStore | None,
        emb: Tensor,
        start: Tensor,
        values: Tensor,
        valid: Tensor,
        read: Tensor,
        slots: Tensor,
    ) -> Reads:
        """``Reads`` of a segment from what its steps did: the top-k ``values (E, T, k, d)``, ``valid (E, T, k)``
        and the episode steps they were written at (``read (E, T, k)``, -1 where not valid) each step read, the
        ``slots (E, T)`` its write went to (-1: not stored), the store ``first`` at the segment's start (None
        without the soft read) and the step embeddings ``emb (E, T, d)`` that were offered.

        ``replay`` recomputes those; a ``SequenceContext`` keeps acting's own (``MemoryState.last_values`` ...).
        The soft read's candidates and visibility are computed here, once per segment, not in every minibatch.
        """
        entries = held = written = None
        if self.soft:
            span = first.span()  # the start store's slots past its span were empty: no step read them
            entries, held, order = self.held_only(
                torch.cat([first.values[:, :span], emb.detach()], 1),
                self.soft_visibility(first.filled[:, :span], slots, start),
            )
            written = torch.where(order >= span, order - span, -1)
        return Reads(values, valid, read, entries, held, written)

    @staticmethod
    def _written_here(values: Tensor, read: Tensor, steps: Tensor, emb: Tensor) -> Tensor:
        """The top-k ``values (E, T, k, d)`` with those written within this segment taken from ``emb (E, T, d)``.

        Before the first gradient step these are the same values (acting stored the embedding the update recomputes,
        up to rounding); after it they are the current encoder's, as the segment's other embeddings are, and carry
        gradient into it. ``read (E, T, k)``: the episode step each read entry was written at; ``steps (E, T)``: each
        position's. A store holds this episode's steps only, so the entry of step ``s`` read at position ``i`` was
        written at position ``i - (steps_i - s)``, within the segment when that is ``>= 0``.
        """
        at = torch.arange(steps.shape[1], device=steps.device).view(1, -1, 1)
        pos = at - (steps.unsqueeze(-1) - read)  # (E, T, k)
        mine = (read >= 0) & (pos >= 0)
        e, t, k = read.shape
        index = pos.clamp(min=0).view(e, t * k, 1).expand(-1, -1, emb.shape[-1])
        own = emb.gather(1, index).view(e, t, k, -1)
        return torch.where(mine.unsqueeze(-1), own, values)

    # --- shared by both paths ---------------------------------------------------------------------
    def _ssm_input(self, emb: Tensor, retrieved: tuple[Tensor, Tensor] | None) -> Tensor:
        if retrieved is None or not self.uses_store:
            return emb
        values, valid = retrieved
        count = valid.sum(-1, keepdim=True).clamp(min=1)
        return emb + self.resurface(
            values.sum(-2) / count
        )  # invalid values are zeros: a mean of the valid ones

    def _soft_read(self, scores: Tensor, values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Softmax over the entries (``scores (E, Q, N)``, -inf where not held) of ``values (E, N, d)``.

        Returns ``(mixed (E, Q, d), held (E, Q) bool, weights (E, Q, N))``; ``mixed`` and ``weights`` are zero
        where nothing is held.
        """
        held = torch.isfinite(scores).any(-1)
        weights = torch.softmax(scores.masked_fill(~held.unsqueeze(-1), 0) / math.sqrt(self.d_model), -1)
        weights = weights * held.unsqueeze(-1)
        return torch.bmm(weights, values), held, weights

    def _tokens(
        self,
        query: Tensor | None,
        gist: Tensor | None,
        retrieved: tuple[Tensor, Tensor] | None,
        soft: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Tokens ``(*lead, M, d)``: the gist, the retrieved steps (best first), the soft read.

        ``query``: ``W_q e`` of the steps' embeddings ``(*lead, d)`` (with gradient), which gates each retrieved step.
        """
        parts = []
        if gist is not None:
            parts.append((gist + self.gist_type).unsqueeze(-2))
        if retrieved is not None:
            values, valid = retrieved  # (*lead, k, d), (*lead, k)
            score = (values @ query.unsqueeze(-1)).squeeze(-1) / math.sqrt(self.d_model)
            tokens = torch.sigmoid(score).unsqueeze(-1) * self.value(values) + self.retrieved_type
            parts.append(torch.where(valid.unsqueeze(-1), tokens, self.empty))
        if soft is not None:
            mixed, held = soft  # (*lead, d), (*lead,)
            token = torch.where(held.unsqueeze(-1), self.value(mixed) + self.soft_type, self.empty)
            parts.append(token.unsqueeze(-2))
        return torch.cat(parts, dim=-2)
