"""The core's shortcut for the last steps: ``tail`` / ``last`` return exactly the full pass's last states."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from devlearn.config import CoreConfig
from devlearn.model.core import CausalTransformer, Core

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

GRID = spaces.Box(0, 5, (3, 3, 2), dtype=np.uint8)
ACT = spaces.Discrete(4)
T = 5


@pytest.mark.parametrize("tail", [1, 2, 3, 10])
def test_transformer_tail_equals_the_last_rows_of_the_full_pass(tail) -> None:
    torch.manual_seed(0)
    net = CausalTransformer(16, n_layers=3, n_heads=2, max_len=10)
    x = torch.randn(4, 10, 16)
    mask = torch.rand(4, 1, 10, 10) > 0.3
    mask |= torch.eye(10, dtype=torch.bool)  # no empty row
    for m in (None, mask):  # the causal default and an explicit mask
        full = net(x, m)
        torch.testing.assert_close(net(x, m, tail=tail), full[:, -tail:], rtol=0, atol=1e-6)


@pytest.mark.parametrize("memory", [False, True])
def test_states_of_the_last_steps_equal_the_full_states(memory) -> None:
    torch.manual_seed(0)
    core = Core(GRID, ACT, CoreConfig(d_model=16, n_heads=2, window=T))
    GRID.seed(0)
    obs = torch.as_tensor(np.stack([GRID.sample() for _ in range(3 * T)])).view(3, T, 3, 3, 2)
    act = torch.randint(4, (3, T))
    valid = torch.ones(3, T, dtype=torch.bool)
    valid[1, :2] = False  # an episode began inside the window
    mem = torch.randn(3, 2, 16) if memory else None
    o = core.encoder(obs)
    h_obs, h_act = core.states(o, act, valid, mem)
    for last in (1, 2, T):
        g_obs, g_act = core.states(o, act, valid, mem, last=last)
        assert g_obs.shape == (3, last, 16)
        torch.testing.assert_close(g_obs, h_obs[:, -last:], rtol=0, atol=1e-6)
        torch.testing.assert_close(g_act, h_act[:, -last:], rtol=0, atol=1e-6)
    # the candidates' states are the full pass's, one candidate at a time
    cand = torch.arange(4)
    c_obs, c_act = core.candidate_states(o, act, valid, cand, mem)
    torch.testing.assert_close(c_obs, h_obs[:, -1], rtol=0, atol=1e-5)
    for a in range(4):
        act_a = act.clone()
        act_a[:, -1] = a
        torch.testing.assert_close(c_act[:, a], core.states(o, act_a, valid, mem)[1][:, -1], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "space",
    [
        spaces.Box(0, 10, (7, 7, 3), dtype=np.uint8),  # a MiniGrid view
        spaces.Dict({"grid": spaces.Box(0, 5, (3, 3, 2), dtype=np.uint8), "dir": spaces.Discrete(4)}),
        spaces.MultiDiscrete([3, 5, 2, 7, 4, 2, 3, 5, 6, 4, 3]),  # 8 elements a token: the second is padded
    ],
)
def test_folded_pooling_equals_embedding_then_pooling(space) -> None:
    """``ObservationEncoder``'s folded path (the update's large batches): same values, same gradients."""
    from devlearn.model.core import ObservationEncoder

    torch.manual_seed(0)
    enc = ObservationEncoder(space, 16)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # not the initial (zero type embedding) values
        for leaf in enc.tokenizer.leaves:
            leaf.embed.weight[leaf.pad_index].zero_()
    space.seed(0)
    samples = [space.sample() for _ in range(96)]
    if isinstance(space, spaces.Dict):
        obs = {k: torch.as_tensor(np.stack([s[k] for s in samples])).view(12, 8, *space[k].shape) for k in space}
    else:
        obs = torch.as_tensor(np.stack(samples)).view(12, 8, *space.shape)
    out, grads = [], []
    for fold in (True, False):
        enc.zero_grad()
        y = enc.ln(enc._pool_folded(*enc.tokenizer._flat_leaves(obs), force=True)) if fold else enc(obs)
        (y * torch.linspace(-1, 1, 16)).sum().backward()
        out.append(y)
        grads.append({n: p.grad.clone() for n, p in enc.named_parameters()})
    assert out[0].shape == (12, 8, 16)
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=1e-5)
    for name in grads[1]:
        scale = float(grads[1][name].abs().max())  # sums over ~5,000 elements: rounding grows with them
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-5 * scale, msg=name)
    for i, leaf in enumerate(enc.tokenizer.leaves):  # the padding row never learns
        assert not grads[0][f"tokenizer.leaves.{i}.embed.weight"][leaf.pad_index].any()


def test_the_update_folds_and_acting_does_not() -> None:
    """On a MiniGrid view (values 0..255 declared, ~20 used) the update's ~500 observations fold; acting's 8 do not."""
    from devlearn.model import core as core_module
    from devlearn.model.core import ObservationEncoder

    torch.manual_seed(0)
    enc = ObservationEncoder(spaces.Box(0, 255, (7, 7, 3), dtype=np.uint8), 64)
    obs = torch.randint(0, 11, (500, 7, 7, 3), dtype=torch.uint8)
    xs, lead = enc.tokenizer._flat_leaves(obs)
    assert enc._pool_folded(xs, lead) is not None  # ~33 rows used of 769: cheaper folded
    assert enc._pool_folded([xs[0][:8]], (8,)) is None  # 8 observations: not
    assert core_module.FOLD_MIN_BATCH > 8
    enc.fold = False
    direct = enc(obs)
    enc.fold = True
    torch.testing.assert_close(enc(obs), direct, rtol=0, atol=1e-5)
