"""Training env-steps/s of the default config: developmental vs ablation vs SB3 PPO, measured in the same run.

Baseline: SB3 PPO (``agent=ppo``) on the same env with the same number of envs, device and machine.
Each agent trains ``--repeats`` times (seeds 0, 1, ...), round-robin over the agents so a drift in the
machine's speed hits them alike, one run at a time; a run is ``devlearn train env=E agent=A
env.num_envs=N agent.total_timesteps=STEPS device=D``, everything else at its default. The figure is
``env_steps_per_second`` from the run's ``results.json``: env steps over the training loop's wall time
(rollouts, updates and checkpoints; evaluation excluded). Each agent's figure is the median over repeats.

With ``--device cuda`` it also samples the GPU every 0.5 s while each run trains (pynvml if importable,
else ``nvidia-smi -lms 500``) and reports mean and median utilization and peak memory used.
Results go to ``bench/results/train_throughput-<device>.json``.

    python bench/train_throughput.py                     # CliffEdge, 8 envs, 3 repeats, device auto
    python bench/train_throughput.py --device cuda       # on a GPU machine
    python bench/train_throughput.py --quick --agents ppo   # a smoke run (writes to a temporary folder)

Before/after a code change in one run: ``--python base=/path/to/other/venv/bin/python`` names another
interpreter (another checkout's install), and an agent written ``NAME@base`` runs under it, interleaved
with the others: ``--agents developmental@base developmental ppo``.

Variants of one agent in one run: overrides of its own follow the name, each after a ``:``, and
``--baseline`` names the entry the ratios are taken against (issue 11's target, memory against none):

    OMP_NUM_THREADS=1 python bench/train_throughput.py --env recall --steps 16384 --override env.kwargs.delay=20 \
        --agents developmental:memory=none developmental:memory=hybrid --baseline developmental:memory=none
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from train_runs import RunOutcome, machine_facts, run_train, spread, train_command, versions

RESULTS = Path(__file__).parent / "results"
AGENTS = ["developmental", "ablation", "ppo"]
BASELINE = "ppo"
Sample = tuple[float, float, float]  # (time.time(), GPU utilization %, memory used MiB)


def parse_nvidia_smi(lines: list[str]) -> list[Sample]:
    """Samples from ``nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits``."""
    samples = []
    for line in lines:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            continue
        try:
            stamp = datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            samples.append((stamp, float(parts[1]), float(parts[2])))
        except ValueError:
            continue  # "[N/A]" or a partly written last line
    return samples


class GpuSampler:
    """Samples one GPU's utilization and memory used every ``interval`` seconds, in the background."""

    def __init__(self, interval: float = 0.5):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
        self.index = int(visible) if visible.isdigit() else 0
        self.interval = interval
        self.samples: list[Sample] = []
        self.source = "none"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._log: Path | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self.source = "pynvml"
        except Exception:  # not installed, or no driver: fall back to nvidia-smi
            self._nvml = None
            if shutil.which("nvidia-smi"):
                self.source = "nvidia-smi"

    def start(self) -> None:
        self.samples, self._stop = [], threading.Event()
        if self.source == "pynvml":
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        elif self.source == "nvidia-smi":
            fd, name = tempfile.mkstemp(prefix="devlearn-gpu-", suffix=".csv")
            self._log = Path(name)
            self._proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    "-i",
                    str(self.index),
                    "--query-gpu=timestamp,utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    "-lms",
                    str(int(self.interval * 1000)),
                ],
                stdout=fd,
                stderr=subprocess.DEVNULL,
            )
            os.close(fd)

    def _poll(self) -> None:
        assert self._nvml is not None
        while not self._stop.is_set():
            util = self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu
            used = self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20
            self.samples.append((time.time(), float(util), float(used)))
            self._stop.wait(self.interval)

    def stop(self) -> list[Sample]:
        """Stop sampling; the samples taken since ``start``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._proc is not None and self._log is not None:
            self._proc.send_signal(
                signal.SIGINT
            )  # nvidia-smi ends its loop on Ctrl-C, flushing what it wrote
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self.samples = parse_nvidia_smi(self._log.read_text().splitlines())
            self._log.unlink(missing_ok=True)
            self._proc = None
        return self.samples


def gpu_figures(samples: list[Sample], start: float | None, seconds: float | None) -> dict[str, Any]:
    """Utilization (mean, median) and memory (peak, and before the run) over the training window.

    The window is ``[start, start + seconds]``: from the run's "devlearn: training" line for its
    ``train_seconds``. Falls back to every sample when the window holds none (a very short run).
    """
    if not samples:
        return {"samples": 0}
    window = samples
    if start is not None and seconds is not None:
        window = [s for s in samples if start <= s[0] <= start + seconds] or samples
    utils = [s[1] for s in window]
    return {
        "samples": len(window),
        "util_mean": statistics.fmean(utils),
        "util_median": statistics.median(utils),
        "memory_peak_mib": max(s[2] for s in window),
        "memory_before_mib": samples[0][2],
    }


def summarize(
    outcomes: dict[str, list[RunOutcome]], gpu: dict[str, dict[str, Any]], baseline: str = BASELINE
) -> dict[str, Any]:
    """Per agent: steps/s over repeats (median, min, max), ratio of medians against ``baseline``, GPU figures.

    ``gpu`` maps a run's name to its ``gpu_figures``. The ratio is stored as ``x_ppo`` (its name from when the
    baseline was always SB3 PPO) and as ``x_baseline``.
    """
    summary: dict[str, Any] = {}
    for agent, runs in outcomes.items():
        rates = [o.results["env_steps_per_second"] for o in runs if o.ok and o.results is not None]
        row: dict[str, Any] = {"steps_per_s": spread(rates), "failed": sum(not o.ok for o in runs)}
        sampled = [gpu[o.name] for o in runs if gpu.get(o.name, {}).get("samples")]
        if sampled:
            row["gpu"] = {
                "util_mean": statistics.median(g["util_mean"] for g in sampled),
                "util_median": statistics.median(g["util_median"] for g in sampled),
                "memory_peak_mib": max(g["memory_peak_mib"] for g in sampled),
                "memory_before_mib": min(g["memory_before_mib"] for g in sampled),
            }
        summary[agent] = row
    base = summary.get(baseline, {}).get("steps_per_s", {}).get("median")
    for row in summary.values():
        median = row["steps_per_s"]["median"]
        row["x_ppo"] = row["x_baseline"] = median / base if base and median is not None else None
    return summary


def print_table(summary: dict[str, Any], with_gpu: bool, baseline: str = BASELINE) -> None:
    """Steps/s per agent with its ratio against the baseline (and the GPU columns when sampled)."""
    width = max(15, *(len(agent) + 2 for agent in summary))
    label = "x SB3 PPO" if baseline == BASELINE else "x baseline"
    head = f"\n{'agent':<{width}}{'steps/s (median)':>18}{'min-max':>20}{label:>11}"
    if with_gpu:
        head += f"{'GPU util mean':>15}{'median':>8}{'peak MiB':>10}"
    print(head)
    for agent, row in summary.items():
        s = row["steps_per_s"]
        if not s["n"]:
            print(f"{agent:<{width}}{'failed':>18}")
            continue
        ratio = f"{row['x_ppo']:.2f}" if row["x_ppo"] is not None else "-"
        low_high = f"{s['min']:,.0f}-{s['max']:,.0f}"
        line = f"{agent:<{width}}{s['median']:>18,.0f}{low_high:>20}{ratio:>11}"
        if with_gpu and "gpu" in row:
            g = row["gpu"]
            line += f"{g['util_mean']:>14.0f}%{g['util_median']:>7.0f}%{g['memory_peak_mib']:>10,.0f}"
        print(line)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` if torch sees a GPU, else ``cpu`` (as ``devlearn train`` does); others unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_line(
    head: str, outcome: RunOutcome, sampler: GpuSampler | None, gpu: dict[str, dict[str, Any]]
) -> str:
    """The progress line of one finished run; with a sampler, also stores its GPU figures in ``gpu``."""
    assert outcome.results is not None
    line = f"{head} {outcome.results['env_steps_per_second']:,.0f} env steps/s on {outcome.results['device']}"
    if sampler is not None:
        figures = gpu_figures(sampler.stop(), outcome.train_started_at, outcome.results["train_seconds"])
        gpu[outcome.name] = figures
        if figures["samples"]:
            line += f", GPU {figures['util_mean']:.0f}% mean, {figures['memory_peak_mib']:,.0f} MiB peak"
    return line


def build_result(
    args: argparse.Namespace,
    outcomes: dict[str, list[RunOutcome]],
    gpu: dict[str, dict[str, Any]],
    device: str,
    steps: int,
    repeats: int,
    sampler_source: str | None,
    complete: bool,
) -> dict[str, Any]:
    """The results file: settings, machine, every run and the per-agent summary.

    Written after every run with ``complete: false``, so a killed benchmark leaves what it had.
    """
    return {
        "benchmark": "train_throughput",
        "complete": complete,
        "quick": args.quick,
        "env": args.env,
        "num_envs": args.num_envs,
        "steps": steps,
        "repeats": repeats,
        "device": device,
        "overrides": args.override,
        "pythons": dict(item.split("=", 1) for item in args.python),
        "threads": args.threads or "default",
        "statistic": "median over repeats (steps/s); GPU: median over repeats of each run's mean/median, max of peaks",
        "baseline": args.baseline,
        "gpu_sampler": sampler_source,
        "machine": machine_facts(device),
        "versions": versions(),
        "runs": [
            {
                "agent": agent,
                "seed": i,
                "ok": o.ok,
                "env_steps": o.results["env_steps"] if o.results else None,
                "train_seconds": o.results["train_seconds"] if o.results else None,
                "env_steps_per_second": o.results["env_steps_per_second"] if o.results else None,
                **({"gpu": gpu[o.name]} if o.name in gpu else {}),
                **({} if o.ok else {"returncode": o.returncode, "stderr_tail": o.stderr_tail}),
            }
            for agent, runs in outcomes.items()
            for i, o in enumerate(runs)
        ],
        "summary": summarize(outcomes, gpu, args.baseline),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="cliff", help="env config name (configs/env)")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50_000, help="env steps per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--agents",
        nargs="+",
        default=AGENTS,
        help="agent config names, each optionally NAME@LABEL (--python) and :OVERRIDE ... of its own",
    )
    parser.add_argument("--baseline", default=BASELINE, help="the --agents entry the ratios are taken against")
    parser.add_argument("--device", default="auto", help="passed to devlearn train: auto, cpu or cuda")
    parser.add_argument(
        "--threads", type=int, default=0, help="cap torch/OpenMP threads per run (0: default)"
    )
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every run")
    parser.add_argument(
        "--python",
        nargs="*",
        default=[],
        metavar="LABEL=PATH",
        help="other interpreters; an agent NAME@LABEL runs under PATH (e.g. a checkout of the code before a change)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny runs that check the script works; writes to a temp folder"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="default: bench/results/train_throughput-<device>.json"
    )
    args = parser.parse_args()
    steps = 2_048 if args.quick else args.steps
    repeats = 2 if args.quick else args.repeats

    device = resolve_device(args.device)
    out = (
        args.out
        or (Path(tempfile.mkdtemp(prefix="devlearn-train-throughput-quick-")) if args.quick else RESULTS)
        / f"train_throughput-{device}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="devlearn-train-throughput-"))
    sampler = GpuSampler() if device == "cuda" else None
    source = sampler.source if sampler is not None else None
    if sampler is not None:
        print(f"GPU sampling: {sampler.source} (GPU {sampler.index})")
    overrides = [f"env.num_envs={args.num_envs}", *args.override]
    outcomes: dict[str, list[RunOutcome]] = {agent: [] for agent in args.agents}
    gpu: dict[str, dict[str, Any]] = {}  # run name -> GPU figures
    pythons = dict(item.split("=", 1) for item in args.python)
    for repeat in range(repeats):
        for agent in args.agents:
            name = f"{agent}-{repeat}"
            run_dir = work / re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
            config, *own = agent.split(":")
            config, _, label = config.partition("@")
            command = train_command(args.env, config, repeat, steps, run_dir, device, 1, [*overrides, *own])
            if label:
                command[0] = pythons[label]
            if sampler is not None:
                sampler.start()
            outcome = run_train(name, command, run_dir, args.threads)
            outcomes[agent].append(outcome)
            head = f"[{repeat + 1}/{repeats}] {agent}:"
            if not outcome.ok or outcome.results is None:
                if sampler is not None:
                    sampler.stop()
                print(f"{head} FAILED (exit {outcome.returncode}); stderr tail:")
                print("    " + outcome.stderr_tail.replace("\n", "\n    "), flush=True)
            else:
                print(run_line(head, outcome, sampler, gpu), flush=True)
            partial = build_result(args, outcomes, gpu, device, steps, repeats, source, complete=False)
            out.write_text(json.dumps(partial, indent=2))

    result = build_result(args, outcomes, gpu, device, steps, repeats, source, complete=True)
    print_table(result["summary"], sampler is not None, args.baseline)
    if args.baseline not in result["summary"]:
        print(f"(no ratios: the baseline, {args.baseline}, was not measured)")
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    if all(o.ok for runs in outcomes.values() for o in runs):
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"logs of the failed runs: {work}/<run>/bench-stderr.log")


if __name__ == "__main__":
    main()
