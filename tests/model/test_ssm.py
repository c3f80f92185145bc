"""The selective SSM: the chunked parallel scan equals the step-by-step recurrence (fp32, atol 1e-5)."""

from __future__ import annotations

import math

import pytest
import torch

from devlearn.model.memory.ssm import SelectiveSSM, segsum, ssd_chunked, ssd_step

ATOL = 1e-5


def random_qkvg(b: int, t: int, h: int = 3, n: int = 5, p: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(b, t, h, n, generator=gen) for _ in range(2))
    v = torch.randn(b, t, h, p, generator=gen)
    g = -torch.rand(b, t, h, generator=gen) * 0.5  # decays in (0.6, 1]: the state keeps a long memory
    return q, k, v, g


def recurrence(q, k, v, g, state):
    """The reference: one ``ssd_step`` per time step."""
    out = []
    for t in range(q.shape[1]):
        o, state = ssd_step(q[:, t], k[:, t], v[:, t], g[:, t], state)
        out.append(o)
    return torch.stack(out, 1), state


def test_segsum_is_the_sum_of_log_decays_between_two_steps():
    g = torch.tensor([-0.1, -0.2, -0.3, -0.4])
    s = segsum(g)
    assert torch.allclose(s[3, 1], torch.tensor(-0.7)) and s[2, 2] == 0 and s[1, 2] == -torch.inf


# multiples of the chunk (8) and not; 17 runs as 3 chunks of 6 steps (the shortest that cover it), not 3 of 8
@pytest.mark.parametrize("t", [1, 7, 8, 16, 17, 29, 64])
@pytest.mark.parametrize("with_state", [False, True])
def test_chunked_scan_equals_recurrence(one_thread, t, with_state):
    q, k, v, g = random_qkvg(2, t, seed=t)
    state = torch.randn(2, 3, 5, 4) if with_state else None
    o, final = ssd_chunked(q, k, v, g, chunk=8, initial_state=state)
    o_ref, final_ref = recurrence(q, k, v, g, state if with_state else torch.zeros(2, 3, 5, 4))
    torch.testing.assert_close(o, o_ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(final, final_ref, atol=ATOL, rtol=0)


def test_chunk_size_does_not_change_the_result(one_thread):
    q, k, v, g = random_qkvg(2, 50)
    outs = [ssd_chunked(q, k, v, g, chunk=c) for c in (1, 4, 16, 64)]
    for o, s in outs[1:]:
        torch.testing.assert_close(o, outs[0][0], atol=ATOL, rtol=0)
        torch.testing.assert_close(s, outs[0][1], atol=ATOL, rtol=0)


@pytest.mark.parametrize("t", [12, 16, 21])  # chunk 4, 8 -- with a given initial state and without
@pytest.mark.parametrize("chunk", [4, 8])
@pytest.mark.parametrize("with_state", [False, True])
def test_layer_parallel_equals_recurrent(one_thread, t, chunk, with_state):
    torch.manual_seed(0)
    layer = SelectiveSSM(d_model=16, n_heads=2, d_state=8, chunk=chunk, kernel="torch")
    with torch.no_grad():  # larger steps than the init's, so the decays are far from 1 and matter
        layer.dt_bias.add_(2.0)
    u = torch.randn(3, t, 16)
    state0 = torch.randn(3, 2, 8, 16) if with_state else None
    with torch.no_grad():
        y, final = layer(u, state0)
        state, ys = state0, []
        for i in range(t):
            y_t, state = layer.step(u[:, i], state)
            ys.append(y_t)
    torch.testing.assert_close(y, torch.stack(ys, 1), atol=ATOL, rtol=0)
    torch.testing.assert_close(final, state, atol=ATOL, rtol=0)
    assert y.shape == (3, t, 16) and final.shape == (3, 2, 8, 16)


def test_resets_forget_the_past_in_both_modes(one_thread):
    torch.manual_seed(1)
    layer = SelectiveSSM(d_model=8, n_heads=2, d_state=4, chunk=4, kernel="torch")
    u = torch.randn(2, 11, 8)
    reset = torch.zeros(2, 11, dtype=torch.bool)
    reset[0, 6] = reset[1, 3] = True  # episode starts inside a chunk and between chunks
    state0 = torch.randn(2, 2, 4, 8)
    y, final = layer(u, state0, reset=reset)
    state, ys = state0, []
    for i in range(11):
        y_t, state = layer.step(u[:, i], state, reset=reset[:, i])
        ys.append(y_t)
    torch.testing.assert_close(y, torch.stack(ys, 1), atol=ATOL, rtol=0)
    torch.testing.assert_close(final, state, atol=ATOL, rtol=0)
    # From a reset on, the output is that of a fresh episode started there with a zero state.
    fresh, _ = layer(u[:1, 6:])
    torch.testing.assert_close(y[:1, 6:], fresh, atol=ATOL, rtol=0)
    # ... and gradients stay finite through the -inf decays.
    y.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


def test_a_horizon_bounds_how_long_the_state_keeps_adding_up(one_thread):
    """``horizon=H`` caps every log decay at -1/H: both modes still agree, and the state settles within a few H."""
    torch.manual_seed(0)
    layers = {h: SelectiveSSM(d_model=8, n_heads=2, d_state=4, chunk=8, kernel="torch", horizon=h) for h in (0, 10)}
    layers[10].load_state_dict(layers[0].state_dict())
    with torch.no_grad():  # the slowest decays Mamba's initialization allows: exp(-1e-3) a step
        for layer in layers.values():
            layer.A_log.zero_()
            layer.dt_bias.fill_(math.log(math.expm1(1e-3)))
    u = torch.randn(1, 1, 8).expand(2, 400, 8)  # the same input for 400 steps
    with torch.no_grad():
        g = layers[10]._project(u)[-1]
        assert g.max() <= -1 / 10 and layers[0]._project(u)[-1].max() > -1 / 10
        y, final = layers[10](u)
        state, ys, norms = None, [], {}
        for i in range(400):
            y_t, state = layers[10].step(u[:, i], state)
            ys.append(y_t)
        torch.testing.assert_close(y, torch.stack(ys, 1), atol=ATOL, rtol=0)
        torch.testing.assert_close(final, state, atol=ATOL, rtol=0)
        for h, layer in layers.items():
            _, at200 = layer(u[:, :200])
            _, at400 = layer(u)
            norms[h] = (at400 - at200).norm() / at400.norm()
    assert norms[10] < 1e-6  # settled: 200 more steps change nothing
    assert norms[0] > 0.3  # still adding up after 200 steps: 400 steps reach a state 200 never did


def test_bad_arguments_name_what_is_allowed():
    with pytest.raises(ValueError, match="kernel='cuda' is not valid; allowed values: auto, torch, fla"):
        SelectiveSSM(8, kernel="cuda")
    with pytest.raises(ValueError, match="chunk=0 must be a positive integer"):
        SelectiveSSM(8, chunk=0)
    with pytest.raises(ValueError, match="n_heads=0 must be a positive integer"):
        SelectiveSSM(8, n_heads=0)
    with pytest.raises(ValueError, match="head_dim=0 must be a positive integer"):
        SelectiveSSM(8, head_dim=0)
    with pytest.raises(ValueError, match=r"horizon=-1 must be 0 \(unbounded\) or a positive integer"):
        SelectiveSSM(8, horizon=-1)
    layer = SelectiveSSM(8, n_heads=2)
    with pytest.raises(ValueError, match=r"input must be \(B, T, 8\)"):
        layer(torch.zeros(2, 8))
    with pytest.raises(ValueError, match="reset must be a bool tensor of shape"):
        layer(torch.zeros(2, 3, 8), reset=torch.zeros(2, 3))
    with pytest.raises(RuntimeError, match="kernel='fla'.*not on CUDA"):
        SelectiveSSM(8, kernel="fla")(torch.zeros(1, 2, 8))
    assert not layer.use_kernel(torch.zeros(1, 2, 8), None)  # auto on CPU: the torch path


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA and the fla package")
def test_fla_kernel_matches_the_torch_reference_on_cuda(monkeypatch):
    pytest.importorskip("fla.ops.simple_gla")
    import devlearn.model.memory.ssm as ssm

    torch.manual_seed(0)
    layer = SelectiveSSM(d_model=64, n_heads=4, d_state=16, kernel="auto").cuda()
    u, state = torch.randn(4, 300, 64, device="cuda"), torch.randn(4, 4, 16, 32, device="cuda")
    if ssm.fla_blocked(u.device.index or 0) is not None:
        # fla #640 breaks the kernel's backward on this GPU and Triton: auto must keep the torch path. The
        # forward compared below is not affected, so the refusal is lifted for this no-grad comparison only.
        assert not layer.use_kernel(u, None)
        monkeypatch.setattr(ssm, "fla_blocked", lambda device_index: None)
    with torch.no_grad():
        layer.kernel = "torch"
        y_ref, s_ref = layer(u, state)
        layer.kernel = "fla"
        y, s = layer(u, state)
    # Triton's fp32 dots run in TF32 (10-bit mantissa); see docs/benchmarks.md for the tolerance.
    torch.testing.assert_close(y, y_ref, atol=5e-3, rtol=5e-3)
    torch.testing.assert_close(s, s_ref, atol=5e-3, rtol=5e-3)


def test_auto_keeps_the_torch_path_where_fla_gives_wrong_gradients(monkeypatch):
    """fla-core 0.6.0 + Triton 3.4-3.7.0 on Hopper: wrong gradients (fla #640), refused there (the lent H100)."""
    import sys
    from types import SimpleNamespace

    from devlearn.model.memory.ssm import fla_blocked

    check = fla_blocked.__wrapped__  # uncached
    for capability, version, blocked in [
        ((9, 0), "3.5.0", True),
        ((9, 0), "3.7.1", False),
        ((9, 0), "3.4.0+git1234", True),
        ((8, 0), "3.5.0", False),
    ]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i, c=capability: c)
        monkeypatch.setitem(sys.modules, "triton", SimpleNamespace(__version__=version))
        reason = check(0)
        assert (reason is not None) == blocked, (capability, version, reason)
        if blocked:
            assert "upgrade to Triton >= 3.7.1" in reason
