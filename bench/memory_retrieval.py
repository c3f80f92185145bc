"""Retrieval cost vs store size: ``RetrievalStore.read`` (torch brute force: ``bmm`` + ``topk``) and ``write``.

For every (envs, entries per env) pair, a full store of random keys (``d=128``) is read with one
query per env for the top ``k=10`` (one call serves every env, as acting does), and written once
per env (a full store: every write looks for its eviction victim). Also timed: the bare
``bmm`` + ``topk`` the read is built on, to show what masking and gathering add. Every figure is the
median over timed calls after a warm-up call. Results go to ``bench/results/memory_retrieval.json``.

    python bench/memory_retrieval.py                  # CPU, 1 thread (about 2 minutes on 2 cores)
    python bench/memory_retrieval.py --quick          # a smoke run
    python bench/memory_retrieval.py --device cuda --dtype float16 --sizes 1000 10000 100000 --envs 8 64

Stores are allocated whole (``capacity`` entries per env); a pair whose store would pass
``--max-gib`` is skipped and listed as such, so the script never swaps a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from devlearn.model.memory.retrieval import RetrievalStore


def timed(
    fn: Callable[[], object], device: torch.device, budget_s: float, max_calls: int
) -> tuple[float, int]:
    """Median seconds per call of ``fn`` over up to ``max_calls`` calls or ``budget_s`` seconds (at least 5)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()  # warm-up: allocations, kernel selection
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_calls and (len(times) < 5 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def full_store(envs: int, size: int, d: int, device: torch.device, dtype: torch.dtype) -> RetrievalStore:
    """A store with every slot filled: random unit keys, random values, distinct steps and surprises."""
    store = RetrievalStore(envs, size, d, d, device=device, dtype=dtype)
    gen = torch.Generator(device=device).manual_seed(0)
    for e in range(envs):  # row by row, so filling never needs a second full-size temporary
        store.keys[e] = torch.nn.functional.normalize(
            torch.randn(size, d, generator=gen, device=device), dim=-1
        ).to(dtype)
        store.values[e] = torch.randn(size, d, generator=gen, device=device).to(dtype)
        store.surprise[e] = torch.rand(size, generator=gen, device=device).to(dtype)
    store.steps[:] = torch.arange(size, device=device)
    store.items[:] = torch.arange(size, device=device)
    store.filled[:] = True
    return store


def measure(
    envs: int, size: int, d: int, k: int, device: torch.device, dtype: torch.dtype, budget: float
) -> dict[str, float | int]:
    """Time ``read``, the bare ``bmm`` + ``topk`` and ``write`` on one full store."""
    store = full_store(envs, size, d, device, dtype)
    query = torch.randn(envs, d, device=device, dtype=dtype)
    read_s, read_n = timed(lambda: store.read(query, k), device, budget, 1000)
    bare_s, _ = timed(
        lambda: torch.bmm(query.unsqueeze(1), store.keys.transpose(1, 2)).topk(k, dim=-1),
        device,
        budget,
        1000,
    )
    key = torch.randn(envs, d, device=device, dtype=dtype)
    item = torch.zeros(envs, dtype=torch.long, device=device)
    step = torch.full((envs,), size, device=device)
    surprise = torch.full((envs,), 2.0, device=device, dtype=dtype)  # above every stored one: always evicts
    write_s, _ = timed(lambda: store.write(key, key, item, step, surprise), device, budget, 1000)
    return {
        "envs": envs,
        "entries": size,
        "store_bytes": store.nbytes,
        "read_ms": read_s * 1e3,
        "read_us_per_env": read_s * 1e6 / envs,
        "read_calls": read_n,
        "bmm_topk_ms": bare_s * 1e3,
        "write_ms": write_s * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--envs", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timed calls per figure")
    parser.add_argument("--max-gib", type=float, default=2.0, help="skip stores larger than this")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, short budgets: checks the script runs"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    sizes = [1_000, 10_000] if args.quick else args.sizes
    budget = 0.2 if args.quick else args.budget
    out = args.out or Path(__file__).parent / "results" / f"memory_retrieval-{device.type}.json"

    load_before = os.getloadavg()  # the machine is shared: how busy it was belongs with the figures
    rows, skipped = [], []
    print(
        f"{'envs':>5}{'entries':>9}{'store MiB':>11}{'read ms':>10}{'us/env':>9}{'bmm+topk ms':>13}{'write ms':>10}"
    )
    for envs in args.envs:
        for size in sizes:
            elem = torch.empty(0, dtype=dtype).element_size()
            gib = envs * size * (2 * args.dim * elem + elem + 8 + 8 + 1) / 2**30
            if gib > args.max_gib:
                skipped.append(
                    {"envs": envs, "entries": size, "gib": gib, "why": f"store > --max-gib {args.max_gib}"}
                )
                print(
                    f"{envs:>5}{size:>9}  skipped: the store would take {gib:.1f} GiB (> --max-gib {args.max_gib})"
                )
                continue
            row = measure(envs, size, args.dim, args.k, device, dtype, budget)
            rows.append(row)
            print(
                f"{envs:>5}{size:>9}{row['store_bytes'] / 2**20:>11.0f}{row['read_ms']:>10.3f}"
                f"{row['read_us_per_env']:>9.1f}{row['bmm_topk_ms']:>13.3f}{row['write_ms']:>10.3f}"
            )

    result = {
        "benchmark": "memory_retrieval",
        "quick": args.quick,
        "statistic": "median",
        "settings": {
            "dim": args.dim,
            "k": args.k,
            "queries_per_env": 1,
            "device": str(device),
            "dtype": args.dtype,
            "threads": args.threads,
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "load_average_1min_before_after": [load_before[0], os.getloadavg()[0]],
        },
        "versions": {"torch": torch.__version__},
        "rows": rows,
        "skipped": skipped,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
