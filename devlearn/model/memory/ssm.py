"""A selective state-space layer (Mamba-2's SSD form) in pure PyTorch, with an optional CUDA kernel.

The recurrence, per head ``h`` (``N`` state size, ``P`` head size), for inputs ``u_t``::

    dt_t = softplus(W_dt u_t + b_dt)            # input-dependent step size, one per head
    g_t  = dt_t * A_h,   A_h = -exp(A_log_h)     # log of a scalar decay in (0, 1]
    S_t  = exp(g_t) * S_{t-1} + B_t^T (dt_t x_t) # S: (N, P); B_t, C_t: (N,), input-dependent
    y_t  = C_t S_t + D_h x_t

followed by a gate ``silu(z_t)``, an RMS norm and an output projection. ``q = C``, ``k = B``,
``v = dt * x`` and ``g`` are exactly the arguments of a *gated linear attention* with a scalar
gate per head, so the same four tensors drive three interchangeable evaluators:

* ``ssd_chunked``: the training path. Inside each chunk of ``chunk`` steps the output is a masked
  ``(L, L)`` attention with decays; across chunks only the ``(N, P)`` state is carried. Cost
  O(T * chunk) and O(T / chunk) sequential steps instead of O(T) for a step-by-step loop.
* ``ssd_step``: the acting path, O(1) per step: one state update.
* on CUDA, when ``fla`` (``pip install fla-core``, or ``devlearn[gpu]``) imports,
  ``fla.ops.simple_gla.chunk_simple_gla`` computes ``ssd_chunked``'s result with Triton kernels.
  The pure-torch path stays the reference and the CPU path; the tests compare the others to it.

Unlike Mamba we apply no short causal convolution before the scan: it would add a second piece
of recurrent state (the last few inputs), and the core's attention window already covers
short-range mixing. Episode boundaries inside a sequence are handled by ``reset`` flags, which
set the decay to zero (``g = -inf``) on the step an episode starts, so no state leaks across
episodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import torch
from torch import Tensor, nn
from torch.nn import functional as F

KERNELS = ("auto", "torch", "fla")


# --- the scan, as functions of (q, k, v, g) ---------------------------------------------------------


def segsum(g: Tensor) -> Tensor:
    """``(..., L)`` log decays -> ``(..., L, L)`` with ``out[t, s] = sum_{s < r <= t} g_r`` (``-inf`` for ``s > t``).

    Summed with a masked cumsum rather than as ``cumsum[t] - cumsum[s]``: the difference of two
    large cumulative sums loses precision, and is ``nan`` once a reset (``-inf``) is inside.
    """
    n = g.shape[-1]
    x = g.unsqueeze(-1).expand(*g.shape, n)  # x[..., r, s] = g_r
    below = torch.ones(n, n, dtype=torch.bool, device=g.device).tril(-1)
    x = x.masked_fill(~below, 0.0).cumsum(dim=-2)  # sum over s < r <= t
    return x.masked_fill(~below.logical_or(torch.eye(n, dtype=torch.bool, device=g.device)), -math.inf)


def ssd_chunked(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, chunk: int = 64, initial_state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The whole sequence at once, chunk by chunk.

    Args:
        q, k: ``(B, T, H, N)`` (Mamba's ``C`` and ``B``).
        v: ``(B, T, H, P)`` (``dt * x``).
        g: ``(B, T, H)`` log decays, ``<= 0``; ``-inf`` zeroes the state before that step's write.
        chunk: the most steps per chunk; ``T`` need not be a multiple of it.
        initial_state: ``(B, H, N, P)`` or ``None`` (zeros).

    Returns:
        ``o`` ``(B, T, H, P)`` with ``o_t = q_t S_t``, and the final state ``S_T`` ``(B, H, N, P)``.
    """
    b, t, h, n = q.shape
    p = v.shape[-1]
    c = max(-(-t // chunk), 1)
    chunk = max(-(-t // c), 1)  # as many chunks as ``chunk`` asks for, each as short as covers t: 65 steps are
    pad = c * chunk - t  # 2 chunks of 33 (66 steps), not 2 of 64 (128 steps, most of them padding)
    if pad:  # padded steps decay by exp(0) = 1 and write k = v = 0: the state passes through unchanged
        q, k, v = (F.pad(x, (0, 0, 0, 0, 0, pad)) for x in (q, k, v))
        g = F.pad(g, (0, 0, 0, pad))
    # (B, H, chunks, L, ...): heads and chunks become batch dims of every matmul below
    q, k = (x.reshape(b, c, chunk, h, n).permute(0, 3, 1, 2, 4) for x in (q, k))
    v = v.reshape(b, c, chunk, h, p).permute(0, 3, 1, 2, 4)
    g = g.reshape(b, c, chunk, h).permute(0, 3, 1, 2)

    decay = segsum(g).exp()  # (B, H, c, L, L): decay from step s to step t within a chunk
    o = (q @ k.transpose(-1, -2) * decay) @ v  # contributions from inside the chunk

    # What each chunk adds to the state by its end, and the decay across the whole chunk.
    to_end = decay[..., -1, :]  # (B, H, c, L)
    written = (k * to_end.unsqueeze(-1)).transpose(-1, -2) @ v  # (B, H, c, N, P)
    cum = g.cumsum(-1)  # decay from the chunk's start to each step
    across = cum[..., -1].exp()  # (B, H, c)

    state = initial_state if initial_state is not None else q.new_zeros(b, h, n, p)
    entering = []
    for i in range(c):  # O(T / chunk) sequential steps, each a (N, P) update
        entering.append(state)
        state = across[:, :, i, None, None] * state + written[:, :, i]
    # contributions from before the chunk: the state that entered it, decayed up to each step
    o = o + cum.exp().unsqueeze(-1) * (q @ torch.stack(entering, dim=2))
    o = o.permute(0, 2, 3, 1, 4).reshape(b, c * chunk, h, p)[:, :t]
    return o, state


def ssd_step(q: Tensor, k: Tensor, v: Tensor, g: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """One step of the recurrence: ``q, k (B, H, N)``, ``v (B, H, P)``, ``g (B, H)``, ``state (B, H, N, P)``.

    Returns ``o_t (B, H, P)`` and the new state.
    """
    state = g.exp()[..., None, None] * state + k.unsqueeze(-1) * v.unsqueeze(-2)
    return (q.unsqueeze(-2) @ state).squeeze(-2), state


@cache
def fla_kernel() -> Callable[..., tuple[Tensor, Tensor]] | None:
    """``fla.ops.simple_gla.chunk_simple_gla`` when the ``fla`` package imports, else ``None``."""
    try:
        from fla.ops.simple_gla import chunk_simple_gla  # deferred: an optional dependency (the gpu extra)
    except Exception:  # not installed, or installed without a working Triton: the torch path serves
        return None
    return chunk_simple_gla


@cache
def fla_blocked(device_index: int) -> str | None:
    """Why the ``fla`` kernel must not train on this CUDA device, or None.

    fla-core 0.6.0's gated backward gives wrong gradients with Triton >= 3.4.0 and < 3.7.1 on Hopper
    (compute capability 9.x; fla issue #640) and raises there; we measured that raise on the lent H100
    (bench/results/archive/ssm_kernel.tar.xz:ssm_kernel-h100-fla-refused.log), so ``auto`` keeps the torch path on such a machine.
    """
    if torch.cuda.get_device_capability(device_index)[0] != 9:
        return None
    try:
        import triton  # deferred: an optional dependency, present with CUDA builds of torch
    except ImportError:
        return None
    version = tuple(int(p) for p in triton.__version__.split("+")[0].split(".")[:3] if p.isdigit())
    if (3, 4, 0) <= version < (3, 7, 1):
        return f"Triton {triton.__version__} on a Hopper GPU gives wrong fla gradients (fla #640): upgrade to Triton >= 3.7.1"
    return None


# --- the layer ---------------------------------------------------------------------------------------


class SelectiveSSM(nn.Module):
    """Mamba-2-style selective SSM layer: ``(B, T, d_model)`` -> ``(B, T, d_model)`` plus a recurrent state.

    Args:
        d_model: input and output width.
        n_heads: heads, each with its own scalar decay.
        head_dim: ``P``, channels per head (default ``2 * d_model / n_heads``: Mamba's expansion of 2).
        d_state: ``N``, the state size per channel; the state is ``(n_heads, d_state, head_dim)``.
        chunk: chunk length of the parallel scan.
        kernel: ``"auto"`` (``fla`` on CUDA when importable and no ``reset`` is given, else torch),
            ``"torch"`` (always the reference) or ``"fla"`` (required; an error if it cannot run).
        dt_min, dt_max: range of the initial step sizes (Mamba's initialization).
        horizon: if positive, every step forgets at least ``1 / horizon`` of the state (the log decay is
            capped at ``-1 / horizon``), so the state settles within a few ``horizon`` steps whatever the
            episode's length. Unbounded (0), a head whose decay learned to stay near 1 keeps adding its
            input for as long as the episode runs, and after thousands of steps reaches states that a
            network trained on hundreds never saw (docs/benchmarks.md, "Recall to 100,000 steps").
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int = 4,
        head_dim: int | None = None,
        d_state: int = 16,
        chunk: int = 64,
        kernel: str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        horizon: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 0:
            raise ValueError(f"SelectiveSSM: horizon={horizon!r} must be 0 (unbounded) or a positive integer.")
        for name, value in (
            ("d_model", d_model),
            ("n_heads", n_heads),
            ("head_dim", 1 if head_dim is None else head_dim),
            ("d_state", d_state),
            ("chunk", chunk),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SelectiveSSM: {name}={value!r} must be a positive integer.")
        head_dim = head_dim if head_dim is not None else max(1, 2 * d_model // n_heads)
        if kernel not in KERNELS:
            raise ValueError(
                f"SelectiveSSM: kernel={kernel!r} is not valid; allowed values: {', '.join(KERNELS)}."
            )
        if not 0 < dt_min <= dt_max:
            raise ValueError(
                f"SelectiveSSM: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}."
            )
        self.d_model, self.n_heads, self.head_dim, self.d_state = d_model, n_heads, head_dim, d_state
        self.chunk, self.kernel, self.horizon = chunk, kernel, horizon
        self.d_inner = n_heads * head_dim
        # one projection for the gate z, the input x, B and C (shared by the heads, Mamba-2's ngroups=1) and dt
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * d_state + n_heads)
        # dt = softplus(. + dt_bias) starts log-uniform in [dt_min, dt_max]: bias = softplus^-1(dt)
        dt = torch.exp(torch.empty(n_heads).uniform_(math.log(dt_min), math.log(dt_max)))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.empty(n_heads).uniform_(1, 16).log())  # decay rates A in [1, 16]
        self.D = nn.Parameter(torch.ones(n_heads))  # skip connection per head
        self.norm_weight = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model)

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> Tensor:
        """A zero state ``(batch, n_heads, d_state, head_dim)`` (fp32, as the kernels keep it)."""
        return torch.zeros(batch, self.n_heads, self.d_state, self.head_dim, device=device)

    def _project(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``u (..., d_model)`` -> ``z (..., d_inner)``, ``x (..., H, P)``, ``q, k (..., H, N)``, ``v (..., H, P)``, ``g (..., H)``."""
        z, x, b, c, dt = self.in_proj(u).split(
            [self.d_inner, self.d_inner, self.d_state, self.d_state, self.n_heads], dim=-1
        )
        dt = F.softplus(dt + self.dt_bias)
        g = dt * -self.A_log.exp()
        if self.horizon:
            g = g.clamp(max=-1.0 / self.horizon)
        x = x.unflatten(-1, (self.n_heads, self.head_dim))
        heads = (*b.shape[:-1], self.n_heads, self.d_state)
        q, k = c.unsqueeze(-2).expand(heads), b.unsqueeze(-2).expand(heads)
        return z, x, q, k, x * dt.unsqueeze(-1), g

    def _output(self, o: Tensor, x: Tensor, z: Tensor) -> Tensor:
        y = (o + self.D[:, None] * x).flatten(-2) * F.silu(z)
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-5) * self.norm_weight  # gated RMS norm
        return self.out_proj(y)

    def use_kernel(self, u: Tensor, reset: Tensor | None) -> bool:
        """Whether ``forward`` runs the ``fla`` kernel for this input (see ``kernel``)."""
        if self.kernel == "torch":
            return False
        blocked = fla_blocked(u.device.index or 0) if u.is_cuda else None
        usable = u.is_cuda and fla_kernel() is not None and reset is None and blocked is None
        if self.kernel == "fla" and not usable:
            why = (
                "the input is not on CUDA"
                if not u.is_cuda
                else "the fla package does not import (pip install fla-core)"
                if fla_kernel() is None
                else "reset flags are given (the kernel has no per-step resets)"
                if reset is not None
                else blocked
            )
            raise RuntimeError(f"SelectiveSSM(kernel='fla') cannot use the kernel: {why}. Use kernel='auto'.")
        return usable

    def forward(
        self, u: Tensor, state: Tensor | None = None, reset: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """The parallel (training) mode.

        Args:
            u: ``(B, T, d_model)``.
            state: ``(B, n_heads, d_state, head_dim)`` carried in, or ``None`` for zeros.
            reset: optional ``(B, T)`` bool: True where an episode starts, so the state is zeroed
                before that step (what came before it is forgotten, not blended).

        Returns:
            ``y (B, T, d_model)`` and the state after the last step.
        """
        if u.dim() != 3 or u.shape[-1] != self.d_model:
            raise ValueError(f"SelectiveSSM: input must be (B, T, {self.d_model}), got {tuple(u.shape)}.")
        z, x, q, k, v, g = self._project(u)
        if reset is not None:
            g = g.masked_fill(self._check_reset(reset, u.shape[:2]).unsqueeze(-1), -math.inf)
        if self.use_kernel(u, reset):
            o, state = fla_kernel()(  # under bf16 autocast q and k come out of Linear in bf16, v (x * dt) in fp32
                q=q.contiguous(),
                k=k.contiguous(),
                v=v.to(k.dtype),
                g=g,
                scale=1.0,
                initial_state=state,
                output_final_state=True,
            )
        else:
            o, state = ssd_chunked(q, k, v, g, self.chunk, state)
        return self._output(o, x, z), state

    def step(
        self, u: Tensor, state: Tensor | None = None, reset: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """The recurrent (acting) mode, O(1) per step: ``u (B, d_model)`` -> ``y (B, d_model)``, new state.

        ``reset`` (optional ``(B,)`` bool) zeroes the state of the batch rows where an episode starts.
        """
        if u.dim() != 2 or u.shape[-1] != self.d_model:
            raise ValueError(f"SelectiveSSM.step: input must be (B, {self.d_model}), got {tuple(u.shape)}.")
        if state is None:
            state = self.initial_state(u.shape[0], u.device).to(u.dtype)
        z, x, q, k, v, g = self._project(u)
        if reset is not None:
            g = g.masked_fill(self._check_reset(reset, u.shape[:1]).unsqueeze(-1), -math.inf)
        o, state = ssd_step(q, k, v, g, state)
        return self._output(o, x, z), state

    @staticmethod
    def _check_reset(reset: Tensor, shape: torch.Size) -> Tensor:
        if reset.shape != shape or reset.dtype != torch.bool:
            raise ValueError(
                f"SelectiveSSM: reset must be a bool tensor of shape {tuple(shape)}, "
                f"got {reset.dtype} {tuple(reset.shape)}."
            )
        return reset
