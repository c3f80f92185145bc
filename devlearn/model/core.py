"""The core: a causal transformer over the recent window of (observation, action) steps.

Each step becomes two tokens: ONE observation token (the tokenizer's tokens pooled by
``ObservationEncoder``) followed by ONE action token, so a window of T steps is 2T tokens and the
attention cost does not grow with the observation's size. Under the causal mask the output at an
observation token has seen o_0..o_t and a_0..a_{t-1} (the state to act from), and the output at an
action token has also seen a_t (the state to predict o_{t+1} from).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.nn import functional as F

from devlearn.model.tokenize import ActionTokenizer, ObservationTokenizer

FOLD_MIN_BATCH = 64  # observations per call from which ``ObservationEncoder`` considers folding (the update's)


@dataclass
class CoreConfig:
    """Size of the core transformer (``agent.core`` on the command line)."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    window: int = 4  # steps per window; the transformer sees 2 * window tokens
    dropout: float = 0.0


class Block(nn.Module):
    """Pre-LayerNorm transformer block: causal self-attention then an MLP, both residual."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, mlp_ratio: int = 4) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}.")
        self.n_heads, self.dropout = n_heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model),
            nn.GELU(),
            nn.Linear(mlp_ratio * d_model, d_model),
            nn.Dropout(dropout),
        )
        self.resid_drop = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, attn_mask: Tensor | None = None, tail: int | None = None, rows: Tensor | None = None
    ) -> Tensor:
        """``attn_mask``: optional ``(B, 1, N, N)`` bool, True where a query may see a key; causal when None.

        ``tail``: compute only the last ``tail`` tokens' outputs, ``(B, tail, d)``. Every token is
        still a key and value; only the queries, the projection and the MLP shrink. Equal to
        ``forward(x, attn_mask)[:, -tail:]`` (a token's output depends on the others only through attention).
        ``rows``: the same for any tokens, ``(B, M)`` indices -> ``(B, M, d)``; needs ``attn_mask`` (``(1, 1, N, N)``
        or ``(B, 1, N, N)``).
        """
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        drop = self.dropout if self.training else 0.0
        causal = attn_mask is None
        if rows is not None:
            m = rows.shape[1]
            q = q.gather(2, rows[:, None, :, None].expand(b, self.n_heads, m, d // self.n_heads))
            x = x.gather(1, rows[..., None].expand(b, m, d))
            attn_mask = attn_mask.expand(b, 1, n, n).gather(2, rows[:, None, :, None].expand(b, 1, m, n))
        elif tail is not None and tail < n:
            q, x = q[:, :, -tail:], x[:, -tail:]
            if causal:  # the last ``tail`` rows of the causal mask
                attn_mask = torch.ones(tail, n, dtype=torch.bool, device=x.device).tril(n - tail)
            else:
                attn_mask = attn_mask[..., -tail:, :]
            causal = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop, is_causal=causal)
        x = x + self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, x.shape[1], d)))
        return x + self.mlp(self.ln2(x))


class CausalTransformer(nn.Module):
    """nanoGPT-style stack: learned positions, pre-LN causal blocks, a final LayerNorm."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, max_len: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.max_len = max_len
        self.pos_emb = nn.Parameter(torch.zeros(max_len, d_model))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.apply(self._init)
        # GPT-2: scale the residual projections so the residual stream's variance stays ~1 with depth
        for block in self.blocks:
            for proj in (block.proj, block.mlp[2]):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * n_layers))
        nn.init.normal_(self.pos_emb, std=0.02)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(
        self, x: Tensor, attn_mask: Tensor | None = None, positions: Tensor | None = None, tail: int | None = None
    ) -> Tensor:
        """``(B, L, d)`` tokens -> ``(B, L, d)`` states; position ``i`` sees only positions ``<= i``.

        ``attn_mask`` (``(B, 1, L, L)`` bool, True = may attend) replaces the causal mask, and
        ``positions`` (``(L,)``, -1 for none) the positions ``0 .. L-1``; ``Core.layout`` uses both
        to hide padded steps, to add memory tokens and to evaluate several candidate last tokens in one pass.
        ``tail``: return only the last ``tail`` tokens' states ``(B, tail, d)``, equal to ``[:, -tail:]`` of
        the full output; the last block then runs its queries, projection and MLP on those tokens only
        (the readers need the last step's states: that block is most of a window's cost saved).
        """
        if positions is None:
            if x.shape[1] > self.max_len:
                raise ValueError(f"sequence of {x.shape[1]} tokens exceeds max_len={self.max_len}.")
            pos = self.pos_emb[: x.shape[1]]
        else:  # position -1: a token without position (memory), which adds nothing
            pos = F.pad(self.pos_emb, (0, 0, 0, 1))[positions]
        x = self.drop(x + pos)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, attn_mask, tail if i == last else None)
        return self.ln_f(x)


class ObservationEncoder(nn.Module):
    """Observation -> one ``d_model`` vector: the tokenizer's tokens, pooled.

    Pooling is a learned projection per token position, summed (a linear map of the flattened
    tokens). Mean pooling would forget *where* each value sits (a grid's agent cell), and one
    attention query keeps only a soft selection of cells; this keeps every token's content and
    position at a cost of ``n_tokens * d^2`` per step, which is small next to the transformer's.
    """

    def __init__(self, space: spaces.Space, d_model: int, **tokenizer_kwargs: Any) -> None:
        super().__init__()
        self.tokenizer = ObservationTokenizer(space, d_model, **tokenizer_kwargs)
        self.pool = nn.Linear(self.tokenizer.n_tokens * d_model, d_model)
        self.ln = nn.LayerNorm(d_model)
        self.fold = True  # large batches of discrete observations: ``_pool_folded`` (same values, cheaper)

    def forward(self, obs: Any) -> Tensor:
        """Observations with any leading dims -> ``(*lead, d_model)``."""
        tok = self.tokenizer
        if self.fold and tok.has_exact_targets:
            xs, lead = tok._flat_leaves(obs)
            if len(xs[0]) >= FOLD_MIN_BATCH:
                pooled = self._pool_folded(xs, lead)
                if pooled is not None:
                    return self.ln(pooled)
        tokens = tok(obs)
        return self.ln(self.pool(tokens.flatten(-2)))

    def _pool_folded(self, xs: list[Tensor], lead: tuple[int, ...], force: bool = False) -> Tensor | None:
        """``self.pool(self.tokenizer(obs).flatten(-2))`` for discrete observations, computed another way;
        None where that would cost more (unless ``force``).

        A token's embedding is a sum of its elements' rows of a table ``E`` plus a constant (type +
        position), and the pooling is linear: ``pool(tokens) = b + sum_t W_t c_t + sum_t W_t E_u^T n_t``
        with ``E_u`` the ``U`` rows the batch uses and ``n_t`` their counts in token ``t``. Folding
        ``W_t E_u^T`` into one table per token turns embedding, pooling and their backward (a sort of
        every element index) into one product of the counts with the folded table: ``T U d^2 + N T U d``
        multiply-adds instead of ``N T d^2`` for ``N`` observations of ``T`` tokens. Same parameters,
        same values up to rounding.
        """
        tok = self.tokenizer
        d_out = self.pool.out_features
        n_obs = len(xs[0])
        leaves = []
        for leaf, x in zip(tok.leaves, xs, strict=True):
            index = leaf.indices(x)  # (N, T, group)
            used, inverse = torch.unique(index, return_inverse=True)
            leaves.append((leaf, index, used, inverse))
        if not force and sum(len(u) for _, _, u, _ in leaves) * (n_obs + d_out) >= n_obs * d_out:
            return None
        weight = self.pool.weight.view(d_out, tok.n_tokens, -1)  # (d_out, token, d)
        const = tok.type_emb[tok.leaf_of_token] + tok.pos_emb  # (token, d)
        out = self.pool.bias + torch.einsum("otd,td->o", weight, const)
        start = 0
        for leaf, index, used, inverse in leaves:
            n, rows = leaf.n_tokens, len(used)
            table = leaf.embed.weight[used]  # (U, d)
            folded = torch.einsum("otd,ud->tuo", weight[:, start : start + n], table)  # (T, U, d_out)
            flat = (inverse + torch.arange(n, device=index.device)[:, None] * rows).view(n_obs, -1)
            counts = torch.zeros(n_obs, n * rows, device=index.device, dtype=folded.dtype)
            counts.scatter_add_(1, flat, (index != leaf.pad_index).to(folded.dtype).view(n_obs, -1))
            out = out + counts @ folded.reshape(n * rows, d_out)
            start += n
        return out.view(*lead, d_out)


class Core(nn.Module):
    """Observation encoder, action tokenizer and causal transformer over a window of steps.

    One token layout serves every reader (``layout``): optional memory tokens first, then
    ``o_0, a_0, ..., o_{T-1}`` and finally the last step's action token(s): the action taken
    (``states``) or one token per candidate action (``candidate_states``), each seeing the
    prefix and itself, all at the same position; the last step's tokens also see the memory. With one candidate this is exactly
    the causal layout of the whole window, so acting with the shield and learning read the
    same states.
    """

    def __init__(
        self,
        obs_space: spaces.Space,
        act_space: spaces.Space,
        cfg: CoreConfig | None = None,
        **tokenizer_kwargs: Any,
    ) -> None:
        super().__init__()
        self.cfg = cfg = cfg or CoreConfig()
        self.encoder = ObservationEncoder(obs_space, cfg.d_model, **tokenizer_kwargs)
        self.act_tokenizer = ActionTokenizer(act_space, cfg.d_model)
        self.transformer = CausalTransformer(
            cfg.d_model, cfg.n_layers, cfg.n_heads, 2 * cfg.window, cfg.dropout
        )

    def forward(self, obs: Any, act: Any, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run a window: ``obs (B, T, *obs_shape)``, ``act (B, T, *act_shape)``, ``T <= window``.

        Returns ``h_obs, h_act``, each ``(B, T, d_model)``: ``h_obs[:, t]`` is the state after o_t
        (for the policy and value), ``h_act[:, t]`` the state after (o_t, a_t) (for predicting
        o_{t+1}). ``h_obs[:, t]`` does not depend on ``act[:, t]``, so when acting, pass any
        placeholder (e.g. zeros) as the last step's action.

        ``mask`` (``(B, T)`` bool, optional) marks the steps that belong to the window's episode: the
        others (padding, or a previous episode's steps) are hidden from every token, so a window
        never carries information across an episode's start. Their own outputs are meaningless.
        """
        return self.states(self.encoder(obs), act, mask)

    def layout(
        self, o: Tensor, act: Any, mask: Tensor | None, last: Tensor, memory: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Tokens, attention mask and positions of a window whose last action token(s) are ``last``.

        Args:
            o: encoded observations ``(B, T, d)``.
            act: actions ``(B, T, *act_shape)``; the last step's is not read (``last`` replaces it).
            mask: ``(B, T)`` bool validity of each step (see ``forward``), or None (all valid).
            last: ``(B, A, d)`` action embeddings of the last step, without its observation.
            memory: ``(B, M, d)`` memory tokens of the last step, or None: seen by the last
                observation token and the last action token(s) only.

        The action token also carries its observation (``a_t + o_t``): predicting o_{t+1} then needs
        no attention at all to meet o_t and a_t, which makes early learning much faster.
        """
        b, t, d = o.shape
        n_cand, dev = last.shape[1], o.device
        steps = o.new_zeros(b, 0, d)
        if t > 1:
            a = self.act_tokenizer(act[:, :-1]) + o[:, :-1]
            steps = torch.stack([o[:, :-1], a], dim=2).view(b, 2 * t - 2, d)  # o_0, a_0, o_1, a_1, ...
        n_mem = 0 if memory is None else memory.shape[1]
        parts = [steps, o[:, -1:], last + o[:, -1:]]
        tokens = torch.cat(parts if memory is None else [memory, *parts], dim=1)
        n_prefix = 2 * t - 1
        n = n_mem + n_prefix + n_cand
        see = torch.zeros(n, n, dtype=torch.bool, device=dev)
        # Memory holds the last step's tokens (its gist includes o_{T-1}): only the last step's
        # tokens see it, so an earlier slot's state cannot peek at the observation it must predict.
        see[:n_mem, :n_mem] = True
        see[n_mem + n_prefix - 1 :, :n_mem] = True
        body = slice(n_mem, n_mem + n_prefix)
        see[body, body] = torch.ones(n_prefix, n_prefix, dtype=torch.bool, device=dev).tril()
        see[n_mem + n_prefix :, body] = True  # each candidate sees the whole prefix ...
        eye = torch.eye(n, dtype=torch.bool, device=dev)
        see |= eye  # ... and itself; a token always sees itself, so no attention row is empty
        attn = see.expand(b, n, n)
        if mask is not None:
            keys = torch.cat(
                [
                    torch.ones(b, n_mem, dtype=torch.bool, device=dev),
                    mask.repeat_interleave(2, dim=1)[:, :n_prefix],  # both tokens of a step share its mask
                    mask[:, -1:].expand(b, n_cand),
                ],
                dim=1,
            )
            attn = attn & (keys[:, None, :] | eye)
        positions = torch.cat(
            [
                torch.full((n_mem,), -1, device=dev),  # memory tokens carry no position
                torch.arange(n_prefix, device=dev),
                torch.full((n_cand,), n_prefix, device=dev),  # every candidate sits where a_{T-1} does
            ]
        )
        return tokens, attn.unsqueeze(1), positions

    def states(
        self,
        o: Tensor,
        act: Any,
        mask: Tensor | None = None,
        memory: Tensor | None = None,
        last: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``forward`` from already encoded observations ``o = self.encoder(obs)``, ``(B, T, d)``.

        An encoded observation does not depend on its window, so a caller that meets the same
        observation in several windows (acting step by step, or overlapping training windows)
        encodes it once. ``memory``: see ``layout``. ``last``: return the states of the last
        ``last`` steps only, ``(B, last, d)`` each, equal to ``[:, -last:]`` of the full result but
        cheaper (``CausalTransformer``'s ``tail``): acting and the update read the last step's states.
        """
        b, t, d = o.shape
        steps = t if last is None else min(last, t)
        tokens, attn, positions = self.layout(o, act, mask, self.act_tokenizer(act[:, -1:]), memory)
        h = self.transformer(tokens, attn, positions, tail=2 * steps).reshape(b, steps, 2, d)
        return h[:, :, 0], h[:, :, 1]

    def candidate_states(
        self, o: Tensor, act: Tensor, mask: Tensor | None, candidates: Tensor, memory: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """The state after the last observation, and the state after each candidate last action, in one pass.

        Args:
            o: encoded observations ``(B, T, d)`` (``self.encoder(obs)``).
            act: actions ``(B, T, *act_shape)``; the last step's is ignored.
            mask: ``(B, T)`` bool (see ``forward``) or None.
            candidates: ``(A, *act_shape)`` actions to try at the last step.
            memory: see ``layout``.

        Returns:
            ``h_obs (B, d)`` (equal to ``states(...)[0][:, -1]``) and ``h_act (B, A, d)``, where
            ``h_act[:, i]`` equals ``states`` 's ``h_act[:, -1]`` with ``candidates[i]`` as the last
            action: 2T - 1 + A tokens instead of A windows of 2T.
        """
        b = o.shape[0]
        last = self.act_tokenizer(candidates).unsqueeze(0).expand(b, -1, -1)
        tokens, attn, positions = self.layout(o, act, mask, last, memory)
        n_cand = candidates.shape[0]
        h = self.transformer(tokens, attn, positions, tail=n_cand + 1)  # o_{T-1} and the candidates
        return h[:, 0], h[:, 1:]
