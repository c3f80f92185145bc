"""ObservationTokenizer / ActionTokenizer: shapes, exact round trips, unsupported spaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from devlearn.model.tokenize import ActionTokenizer, ObservationTokenizer

D = 16

GRID = spaces.Box(0, 255, (5, 5, 3), np.uint8)  # MiniGrid-style: one token per cell
TEXT = spaces.Box(0, 255, (21,), np.uint8)  # a byte string whose length is not a multiple of 8

DISCRETE_SPACES = {
    "discrete": spaces.Discrete(7, start=-2),
    "multidiscrete": spaces.MultiDiscrete([3, 300, 4, 2]),
    "multibinary": spaces.MultiBinary([3, 5]),
    "grid": GRID,
    "bytes": TEXT,
    "dict": spaces.Dict(
        {"grid": GRID, "text": TEXT, "mode": spaces.Discrete(3), "flags": spaces.MultiBinary(4)}
    ),
}


def batch_of(space: spaces.Space, n: int, seed: int = 0):
    space.seed(seed)
    samples = [space.sample() for _ in range(n)]
    if isinstance(space, spaces.Dict):
        return {key: np.stack([s[key] for s in samples]) for key in space.spaces}
    return np.stack(samples)


def assert_same(decoded, original) -> None:
    if isinstance(original, dict):
        assert decoded.keys() == original.keys()
        for key in original:
            assert_same(decoded[key], original[key])
        return
    assert decoded.dtype == torch.from_numpy(original).dtype
    np.testing.assert_array_equal(decoded.numpy(), original)


@pytest.mark.parametrize("name", list(DISCRETE_SPACES))
def test_round_trip_is_exact(name: str) -> None:
    space = DISCRETE_SPACES[name]
    tok = ObservationTokenizer(space, D)
    obs = batch_of(space, 32)
    targets = tok.targets(obs)
    assert tok.has_exact_targets
    assert targets.shape == (32, tok.n_tokens, tok.target_size) and targets.dtype == torch.long
    # every target lies inside its element's class range, -1 exactly where there is no element
    classes = tok.num_classes.expand_as(targets)
    assert ((targets >= 0) == (classes > 0)).all()
    assert (targets < classes.clamp(min=1)).all()
    assert_same(tok.decode(targets), obs)
    assert tok(obs).shape == (32, tok.n_tokens, D)


def test_token_layout_per_space() -> None:
    assert ObservationTokenizer(GRID, D).n_tokens == 25  # one per cell
    text = ObservationTokenizer(TEXT, D)
    assert text.n_tokens == 3  # 8-byte patches, the last one padded
    assert text.max_classes == 16  # a byte is predicted as two base-16 digits
    assert ObservationTokenizer(spaces.Discrete(5), D).max_classes == 5
    assert ObservationTokenizer(DISCRETE_SPACES["dict"], D).n_tokens == 25 + 3 + 1 + 1


def test_embeddings_see_every_element_and_position() -> None:
    tok = ObservationTokenizer(GRID, D)
    obs = batch_of(GRID, 2)
    moved = obs.copy()
    moved[0, 2, 3, 0] += 1
    diff = (tok(obs) - tok(moved)).abs().sum(-1)
    assert diff[0, 2 * 5 + 3] > 0 and diff[0].count_nonzero() == 1 and diff[1].count_nonzero() == 0
    same = np.zeros((1, 5, 5, 3), np.uint8)  # identical cells still differ by position
    tokens = tok(same)[0]
    assert not torch.allclose(tokens[0], tokens[1])


def test_leading_dims_and_torch_input() -> None:
    tok = ObservationTokenizer(GRID, D)
    obs = torch.as_tensor(batch_of(GRID, 12)).view(3, 4, 5, 5, 3)
    assert tok(obs).shape == (3, 4, 25, D)
    assert tok.targets(obs).shape == (3, 4, 25, 6)
    assert torch.equal(tok.decode(tok.targets(obs)), obs)


def test_continuous_shapes() -> None:
    vector = ObservationTokenizer(spaces.Box(-np.inf, np.inf, (40,), np.float32), D)
    assert vector(np.random.randn(4, 40).astype(np.float32) * 1e6).isfinite().all()  # symlog tames scale
    assert vector.n_tokens == 3 and not vector.has_exact_targets
    image = ObservationTokenizer(spaces.Box(0, 255, (64, 60, 3), np.uint8), D)  # large: patches
    assert image(batch_of(image.space, 2)).shape == (2, 8 * 8, D)
    assert (image.targets(batch_of(image.space, 2)) == -1).all()
    float_image = ObservationTokenizer(spaces.Box(0.0, 1.0, (32, 32, 3), np.float32), D, image_patch=16)
    assert float_image(batch_of(float_image.space, 2)).shape == (2, 4, D)


def test_mixed_dict_decodes_discrete_leaves_only() -> None:
    space = spaces.Dict({"grid": GRID, "pose": spaces.Box(-1.0, 1.0, (3,), np.float32)})
    tok = ObservationTokenizer(space, D)
    obs = batch_of(space, 4)
    assert not tok.has_exact_targets and tok.n_tokens == 26
    assert tok(obs).shape == (4, 26, D)
    decoded = tok.decode(tok.targets(obs))
    assert decoded["pose"] is None
    np.testing.assert_array_equal(decoded["grid"].numpy(), obs["grid"])
    # type embeddings tell the leaves apart: zeroing them changes the output
    with torch.no_grad():
        tok.type_emb.normal_()
    before = tok(obs)
    with torch.no_grad():
        tok.type_emb.zero_()
    assert not torch.allclose(before, tok(obs))


@pytest.mark.parametrize(
    "space",
    [
        spaces.Graph(node_space=spaces.Discrete(3), edge_space=None),
        spaces.Sequence(spaces.Discrete(3)),
        spaces.Text(12),
        spaces.Dict({"ok": spaces.Discrete(2), "bad": spaces.Text(5)}),
    ],
)
def test_unsupported_space_names_it_and_lists_supported(space: spaces.Space) -> None:
    with pytest.raises(TypeError) as err:
        ObservationTokenizer(space, D)
    message = str(err.value)
    assert str(space) in message
    for name in ("Discrete", "MultiDiscrete", "MultiBinary", "Box", "Dict"):
        assert name in message


@pytest.mark.parametrize(
    "space",
    [
        spaces.Discrete(5, start=1),
        spaces.MultiDiscrete([3, 4]),
        spaces.MultiBinary(3),
        spaces.Box(-1.0, 1.0, (2,), np.float32),
    ],
)
def test_action_tokenizer_one_token_per_action(space: spaces.Space) -> None:
    tok = ActionTokenizer(space, D)
    actions = batch_of(space, 6).reshape(2, 3, *space.shape)
    emb = tok(actions)
    assert emb.shape == (2, 3, D)
    flat = emb.reshape(6, D)
    distinct = {tuple(np.asarray(a).ravel().tolist()) for a in batch_of(space, 6)}
    assert len({tuple(row.tolist()) for row in flat}) == len(distinct)  # different actions, different tokens


def test_action_tokenizer_rejects_dict() -> None:
    with pytest.raises(TypeError, match="action space"):
        ActionTokenizer(spaces.Dict({"a": spaces.Discrete(2)}), D)
