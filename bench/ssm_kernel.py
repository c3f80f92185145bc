"""The SSM's CUDA kernel against its pure-torch reference: error and speed (needs CUDA and ``fla-core``).

For each shape, one ``SelectiveSSM`` runs three ways on the same inputs and initial state:
``torch`` in fp64 (the truth), ``torch`` in fp32 (the reference path) and ``fla``
(``chunk_simple_gla``) in fp32 and in bf16. Reported: the largest absolute error of the output,
the final state and the input gradient against fp64, each relative to that tensor's largest
magnitude, and the median time of a forward + backward. This is what the tolerance of
``tests/model/test_ssm.py::test_fla_kernel_matches_the_torch_reference_on_cuda`` rests on.

    python bench/ssm_kernel.py --out bench/results/ssm_kernel-cuda.json

On a Hopper GPU with Triton >= 3.4.0 and < 3.7.1, fla-core refuses its gated backward (fla #640: a Triton
code-generation bug corrupts ``dk`` when the kernel's key block is 64 wide), and ``kernel=auto`` keeps the torch
path there. ``--despite-fla-640`` lifts both refusals for this benchmark only, so that the error columns measure
what the bug does at each shape (d_state 64 takes the 64-wide block; the agent's d_state 16 a 16-wide one).
The results file records that the refusals were lifted.

The fp64 run is the truth up to ``--fp64-max-tokens`` tokens (batch x T); above it, the fp64 scan costs more
than the rest of the row, so errors there are against the fp32 torch path and the row says so
(``"reference": "torch_fp32"``). The results file is rewritten after every row, so a run cut short keeps
the rows it finished. ``--shapes`` picks rows by index into ``SHAPES``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from devlearn.model.memory.ssm import SelectiveSSM, fla_kernel

SHAPES = [  # (batch, T, d_model, n_heads, d_state)
    # training tokens/s against sequence length, 1k to 64k at batch 1 (issue 11): the agent's own size
    # (core.d_model 64, memory.n_heads 4, memory.d_state 16; a 16-wide key block) and a wider layer (64-wide)
    (1, 1024, 64, 4, 16),
    (1, 4096, 64, 4, 16),
    (1, 16384, 64, 4, 16),
    (1, 65536, 64, 4, 16),
    (1, 1024, 256, 8, 64),
    (1, 4096, 256, 8, 64),
    (1, 16384, 256, 8, 64),
    (1, 65536, 256, 8, 64),
    # batched
    (8, 256, 256, 8, 64),
    (8, 4096, 256, 8, 64),
    (64, 1024, 64, 4, 16),
]


def run(layer: SelectiveSSM, u: torch.Tensor, state: torch.Tensor, kernel: str, dtype: torch.dtype):
    """Output, final state and input gradient (of a fixed random projection of the output) in ``dtype``."""
    layer.kernel = kernel
    u = u.to(dtype).detach().requires_grad_(True)
    with torch.autocast("cuda", dtype=dtype, enabled=dtype == torch.bfloat16):
        y, s = layer(u, state.to(torch.float32 if dtype == torch.bfloat16 else dtype))
    weight = torch.linspace(-1, 1, y.numel(), device=y.device, dtype=torch.float64).view_as(y)
    (y.double() * weight).sum().backward()
    return y.double().detach(), s.double().detach(), u.grad.double()


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x - ref).abs().max() / ref.abs().max())


def time_it(
    layer: SelectiveSSM, u: torch.Tensor, state: torch.Tensor, kernel: str, dtype: torch.dtype
) -> float:
    layer.kernel = kernel

    def once() -> None:
        x = u.to(dtype).detach().requires_grad_(True)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype == torch.bfloat16):
            y, _ = layer(x, state)
        y.float().sum().backward()

    for _ in range(3):  # warm-up: Triton autotuning and compilation
        once()
    torch.cuda.synchronize()
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        once()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "ssm_kernel-cuda.json"
    )
    parser.add_argument(
        "--despite-fla-640",
        action="store_true",
        help="lift fla's and devlearn's refusal of the gated backward on Hopper with Triton 3.4-3.7.0 (see above)",
    )
    parser.add_argument(
        "--fp64-max-tokens",
        type=int,
        default=16384,
        help="above this many tokens per shape, errors are measured against the fp32 torch path (default: 16384)",
    )
    parser.add_argument(
        "--shapes",
        type=int,
        nargs="+",
        choices=range(len(SHAPES)),
        metavar="I",
        help=f"indices into SHAPES, 0 to {len(SHAPES) - 1} (default: all)",
    )
    args = parser.parse_args()
    shapes = SHAPES if args.shapes is None else [SHAPES[i] for i in args.shapes]
    if not torch.cuda.is_available() or fla_kernel() is None:
        raise SystemExit("ssm_kernel: needs CUDA and the fla package (pip install fla-core).")
    lifted = None
    if args.despite_fla_640:
        import fla.ops.common.chunk_o as chunk_o

        import devlearn.model.memory.ssm as ssm

        lifted = ssm.fla_blocked(torch.cuda.current_device())
        chunk_o.TRITON_ABOVE_3_7_1 = True  # the only condition of fla's raise we can change from here
        ssm.fla_blocked = lambda device_index: None
    rows = []
    result = {
        "benchmark": "ssm_kernel",
        "machine": {"gpu": torch.cuda.get_device_name(), "python": platform.python_version()},
        "versions": {"torch": torch.__version__, "fla": _fla_version(), "triton": _triton_version()},
        "refusal_lifted": lifted,  # None: nothing refused on this machine, or --despite-fla-640 not given
        "note": "errors are max |x - x_ref| / max |x_ref|, x_ref the row's reference (fp64 torch unless the row "
        "says otherwise); the fp32 torch path runs with TF32 off (torch's default)",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for b, t, d, h, n in shapes:
        torch.manual_seed(0)
        layer = SelectiveSSM(d, n_heads=h, d_state=n, kernel="torch").cuda()
        with torch.no_grad():
            layer.dt_bias.add_(1.0)  # larger steps than at init, so decays are far from 1 and matter
        u = torch.randn(b, t, d, device="cuda")
        state = torch.randn(b, h, n, layer.head_dim, device="cuda") * 0.1
        row = {"batch": b, "T": t, "d_model": d, "n_heads": h, "d_state": n, "head_dim": layer.head_dim}
        if b * t <= args.fp64_max_tokens:
            truth = run(layer.double(), u.double(), state.double(), "torch", torch.float64)
            layer.float()
            row["reference"] = "torch_fp64"
        else:
            truth = run(layer, u, state, "torch", torch.float32)
            row["reference"] = "torch_fp32"
        for name, kernel, dtype in (
            ("torch_fp32", "torch", torch.float32),
            ("fla_fp32", "fla", torch.float32),
            ("fla_bf16", "fla", torch.bfloat16),
        ):
            layer.zero_grad(set_to_none=True)
            got = run(layer, u, state, kernel, dtype)
            errs = [rel_err(x, ref) for x, ref in zip(got, truth, strict=True)]
            row[name] = {
                "rel_err_y": errs[0],
                "rel_err_state": errs[1],
                "rel_err_grad_u": errs[2],
                "max_abs_err_y": float((got[0] - truth[0]).abs().max()),
                "fwd_bwd_ms": time_it(layer, u, state, kernel, dtype),
            }
            row[name]["train_tokens_per_s"] = b * t / (row[name]["fwd_bwd_ms"] / 1000)
        rows.append(row)
        print(json.dumps(row), flush=True)
        args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def _fla_version() -> str:
    from importlib.metadata import version

    return version("fla-core")


if __name__ == "__main__":
    main()
