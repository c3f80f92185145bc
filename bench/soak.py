"""Fault soak: runs that survive a cluster. Random faults of five kinds across train, eval and report; a CLI fuzz.

Kinds: SIGKILL (no warning: a lost node, the OOM killer), SIGTERM (SLURM, Kubernetes, `timeout`), SIGINT (Ctrl-C),
disk full (a tmpfs filled up at a random moment) and read-only (the folder bind-mounted read-only at a random
moment). ``--runs N`` faults of each kind, the command cycling train -> eval -> report, each at a random moment:

* train: ``devlearn train`` (``--agent``, ``--steps``, checkpoints every ``--checkpoint-every-s`` seconds) is hit
  once training is under way; the fault is then cleared (space freed, folder writable again) and the run
  continued with ``resume=true`` (the printed command where one was printed) to the end. Per fault: how it was
  answered (exit code; the one line and the resume command; no traceback), whether the checkpoint was whole,
  the work lost (steps shown at the fault minus the steps saved; seconds since the checkpoint), whether the
  resume finished, whether the counters continued (``rollout/episodes_total`` only grows, ``results.json``
  counts its last point, ``resumes`` = 1), and whether TensorBoard shows every scalar tag once per step.
* eval and report: ``devlearn eval`` (``episodes=400``) or ``devlearn report`` (2 million bootstrap resamples)
  on a copy of a finished run, hit mid-way; then run again. Per fault: the answer, the checkpoint unchanged,
  the eval/report files absent or whole, the rerun's success.
* other runs: a finished run beside the trials is fingerprinted (every file's bytes) before and after; no trial
  may change it, and no trial may write outside its own folder.

Fuzz: the bad inputs of tests/app/test_cli_fuzz.py, each as a real ``devlearn`` process: exit 2, one line with the
expected phrase, no traceback, no folder left behind.

Disk-full and read-only faults need ``mount`` (root with CAP_SYS_ADMIN); without it they are reported as not run.

    python bench/soak.py --runs 3 --fuzz                 # 15 faults and the fuzz: ~30 min on 2 shared cores
    python bench/soak.py --runs 20 --jobs 8 --fuzz       # the issue's 20 of each kind, on a 16-core machine
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tb_logging

from devlearn.app.checkpoints import check_checkpoint, checkpoint_step
from devlearn.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
# `python -m devlearn`, run outside the repo: works wherever `import devlearn` does, console script on PATH or not
DEVLEARN = [sys.executable, "-m", "devlearn"]
SMALL = ["agent.n_steps=32", "agent.batch_size=64", "env.num_envs=4", "log.eval_episodes=2", "log.video=false"]
KINDS = ("SIGKILL", "SIGTERM", "SIGINT", "disk_full", "read_only")
COMMANDS = ("train", "eval", "report")
EXPECTED_EXIT = {"SIGKILL": -9, "SIGTERM": 143, "SIGINT": 130, "disk_full": 1, "read_only": 1}


# --- faults on the filesystem -------------------------------------------------------------------------------
MOUNTED: list[Path] = []  # every mount this soak made, undone at its end whatever happened


def mount(*args: str) -> bool:
    ok = subprocess.run(["mount", *args], capture_output=True).returncode == 0
    if ok:
        MOUNTED.append(Path(args[-1]))
    return ok


def umount(folder: Path) -> None:
    if subprocess.run(["umount", "-l", str(folder)], capture_output=True).returncode == 0 and folder in MOUNTED:
        MOUNTED.remove(folder)


def start(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    """``devlearn *args`` in the background, with Ctrl-C's default disposition (a background shell job ignores
    SIGINT, and its children would too)."""
    return subprocess.Popen(
        [*DEVLEARN, *args], cwd=cwd, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs
    )


def can_mount(root: Path) -> bool:
    probe = root / "probe"
    probe.mkdir()
    ok = os.geteuid() == 0 and mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe))
    if ok:
        umount(probe)
    probe.rmdir()
    return ok


def small_disk(folder: Path, megabytes: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if not mount("-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)):
        raise RuntimeError(f"cannot mount a tmpfs on {folder}")
    return folder


def fill(disk: Path, leave: int = 0) -> None:
    """Fill ``disk`` but ``leave`` bytes: the next file of any size does not fit."""
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(free - leave, 0))


def make_read_only(folder: Path) -> None:
    if not (mount("--bind", str(folder), str(folder)) and mount("-o", "remount,bind,ro", str(folder))):
        raise RuntimeError(f"cannot make {folder} read-only")


def fault(kind: str, proc: subprocess.Popen | None, folder: Path, leave: int = 0) -> None:
    if kind in ("SIGKILL", "SIGTERM", "SIGINT"):
        proc.send_signal(getattr(signal, kind))
    elif kind == "disk_full":
        fill(folder, leave)
    else:
        make_read_only(folder)


def clear(kind: str, folder: Path) -> None:
    """Undo a filesystem fault: the space freed, the folder writable again."""
    if kind == "disk_full":
        (folder / "filler").unlink(missing_ok=True)
    elif kind == "read_only":
        umount(folder)


# --- what a fault left ----------------------------------------------------------------------------------------
def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by its bytes' hash (what "another run was not touched" compares)."""
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def whole_json(path: Path) -> bool:
    """Absent, or valid JSON: never half a file."""
    if not path.is_file():
        return True
    try:
        json.loads(path.read_text())
        return True
    except ValueError:
        return False


def answered(out: str, kind: str, rc: int, command: str) -> tuple[bool, str]:
    """Whether the process answered the fault as devlearn promises; the devlearn lines it printed."""
    said = [line for line in out.splitlines() if line.startswith("devlearn:")]
    if "Traceback" in out:
        return False, "\n".join(out.strip().splitlines()[-3:])
    if rc != EXPECTED_EXIT[kind]:
        return False, f"exit {rc}: " + " | ".join(said[-2:])
    if kind == "SIGKILL":
        return True, ""
    if command == "train" and kind in ("SIGTERM", "SIGINT"):
        how = "stopped by SIGTERM" if kind == "SIGTERM" else "interrupted"
        training = len(said) == 1 and "Continue with:" in said[-1] and "resume=true" in out
        evaluating = len(said) == 1 and "during the final evaluation" in said[-1] and "Evaluate it later with" in said[-1]
        return bool(said) and how in said[-1] and (training or evaluating), said[-1] if said else ""
    return len(said) == 1, " | ".join(said)


def tensorboard_overlaps(run_dir: Path) -> list[str]:
    """Scalar tags whose steps repeat or go back (a resumed session drawn over the killed one's points)."""
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    bad = []
    for tag in events.Tags()["scalars"]:
        steps = [e.step for e in events.Scalars(tag)]
        if steps != sorted(set(steps)):
            bad.append(tag)
    return bad


def episodes_curve(run_dir: Path) -> list[float]:
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return [e.value for e in events.Scalars("rollout/episodes_total")]


def shown_step(log: Path) -> int:
    """The last step the progress line showed."""
    found = re.findall(r"\] ([\d,]+)/", log.read_text(errors="replace"))
    return int(found[-1].replace(",", "")) if found else 0


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 600) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def run(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*DEVLEARN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


# --- the three commands under a fault -------------------------------------------------------------------------
def train_trial(kind: str, i: int, s: dict, rng: random.Random) -> dict:
    home = s["root"] / f"train-{kind}-{i}"
    home.mkdir(parents=True)
    disk = small_disk(home / "disk", 64) if kind in ("disk_full", "read_only") else home  # the logs stay off it
    run_dir = disk / "run"
    out_log, err_log = home / "stdout.txt", home / "stderr.txt"
    with open(out_log, "w") as out, open(err_log, "w") as err:
        proc = start(["train", *s["base"], f"hydra.run.dir={run_dir}"], s["root"], stdout=out, stderr=err)
        wait_for(lambda: shown_step(out_log) > 0, proc)  # training under way: its first rollout is done
        time.sleep(rng.uniform(0.0, s["window"]))  # then a random moment: mid-rollout, mid-update, mid-checkpoint
        finished_first = proc.poll() is not None
        at_fault, saved_before = shown_step(out_log), checkpoint_step(run_dir) or 0
        saved_file = run_dir / ("checkpoint.zip" if s["sb3"] else "checkpoint.pt")
        age = time.time() - saved_file.stat().st_mtime if saved_file.is_file() else None
        # a full disk with 16 KB left: TensorBoard's few bytes may fit, the next checkpoint does not
        fault(kind, proc, run_dir if kind == "read_only" else disk, leave=16_384)
        proc.wait(timeout=600)
    text = err_log.read_text(errors="replace")
    ok, said = answered(text, kind, proc.returncode, "train")
    clear(kind, run_dir if kind == "read_only" else disk)
    try:
        check_checkpoint(run_dir)
        whole = whole_json(run_dir / "results.json")
    except ConfigError:
        whole = False
    saved = checkpoint_step(run_dir) or 0
    printed = [line.strip() for line in text.splitlines() if line.strip().startswith("devlearn train ")]
    again = shlex.split(printed[-1])[2:] if printed else [*s["base"], f"hydra.run.dir={run_dir}", "resume=true"]
    resumed_out = run(["train", *again], s["root"])
    resumed = resumed_out.returncode == 0 and (run_dir / "results.json").is_file()
    results = json.loads((run_dir / "results.json").read_text()) if resumed else {}
    curve = episodes_curve(run_dir) if resumed else []
    trial = {
        "command": "train",
        "kind": kind,
        "finished_before_fault": finished_first,
        "answered": ok or finished_first,
        "said": said,
        "checkpoint_whole": whole,
        "temp_files_left": sorted(p.name for p in run_dir.glob(".*.tmp")),
        "step_shown_at_fault": at_fault,
        "saved_step": saved,
        # SIGKILL saves nothing: the loss is what ran since the last checkpoint; a stop signal saves where it stops
        "steps_lost": max(at_fault - (saved if kind != "SIGKILL" else saved_before), 0),
        "seconds_since_checkpoint_at_fault": None if age is None else round(age, 2),
        "resumed": resumed,
        "resume_tail": [] if resumed else resumed_out.stderr.strip().splitlines()[-2:],
        "counters_continuous": bool(
            resumed and curve == sorted(curve) and results["training"]["episodes"] == curve[-1]
            and results["resumes"] == 1 and results["env_steps"] >= s["steps"]
        ),  # fmt: skip
        "tensorboard_overlaps": tensorboard_overlaps(run_dir) if resumed else None,
    }
    if disk is not home:
        umount(disk)
    return trial


def evaluate_or_report_trial(command: str, kind: str, i: int, s: dict, rng: random.Random) -> dict:
    home = s["root"] / f"{command}-{kind}-{i}"
    home.mkdir(parents=True)
    disk = small_disk(home / "disk", 64) if kind in ("disk_full", "read_only") else home
    signal_kind = kind in ("SIGKILL", "SIGTERM", "SIGINT")
    if command == "eval":
        target = disk / "run"
        shutil.copytree(s["finished"], target, symlinks=True)
        args = [f"run_dir={target}", f"episodes={5000 if signal_kind else 20}"]  # 5000: still running at the fault
        rerun, files, moment = [f"run_dir={target}", "episodes=4"], ["eval-heldout.json"], (3.0, 3.0 + s["window"])
    else:
        target = disk / "sweep"
        for seed in (0, 1):
            shutil.copytree(s["finished"], target / f"run{seed}", symlinks=True)
        args = [str(target), f"--resamples={6_000_000 if signal_kind else 1000}"]  # 6 million: ~4 s of bootstrap
        rerun, files, moment = [str(target), "--resamples=1000"], ["report.json", "report.md"], (1.0, 5.0)
    before = fingerprint(target)
    out_log = home / "out.txt"
    if not signal_kind:  # these commands write once, at their end: the folder full or read-only from the start
        fault(kind, None, target if kind == "read_only" else disk)
    with open(out_log, "w") as out:
        proc = start([command, *args], home, stdout=out, stderr=subprocess.STDOUT, text=True)
        if signal_kind:
            time.sleep(rng.uniform(*moment))  # past the imports: mid-evaluation, mid-bootstrap, or mid-write
        finished_first = signal_kind and proc.poll() is not None
        if signal_kind:
            fault(kind, proc, target)
        proc.wait(timeout=900)
    text = out_log.read_text(errors="replace")
    ok, said = answered(text, kind, proc.returncode, command)
    if kind in ("disk_full", "read_only"):  # every episode or resample ran: the table is printed all the same
        ok = ok and ("argmax" in text if command == "eval" else "heldout/return" in text)
    clear(kind, target if kind == "read_only" else disk)
    after = fingerprint(target)
    changed = sorted(k for k in before if before[k] != after.get(k))
    again = run([command, *rerun], home)
    trial = {
        "command": command,
        "kind": kind,
        "finished_before_fault": finished_first,
        "answered": ok or finished_first,
        "said": said,
        "inputs_unchanged": not changed,
        "files_whole": all(whole_json(target / f) for f in files if f.endswith(".json")),
        "temp_files_left": sorted(p.name for p in target.rglob(".*.tmp*")),
        "resumed": again.returncode == 0 and all((target / f).is_file() for f in files)
        and all(whole_json(target / f) for f in files if f.endswith(".json")),
        "rerun_tail": [] if again.returncode == 0 else again.stderr.strip().splitlines()[-2:],
    }
    if disk is not home:
        umount(disk)
    return trial


# --- the CLI fuzz -----------------------------------------------------------------------------------------------
def fuzz(root: Path, jobs: int) -> dict:
    """tests/app/test_cli_fuzz.py's bad inputs, each as a real devlearn process."""
    spec = importlib.util.spec_from_file_location("cli_fuzz", REPO / "tests" / "app" / "test_cli_fuzz.py")
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    folders = cases.make_runs(root / "fuzz-runs")

    def one(case: tuple[list[str], str]) -> dict:
        argv, phrase = case
        argv, phrase = [a.format(**folders) for a in argv], phrase.format(**folders)
        cwd = Path(tempfile.mkdtemp(dir=root))
        out = run(argv, cwd, timeout=300)
        lines = out.stderr.strip().splitlines()
        if argv == ["train", "device=cuda"] and out.returncode == 0:
            return {"argv": argv, "one_line": True, "skipped": "a GPU is visible"}
        one_line = bool(
            out.returncode == 2 and len(lines) == 1 and lines[0].startswith("devlearn: error: ")
            and phrase in lines[0] and "Traceback" not in out.stderr and not list(cwd.iterdir())
        )  # fmt: skip
        return {"argv": argv, "one_line": one_line, "rc": out.returncode, "stderr": lines[-3:]}

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(one, cases.BAD_INPUTS))
    bad = [r for r in results if not r["one_line"]]
    return {
        "cases": len(results),
        "distinct": len({tuple(r["argv"]) for r in results}),
        "answered_in_one_line": len(results) - len(bad),
        "tracebacks": sum("Traceback" in " ".join(r.get("stderr", [])) for r in results),
        "accepted": sum(r.get("rc") == 0 for r in results if not r.get("skipped")),
        "not_one_line": bad,
    }


# --- main -------------------------------------------------------------------------------------------------------
def summarize(trials: list[dict], s: dict) -> dict:
    by_kind = {}
    for kind in KINDS:
        done = [t for t in trials if t["kind"] == kind and not t.get("not_run")]
        hit = [t for t in done if not t["finished_before_fault"]]
        train = [t for t in hit if t["command"] == "train"]
        by_kind[kind] = {
            "faults": len(done),
            "finished_before_fault": len(done) - len(hit),
            "by_command": {c: sum(t["command"] == c for t in done) for c in COMMANDS},
            "answered": sum(t["answered"] for t in done),
            "resumed": sum(t["resumed"] for t in done),
            "corrupt_files": sum(
                not t.get("checkpoint_whole", True) or not t.get("files_whole", True) or not t.get("inputs_unchanged", True)
                for t in done
            ),
            "temp_files_left": sum(bool(t["temp_files_left"]) for t in done),
            "train_steps_lost": [t["steps_lost"] for t in train],
            "train_seconds_since_checkpoint": [t["seconds_since_checkpoint_at_fault"] for t in train],
            "counters_continuous": f"{sum(t['counters_continuous'] for t in train)}/{len(train)}",
            "tensorboard_overlaps": sum(bool(t["tensorboard_overlaps"]) for t in train),
        }
    return by_kind


def setup(args: argparse.Namespace, root: Path) -> dict:
    base = [f"agent={args.agent}", *SMALL, f"agent.total_timesteps={args.steps}",
            f"checkpoint_every_s={args.checkpoint_every_s}", "log.progress_bar=true"]  # fmt: skip
    finished = root / "runs" / "finished"
    out = run(["train", *base, f"hydra.run.dir={finished}"], root)
    if out.returncode != 0:
        raise SystemExit(f"the finished run failed: {out.stderr}")
    return {"root": root, "base": base, "finished": finished, "sb3": args.agent in ("ppo", "recurrent_ppo"),
            "steps": args.steps, "window": args.window}  # fmt: skip


def main() -> None:
    tb_logging.get_logger().setLevel("ERROR")  # its note on each purge a resume asked for is expected here
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="faults of each kind")
    parser.add_argument("--jobs", type=int, default=1, help="trials at once")
    parser.add_argument("--agent", default="developmental")
    parser.add_argument("--steps", type=int, default=2048, help="each training run's agent.total_timesteps")
    parser.add_argument("--checkpoint-every-s", type=float, default=2.0)
    parser.add_argument("--window", type=float, default=6.0, help="a fault comes 0-WINDOW s after training is under way")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS))
    parser.add_argument("--fuzz", action="store_true", help="also run the CLI fuzz as real processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "soak.json"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="devlearn-soak-"))
    t0 = time.time()
    try:
        s = setup(args, root)
        mountable = can_mount(root)
        bystander = fingerprint(s["finished"])
        commands = [c for c in COMMANDS if c in args.commands]  # each kind cycles through them
        plan = [(k, i, commands[i % len(commands)], rng.randrange(2**32)) for k in args.kinds for i in range(args.runs)]

        def one(item: tuple) -> dict:
            kind, i, command, seed = item
            if kind in ("disk_full", "read_only") and not mountable:
                return {"kind": kind, "command": command, "not_run": "mount is not allowed here"}
            trial_rng = random.Random(seed)
            if command == "train":
                trial = train_trial(kind, i, s, trial_rng)
            else:
                trial = evaluate_or_report_trial(command, kind, i, s, trial_rng)
            print(f"{kind:>9} {command:<6} answered={trial['answered']} resumed={trial['resumed']} {trial['said'][:120]}", flush=True)
            return trial

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            trials = list(pool.map(one, plan))
        untouched = fingerprint(s["finished"]) == bystander
        others = sorted(p.name for p in (root / "runs").iterdir() if p.name != "finished")
        fuzzed = fuzz(root, max(1, args.jobs)) if args.fuzz else None
    finally:
        for mounted in reversed(list(MOUNTED)):
            umount(mounted)
        shutil.rmtree(root, ignore_errors=True)
    summary = {
        "machine": f"{os.cpu_count()} CPUs, {args.jobs} trials at once",
        "agent": args.agent,
        "steps": args.steps,
        "checkpoint_every_s": args.checkpoint_every_s,
        "faults_per_kind": args.runs,
        "by_kind": summarize(trials, s),
        "other_run_untouched": untouched,
        "folders_written_beside_the_trials": others,
        "trials": trials,
        "fuzz": fuzzed,
        "seconds": round(time.time() - t0, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    for kind, k in summary["by_kind"].items():
        print(f"{kind:>9}: {k['faults']} faults ({k['by_command']}), answered {k['answered']}, resumed {k['resumed']}, "
              f"corrupt {k['corrupt_files']}, steps lost {k['train_steps_lost']}, counters {k['counters_continuous']}, "
              f"TensorBoard overlaps {k['tensorboard_overlaps']}")  # fmt: skip
    print(f"other run untouched: {untouched}; folders written beside the trials: {others or 'none'}")
    if fuzzed:
        print(f"CLI fuzz: {fuzzed['answered_in_one_line']}/{fuzzed['cases']} in one line ({fuzzed['distinct']} distinct), "
              f"{fuzzed['tracebacks']} tracebacks, {fuzzed['accepted']} accepted")  # fmt: skip
    print(f"{summary['seconds']:.0f} s; details in {args.out}")


if __name__ == "__main__":
    main()
