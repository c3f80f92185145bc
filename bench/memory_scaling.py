"""Acting step time and peak memory against episode length: each memory variant, and a full-context transformer.

For each memory variant (``memory.variant``), the developmental agent's evaluation-time acting path
(``policy = agent.policy(deterministic=True)``, then ``policy(obs, episode_start)`` and ``env.step``) plays
one episode of ``--length`` steps of ``devlearn/Recall-v0`` in ``--envs`` sub-envs, with ``delay = length``
so the question never comes (Recall generates its distractors lazily: the env's memory is O(1) at any
length). The agent is untrained (seed 0); its step time does not depend on what the weights are.

* Step time: the policy call alone (``env.step`` excluded; ``torch.cuda.synchronize`` on CUDA), the median
  over the ``--timed-steps`` steps from each checkpoint (100; 1,000; 10,000; 100,000; a window that would pass
  the episode's end ends at its last step). The ratio is last checkpoint / first (100,000 / 100).
* Memory: peak growth while acting over the whole episode, from before the agent is built: the process's
  RSS on CPU (Linux VmHWM, reset through ``/proc/self/clear_refs``), ``torch.cuda.max_memory_allocated``
  on CUDA; growth between the first and the last checkpoint (RSS or allocated memory now); and the bytes of
  the memory state (``MemoryState.nbytes``: SSM state and retrieval store, fixed by ``memory.capacity``).

The baseline is a windowless transformer (``CausalTransformer`` with the agent core's ``d_model``,
``n_layers`` and ``n_heads``, ``max_len = 2 * length``): at step ``t`` it must run one forward over all
``2t`` tokens of the episode (no KV cache), here random token embeddings in a batch of ``--envs``. It is
timed at each checkpoint (``--reps`` forwards, median) until one forward takes longer than
``--budget-seconds`` ("out of time") or fails to allocate ("out of memory"). No encoder, no heads: a lower
bound on a full-context agent's step.

Target (issue 11): hybrid's step time at 100,000 steps within 1.5x of its step time at 100 steps.
Results go to ``bench/results/memory_scaling-<tag>.json`` (tag: the device, unless ``--tag``).

    OMP_NUM_THREADS=1 python bench/memory_scaling.py --tag cpu           # 100,000 steps per variant, 8 envs
    python bench/memory_scaling.py --device cuda --tag h100                # the GPU
    python bench/memory_scaling.py --device cuda --variants hybrid --no-baseline --tag h100-hybrid
    OMP_NUM_THREADS=1 python bench/memory_scaling.py --quick               # a smoke run: 2,000 steps, 1 env

On 1 thread of a 2-core CPU a variant's 100,000 steps take several minutes (8 envs: about 5 ms a step,
env included). ``--variants`` and ``--no-baseline`` split a run into pieces that fit a time limit.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from train_runs import machine_facts, versions

from devlearn.agents import make_agent
from devlearn.config import DevelopmentalConfig
from devlearn.envs.vector.make import make_vector_env
from devlearn.model.core import CausalTransformer
from devlearn.model.memory import VARIANTS

RESULTS = Path(__file__).parent / "results"
ENV_ID = "devlearn/Recall-v0"
MIB = 2**20


class Probe:
    """Memory in use and its peak: the process's RSS on CPU, the CUDA caching allocator's on CUDA (bytes)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def start(self) -> int:
        """Begin a new peak; returns the memory in use now."""
        gc.collect()
        self.sync()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        else:
            try:  # hand freed heap back to the OS, so reusing it shows in the RSS peak
                ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
            except (OSError, AttributeError, TypeError):
                pass
            try:
                Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)
            except OSError:
                pass  # the peak then also covers what ran before
        return self.now()

    def now(self) -> int:
        return torch.cuda.memory_allocated() if self.cuda else self._status("VmRSS")

    def peak(self) -> int:
        self.sync()
        return torch.cuda.max_memory_allocated() if self.cuda else self._status("VmHWM")

    @staticmethod
    def _status(key: str) -> int:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # no /proc: the peak, never reset
        return maxrss if sys.platform == "darwin" else maxrss * 1024


def act(
    variant: str, args: argparse.Namespace, device: torch.device, probe: Probe, quiet: bool = False
) -> dict[str, Any]:
    """One ``--length``-step episode of the acting path with memory ``variant``: step times and memory."""
    cfg = OmegaConf.structured(DevelopmentalConfig())
    cfg.memory.variant = variant
    env = make_vector_env(ENV_ID, args.envs, delay=args.length)
    base = probe.start()
    agent = make_agent(cfg, env, seed=0, device=str(device), writer=None)
    policy = agent.policy(deterministic=True)
    firsts = {c: min(c, args.length - args.timed_steps) for c in args.checkpoints}  # the last ends at the end
    spans = {c: (first, first + args.timed_steps) for c, first in firsts.items()}
    times: dict[int, list[float]] = {c: [] for c in spans}
    points: dict[str, dict[str, float]] = {}
    obs, _ = env.reset(seed=0)
    start = np.ones(args.envs, dtype=bool)
    began = time.perf_counter()
    for step in range(args.length):
        probe.sync()
        t0 = time.perf_counter()
        actions = policy(obs, start)
        probe.sync()
        dt = time.perf_counter() - t0
        obs, _, terminated, truncated, _ = env.step(actions)
        if (terminated | truncated).any():
            raise RuntimeError(f"an episode ended at step {step}: Recall's delay should be the length")
        start[:] = False
        for c, (first, last) in spans.items():
            if first <= step < last:
                times[c].append(dt)
            if step == last - 1:
                context = policy.context
                points[str(c)] = {
                    "ms": 1e3 * statistics.median(times[c]),
                    "mean_ms": 1e3 * statistics.fmean(times[c]),
                    "mib_now": probe.now() / MIB,
                    "memory_state_bytes": 0 if context.memory is None else context.memory_state.nbytes,
                }
                if not quiet:
                    print(
                        f"  {variant:<9} t={c:>7,}: {points[str(c)]['ms']:8.3f} ms/step "
                        f"({time.perf_counter() - began:.0f} s)",
                        flush=True,
                    )
    first, last = points[str(args.checkpoints[0])], points[str(args.checkpoints[-1])]
    out = {
        "points": points,
        "ratio": last["ms"] / first["ms"],
        "peak_mib": (probe.peak() - base) / MIB,
        "growth_mib": last["mib_now"] - first["mib_now"],
        "memory_state_bytes": last["memory_state_bytes"],
        "wall_seconds": time.perf_counter() - began,
    }
    env.close()
    del agent, policy, env
    return out


def full_context(args: argparse.Namespace, device: torch.device, probe: Probe) -> dict[str, Any]:
    """A windowless causal transformer over all 2t tokens at each checkpoint t, until out of time or memory."""
    core = DevelopmentalConfig().core
    torch.manual_seed(0)
    model = CausalTransformer(core.d_model, core.n_layers, core.n_heads, max_len=2 * args.length)
    model = model.to(device).eval()
    out: dict[str, Any] = {"points": {}, "stopped": None}
    with torch.inference_mode():
        model(torch.randn(1, 2, core.d_model, device=device))  # warm-up: kernels, allocator
        for t in args.checkpoints:
            try:
                base = probe.start()
                x = torch.randn(args.envs, 2 * t, core.d_model, device=device)  # the episode's 2t tokens
                times: list[float] = []
                while len(times) < args.reps and not (times and times[-1] > args.budget_seconds):
                    probe.sync()
                    t0 = time.perf_counter()
                    model(x)
                    probe.sync()
                    times.append(time.perf_counter() - t0)
                out["points"][str(t)] = {
                    "ms": 1e3 * statistics.median(times),
                    "reps": len(times),
                    "peak_mib": (probe.peak() - base) / MIB,
                }
                del x
            except (RuntimeError, MemoryError) as error:  # torch.cuda.OutOfMemoryError is a RuntimeError
                message = str(error).splitlines()[0] if str(error) else type(error).__name__
                if not isinstance(error, MemoryError) and not any(
                    s in message.lower() for s in ("out of memory", "can't allocate")
                ):
                    raise
                out["stopped"] = {"reason": "out of memory", "t": t, "error": message}
                break
            print(f"  full-ctx  t={t:>7,}: {out['points'][str(t)]['ms']:8.1f} ms/step", flush=True)
            if times[-1] > args.budget_seconds:
                out["stopped"] = {"reason": "out of time", "t": t, "seconds": times[-1]}
                break
    del model
    return out


def table(
    rows: dict[str, dict[str, Any]], baseline: dict[str, Any] | None, checkpoints: list[int], unit: str
) -> str:
    head = f"{'step ms at t =':<14}" + "".join(f"{c:>10,}" for c in checkpoints)
    lines = [head + f"{'ratio':>8}{'peak ' + unit:>16}{'growth MiB':>12}{'memory KiB':>12}"]
    for name, r in rows.items():
        cells = "".join(f"{r['points'][str(c)]['ms']:>10.3f}" for c in checkpoints)
        lines.append(
            f"{name:<14}{cells}{r['ratio']:>8.2f}{r['peak_mib']:>16.1f}{r['growth_mib']:>12.1f}"
            f"{r['memory_state_bytes'] / 1024:>12.1f}"
        )
    if baseline is None:
        return "\n".join(lines)
    cells, stop = "", baseline["stopped"]
    for c in checkpoints:
        point = baseline["points"].get(str(c))
        cells += f"{point['ms']:>10.1f}" if point else f"{'-':>10}"
    peak = max((p["peak_mib"] for p in baseline["points"].values()), default=float("nan"))
    note = f"   {stop['reason']} at t={stop['t']:,}" if stop else ""
    lines.append(f"{'full-context':<14}{cells}{'':>8}{peak:>16.1f}{'':>24}{note}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=["window", "ssm", "retrieval", "hybrid"]
    )
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--length", type=int, default=100_000, help="steps of the one episode (Recall's delay)"
    )
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[100, 1_000, 10_000, 100_000])
    parser.add_argument("--timed-steps", type=int, default=200, help="steps timed from each checkpoint")
    parser.add_argument("--reps", type=int, default=3, help="full-context forwards per checkpoint")
    parser.add_argument("--budget-seconds", type=float, default=5.0, help="one full-context forward's limit")
    parser.add_argument("--no-baseline", action="store_true", help="skip the full-context transformer")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--tag", default=None, help="results file suffix (default: the device)")
    parser.add_argument("--quick", action="store_true", help="2,000 steps, checkpoints 100 and 1,000, 1 env")
    args = parser.parse_args()
    if args.quick:
        args.length, args.checkpoints, args.envs = 2_000, [100, 1_000], 1
    args.checkpoints = sorted(c for c in set(args.checkpoints) if c <= args.length)
    if not args.checkpoints or args.timed_steps > args.length:
        parser.error("need --timed-steps <= --length and at least one checkpoint <= --length")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    probe = Probe(device)
    print(
        f"devlearn memory_scaling: {ENV_ID}, {args.envs} envs, {args.length:,} steps, {device}, "
        f"{torch.get_num_threads()} threads",
        flush=True,
    )

    # warm-up: one-time costs (lazy imports and inits, the allocator's first pages) stay out of the first variant's peak
    act(
        args.variants[-1],
        argparse.Namespace(**{**vars(args), "length": 50, "timed_steps": 50, "checkpoints": [0]}),
        device,
        probe,
        quiet=True,
    )
    rows: dict[str, dict[str, Any]] = {}
    for variant in args.variants:
        rows[variant] = act(variant, args, device, probe)
    baseline = None if args.no_baseline else full_context(args, device, probe)

    unit = "MiB (CUDA)" if device.type == "cuda" else "MiB (RSS)"
    print("\n" + table(rows, baseline, args.checkpoints, unit))
    print("(ratio: last checkpoint / first; peak: while acting the whole episode, full-context: its largest")
    print(
        " forward; growth: from the first checkpoint to the last; memory: the SSM state and store, per run)"
    )
    target: dict[str, Any] = {"ratio_max": 1.5, "from": args.checkpoints[0], "to": args.checkpoints[-1]}
    if "hybrid" in rows:
        target |= {"hybrid_ratio": rows["hybrid"]["ratio"], "met": rows["hybrid"]["ratio"] <= 1.5}
        print(
            f"\ntarget: hybrid step time at t={args.checkpoints[-1]:,} <= 1.5x its time at "
            f"t={args.checkpoints[0]:,}: ratio {rows['hybrid']['ratio']:.2f} -> "
            f"{'met' if target['met'] else 'NOT met'}"
        )

    tag = args.tag or (f"{device.type}-quick" if args.quick else device.type)
    path = RESULTS / f"memory_scaling-{tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "tag"} | {
        "env": ENV_ID,
        "threads": torch.get_num_threads(),
    }
    record = {
        "machine": machine_facts(args.device),
        "versions": versions(),
        "settings": settings,
        "variants": rows,
        "full_context": baseline,
        "target": target,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
