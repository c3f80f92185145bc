"""Tokenization: any supported Gymnasium space -> a short sequence of ``d_model`` embeddings.

A token is a *group of elements* of one leaf space:

- discrete-valued leaves (``Discrete``, ``MultiDiscrete``, ``MultiBinary``, integer ``Box`` with at
  most 256 values per element): a MiniGrid-style grid ``(H, W, C)`` gives one token per cell (the
  C channels are the group), any other shape is flattened into fixed-size patches (8 bytes of a
  text observation make one token). The token embedding is the sum of one embedding per
  (position in group, value), so every element's exact value reaches the core, and every element
  has an exact target: its integer value, exposed by ``targets`` and inverted by ``decode``;
- continuous leaves (float ``Box``, large images): a linear projection of normalised chunks of a
  vector or of square image patches. They have no exact targets; the world model's latent
  objective covers them.

``Dict`` and ``Tuple`` spaces concatenate their leaves' tokens, each leaf adding a learned type
embedding; every token adds a learned positional embedding. ``ActionTokenizer`` reuses the same
leaf encoders but always yields a single token per action.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

SUPPORTED = (
    "Discrete, MultiDiscrete, MultiBinary, Box (integer grids (H, W, C), integer byte strings, "
    "float vectors, images (H, W, C)), and Dict / Tuple of these"
)
MAX_DISCRETE_VALUES = 256  # an integer Box with wider elements is treated as continuous


def _unsupported(space: spaces.Space, what: str = "observation") -> TypeError:
    return TypeError(f"devlearn cannot tokenize the {what} space {space}. Supported spaces: {SUPPORTED}.")


class _DiscreteLeaf(nn.Module):
    """Integer elements (value ``low + v``, ``0 <= v < classes``) grouped ``group`` to a token.

    Targets are base-``digit_base`` digits of ``v`` (most significant first) when an element has
    more than ``digit_base`` values: a byte is predicted as 2 x 16 logits instead of 256, which
    keeps the world model's output layer small for byte strings and grids.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        low: Any,
        classes: Any,
        dtype: Any,
        group: int,
        d_model: int,
        digit_base: int,
    ) -> None:
        super().__init__()
        self.shape, self.dtype = shape, dtype
        low = np.broadcast_to(np.asarray(low, dtype=np.int64), shape).reshape(-1)
        classes = np.broadcast_to(np.asarray(classes, dtype=np.int64), shape).reshape(-1)
        n_elements = classes.size
        self.group = group
        self.n_tokens = math.ceil(n_elements / group)
        pad = self.n_tokens * group - n_elements
        self.n_elements, self.pad = n_elements, pad
        self.register_buffer("low", torch.tensor(low), persistent=False)
        # padded elements have 0 classes: no embedding, no target
        padded_classes = torch.tensor(np.concatenate([classes, np.zeros(pad, np.int64)]))
        self.register_buffer("classes", padded_classes.view(self.n_tokens, group), persistent=False)

        self.max_value = int(classes.max())
        # EmbeddingBag sums a token's element embeddings without materialising them one by one
        self.pad_index = group * self.max_value
        self.embed = nn.EmbeddingBag(self.pad_index + 1, d_model, mode="sum", padding_idx=self.pad_index)
        nn.init.normal_(self.embed.weight, std=0.02)
        with torch.no_grad():
            self.embed.weight[-1].zero_()

        self.digit_base = digit_base
        self.n_digits = 1
        while digit_base**self.n_digits < self.max_value:
            self.n_digits += 1
        powers = torch.tensor([digit_base ** (self.n_digits - 1 - j) for j in range(self.n_digits)])
        self.register_buffer("powers", powers, persistent=False)
        if self.n_digits == 1:
            digit_classes = self.classes.unsqueeze(-1)
        else:  # classes of the digit worth P: ceil(classes / P), at most the base
            digit_classes = torch.clamp((self.classes.unsqueeze(-1) + powers - 1) // powers, max=digit_base)
        self.register_buffer("num_classes", digit_classes.reshape(self.n_tokens, -1), persistent=False)
        self.target_size = group * self.n_digits

    def values(self, x: Tensor) -> Tensor:
        """``(L, *shape)`` observations -> ``(L, n_tokens, group)`` values ``v``, -1 where padded."""
        v = x.reshape(x.shape[0], -1).long() - self.low
        v = nn.functional.pad(v, (0, self.pad), value=-1)
        return v.view(x.shape[0], self.n_tokens, self.group)

    def indices(self, x: Tensor) -> Tensor:
        """``(L, *shape)`` observations -> ``(L, n_tokens, group)`` rows of ``embed``, ``pad_index`` where padded."""
        v = self.values(x)
        offset = torch.arange(self.group, device=v.device) * self.max_value
        return torch.where(v >= 0, v + offset, self.pad_index)

    def forward(self, x: Tensor) -> Tensor:
        index = self.indices(x)
        return self.embed(index.view(-1, self.group)).view(*index.shape[:2], -1)

    def targets(self, x: Tensor) -> Tensor:
        """``(L, n_tokens, group * n_digits)`` digit targets, -1 where padded."""
        v = self.values(x).unsqueeze(-1)
        digits = torch.where(v >= 0, (v // self.powers) % self.digit_base, -1)
        return digits.view(x.shape[0], self.n_tokens, self.target_size)

    def decode(self, targets: Tensor) -> Tensor:
        """Inverse of ``targets``; out-of-range predictions are clamped to the largest valid value."""
        digits = targets.reshape(targets.shape[0], self.n_tokens, self.group, self.n_digits)
        v = (digits.clamp(min=0) * self.powers).sum(-1)
        v = torch.minimum(v, (self.classes - 1).clamp(min=0))
        v = v.reshape(targets.shape[0], -1)[:, : self.n_elements] + self.low
        return v.view(targets.shape[0], *self.shape).to(_torch_dtype(self.dtype))


class _ContinuousLeaf(nn.Module):
    """Float elements: normalised, cut into vector chunks or ``patch x patch`` image patches, projected."""

    def __init__(self, space: spaces.Box, d_model: int, chunk: int, patch: int | None) -> None:
        super().__init__()
        self.shape = space.shape
        low, high = space.low.astype(np.float64).ravel(), space.high.astype(np.float64).ravel()
        finite = np.isfinite(low) & np.isfinite(high) & (high > low)
        # finite bounds map to [-1, 1]; unbounded elements get symlog, which tames any scale
        self.register_buffer("finite", torch.as_tensor(finite), persistent=False)
        self.register_buffer(
            "low", torch.as_tensor(np.where(finite, low, 0.0), dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "span", torch.as_tensor(np.where(finite, high - low, 1.0), dtype=torch.float32), persistent=False
        )
        self.patch = patch
        if patch is None:
            size = int(np.prod(self.shape))
            self.chunk = min(chunk, size)
            self.n_tokens = math.ceil(size / self.chunk)
            in_dim = self.chunk
        else:
            h, w, c = self.shape
            self.n_tokens = math.ceil(h / patch) * math.ceil(w / patch)
            in_dim = patch * patch * c
        self.proj = nn.Linear(in_dim, d_model)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1).float()
        scaled = 2 * (flat - self.low) / self.span - 1
        flat = torch.where(self.finite, scaled, torch.sign(flat) * torch.log1p(flat.abs()))
        if self.patch is None:
            pieces = nn.functional.pad(flat, (0, self.n_tokens * self.chunk - flat.shape[1]))
            return self.proj(pieces.view(x.shape[0], self.n_tokens, self.chunk))
        h, w, c, p = *self.shape, self.patch
        img = flat.view(x.shape[0], h, w, c)
        img = nn.functional.pad(img, (0, 0, 0, -w % p, 0, -h % p))
        nh, nw = img.shape[1] // p, img.shape[2] // p
        patches = img.view(x.shape[0], nh, p, nw, p, c).permute(0, 1, 3, 2, 4, 5)
        return self.proj(patches.reshape(x.shape[0], nh * nw, p * p * c))


def _torch_dtype(dtype: Any) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


def _make_leaf(
    space: spaces.Space,
    d_model: int,
    *,
    byte_patch: int,
    vector_chunk: int,
    image_patch: int,
    grid_max_side: int,
    digit_base: int,
    one_token: bool = False,
) -> _DiscreteLeaf | _ContinuousLeaf:
    """Pick the encoder for one leaf space (see the module docstring for the rules)."""
    if isinstance(space, spaces.Discrete):
        return _DiscreteLeaf((), space.start, space.n, space.dtype, 1, d_model, digit_base)
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        shape = tuple(space.shape)
        low, classes = (space.start, space.nvec) if isinstance(space, spaces.MultiDiscrete) else (0, 2)
        size = int(np.prod(shape))
        group = size if one_token else min(size, byte_patch)
        return _DiscreteLeaf(shape, low, classes, space.dtype, group, d_model, digit_base)
    if not isinstance(space, spaces.Box):
        raise _unsupported(space)
    shape, size = tuple(space.shape), int(np.prod(space.shape))
    integer = np.issubdtype(space.dtype, np.integer)
    classes = space.high.astype(np.int64) - space.low.astype(np.int64) + 1 if integer else None
    if integer and classes.max() <= MAX_DISCRETE_VALUES:
        is_grid = len(shape) in (2, 3) and max(shape[:2]) <= grid_max_side
        if one_token:
            group = size
        elif is_grid:
            group = shape[2] if len(shape) == 3 else 1  # one token per cell
        elif len(shape) in (2, 3):  # a large integer image: continuous patches below
            group = 0
        else:
            group = min(size, byte_patch)
        if group:
            return _DiscreteLeaf(shape, space.low, classes, space.dtype, group, d_model, digit_base)
    if one_token:
        return _ContinuousLeaf(space, d_model, chunk=size, patch=None)
    if len(shape) == 3 or (integer and len(shape) == 2):
        image = spaces.Box(space.low.reshape(*shape[:2], -1), space.high.reshape(*shape[:2], -1))
        return _ContinuousLeaf(image, d_model, chunk=vector_chunk, patch=image_patch)
    return _ContinuousLeaf(space, d_model, chunk=vector_chunk, patch=None)


def _leaf_spaces(space: spaces.Space) -> list[spaces.Space]:
    if isinstance(space, spaces.Dict):
        return [leaf for sub in space.spaces.values() for leaf in _leaf_spaces(sub)]
    if isinstance(space, spaces.Tuple):
        return [leaf for sub in space.spaces for leaf in _leaf_spaces(sub)]
    return [space]


def _leaf_values(space: spaces.Space, obs: Any) -> list[Any]:
    if isinstance(space, spaces.Dict):
        return [v for key, sub in space.spaces.items() for v in _leaf_values(sub, obs[key])]
    if isinstance(space, spaces.Tuple):
        return [v for sub, o in zip(space.spaces, obs, strict=True) for v in _leaf_values(sub, o)]
    return [obs]


def _rebuild(space: spaces.Space, leaves: Any) -> Any:
    if isinstance(space, spaces.Dict):
        return {key: _rebuild(sub, leaves) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_rebuild(sub, leaves) for sub in space.spaces)
    return next(leaves)


class ObservationTokenizer(nn.Module):
    """Observations of a Gymnasium space -> ``(*lead, n_tokens, d_model)`` token embeddings.

    Args:
        space: the single-environment observation space.
        d_model: embedding width.
        byte_patch: elements per token for flat discrete data (byte strings, MultiDiscrete).
        vector_chunk: elements per token for float vectors.
        image_patch: side of the square patches of images.
        grid_max_side: an integer ``(H, W[, C])`` Box with ``H, W`` up to this is a grid (one token
            per cell, exact targets); larger ones are images (continuous patches).
        digit_base: elements with more values than this are predicted as base-``digit_base`` digits.

    Attributes:
        n_tokens: tokens per observation.
        target_size: target elements per token (the widest leaf's; narrower ones are padded).
        num_classes: ``(n_tokens, target_size)`` classes of each target element, 0 where none.
        max_classes: the largest entry of ``num_classes`` (the width of a categorical head).
        has_exact_targets: every token has exact targets (no continuous leaf).
    """

    def __init__(
        self,
        space: spaces.Space,
        d_model: int,
        *,
        byte_patch: int = 8,
        vector_chunk: int = 16,
        image_patch: int = 8,
        grid_max_side: int = 32,
        digit_base: int = 16,
    ) -> None:
        super().__init__()
        self.space = space
        options = dict(
            byte_patch=byte_patch,
            vector_chunk=vector_chunk,
            image_patch=image_patch,
            grid_max_side=grid_max_side,
            digit_base=digit_base,
        )
        try:
            self.leaves = nn.ModuleList(_make_leaf(s, d_model, **options) for s in _leaf_spaces(space))
        except TypeError as err:  # name the whole space, not only the offending leaf
            raise _unsupported(space) from err
        self.n_tokens = sum(leaf.n_tokens for leaf in self.leaves)
        # one type embedding per leaf, so the core can tell a Dict's keys apart
        self.type_emb = nn.Parameter(torch.zeros(len(self.leaves), d_model))
        self.pos_emb = nn.Parameter(torch.randn(self.n_tokens, d_model) * 0.02)
        self.register_buffer(
            "leaf_of_token",
            torch.cat([torch.full((leaf.n_tokens,), i) for i, leaf in enumerate(self.leaves)]),
            persistent=False,
        )

        discrete = [leaf for leaf in self.leaves if isinstance(leaf, _DiscreteLeaf)]
        self.target_size = max((leaf.target_size for leaf in discrete), default=0)
        self.has_exact_targets = len(discrete) == len(self.leaves)
        num_classes = torch.zeros(self.n_tokens, self.target_size, dtype=torch.long)
        start = 0
        for leaf in self.leaves:
            if isinstance(leaf, _DiscreteLeaf):
                num_classes[start : start + leaf.n_tokens, : leaf.target_size] = leaf.num_classes
            start += leaf.n_tokens
        self.register_buffer("num_classes", num_classes, persistent=False)
        self.max_classes = int(num_classes.max()) if num_classes.numel() else 0

    def _flat_leaves(self, obs: Any) -> tuple[list[Tensor], tuple[int, ...]]:
        """The observation's leaves as tensors with leading dims flattened, and those leading dims."""
        device = self.pos_emb.device
        values = [
            torch.as_tensor(np.asarray(v) if not isinstance(v, Tensor) else v, device=device)
            for v in _leaf_values(self.space, obs)
        ]
        first, leaf = values[0], self.leaves[0]
        lead = tuple(first.shape[: first.dim() - len(leaf.shape)])
        return [v.reshape(-1, *leaf.shape) for v, leaf in zip(values, self.leaves, strict=True)], lead

    def forward(self, obs: Any) -> Tensor:
        """Embed a batch of observations (numpy or torch, any leading dims) -> ``(*lead, n_tokens, d)``."""
        xs, lead = self._flat_leaves(obs)
        parts = [leaf(x) for leaf, x in zip(self.leaves, xs, strict=True)]
        tokens = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        tokens = tokens + (self.type_emb[self.leaf_of_token] + self.pos_emb)  # one pass over the batch
        return tokens.view(*lead, self.n_tokens, -1)

    def targets(self, obs: Any) -> Tensor:
        """Exact targets ``(*lead, n_tokens, target_size)`` (long); -1 where an element has none."""
        xs, lead = self._flat_leaves(obs)
        parts = []
        for leaf, x in zip(self.leaves, xs, strict=True):
            if isinstance(leaf, _DiscreteLeaf):
                t = leaf.targets(x)
                parts.append(nn.functional.pad(t, (0, self.target_size - leaf.target_size), value=-1))
            else:
                parts.append(torch.full((x.shape[0], leaf.n_tokens, self.target_size), -1, device=x.device))
        return torch.cat(parts, dim=1).view(*lead, self.n_tokens, self.target_size)

    def decode(self, targets: Tensor) -> Any:
        """Inverse of ``targets``: ``(*lead, n_tokens, target_size)`` -> observations as torch tensors.

        Exact for discrete-valued leaves; continuous leaves decode to ``None``.
        """
        lead = targets.shape[:-2]
        flat = targets.reshape(-1, self.n_tokens, self.target_size)
        decoded, start = [], 0
        for leaf in self.leaves:
            if isinstance(leaf, _DiscreteLeaf):
                t = flat[:, start : start + leaf.n_tokens, : leaf.target_size]
                decoded.append(leaf.decode(t).view(*lead, *leaf.shape))
            else:
                decoded.append(None)
            start += leaf.n_tokens
        return _rebuild(self.space, iter(decoded))


class ActionTokenizer(nn.Module):
    """Actions of a ``Discrete``, ``MultiDiscrete``, ``MultiBinary`` or ``Box`` space -> one token each."""

    def __init__(self, space: spaces.Space, d_model: int) -> None:
        super().__init__()
        if not isinstance(space, (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Box)):
            raise TypeError(
                f"devlearn cannot tokenize the action space {space}. "
                "Supported action spaces: Discrete, MultiDiscrete, MultiBinary, Box."
            )
        self.shape = tuple(space.shape)
        self.leaf = _make_leaf(
            space,
            d_model,
            byte_patch=1,
            vector_chunk=1,
            image_patch=1,
            grid_max_side=0,
            digit_base=2**31,
            one_token=True,
        )

    def forward(self, action: Any) -> Tensor:
        """Embed actions with any leading dims ``(*lead, *space.shape)`` -> ``(*lead, d_model)``."""
        a = action if isinstance(action, Tensor) else torch.as_tensor(np.asarray(action))
        a = a.to(self.leaf.low.device)
        lead = a.shape[: a.dim() - len(self.shape)]
        return self.leaf(a.reshape(-1, *self.shape)).view(*lead, -1)
