"""The ``devlearn`` command: ``train`` and ``grok`` (Hydra), ``eval``, ``report`` and ``envs``.

``devlearn train`` hands its arguments to Hydra, so everything Hydra offers works
(``env=carwash``, ``agent.total_timesteps=5000``, ``-m seed=0,1,2``, ``--cfg job``). Before Hydra
sees them, overrides are checked against the typed schema so a misspelt key is answered with
the allowed keys instead of a traceback.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from devlearn.app import signals
from devlearn.app.checkpoints import checkpoint_file
from devlearn.app.launch import (
    HELP_GROUPS,
    debug,
    fail,
    help_text,
    normalize_overrides,
    prepare,
    prepare_grok,
    resume_command,
)
from devlearn.app.overrides import check_grok_overrides, check_overrides, overrides_of
from devlearn.app.report import final_figures
from devlearn.app.report import main as report_main
from devlearn.app.requeue import register_launchers
from devlearn.config import OBJECTIVES, register_configs
from devlearn.errors import (
    ConfigError,
    EvaluationInterrupted,
    Interrupted,
    StorageError,
    exit_code,
    signal_name,
    write_error,
)
from devlearn.registry import RegistryError, make, registered

USAGE = """usage: devlearn <command> [arguments]

commands:
  train [overrides]      train an agent (Hydra): devlearn train env=cliff agent=ppo seed=0
  grok [overrides]       grokking on modular arithmetic (Hydra): devlearn grok schedule=catapult_sleep n_seeds=3
  eval run_dir=PATH [split=heldout] [episodes=100] [dynamic_eval=true]
                         evaluate a trained run: return, success, catastrophe rate, cost
  report DIR             aggregate the runs under DIR (a sweep): medians, bootstrap 95% CIs, curves
  envs [--all]           list registered environments (--all adds every Gymnasium id)
"""


EVAL_USAGE = """usage: devlearn eval run_dir=PATH [split=train|heldout] [episodes=N] [seed=S] [--json]
                     [dynamic_eval=true [dynamic_lr=1e-3] [dynamic_steps=1] [dynamic_batch=32]
                      [dynamic_sleep=0.0] [dynamic_core=false]]

Evaluate a trained run on many episodes: return, success, catastrophe rate, cost, length.
Prints a table (or JSON with --json) and writes eval-<split>.json beside the run's checkpoint.

dynamic_eval=true: the world model (with dynamic_core=true, the core too) keeps learning within each
episode on a copy of the weights (dynamic_lr, dynamic_steps gradient steps per env step on the last
dynamic_batch transitions, then a pull of dynamic_sleep back towards the saved weights); the table adds
the world-model loss per transition without and with it. The checkpoint is never written.
"""
DYNAMIC_OPTIONS = {  # devlearn eval option -> (DynamicEvalConfig field, type)
    "dynamic_lr": ("lr", float),
    "dynamic_steps": ("steps", int),
    "dynamic_batch": ("batch", int),
    "dynamic_sleep": ("sleep", float),
    "dynamic_core": ("train_core", bool),
}

ENVS_USAGE = """usage: devlearn envs [--all]

List the registered environments with their spaces (--all adds every Gymnasium id).
"""


def _flag(key: str, value: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no) from the command line."""
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ConfigError(f"{key}={value!r} must be true or false.")


@hydra.main(config_path="pkg://devlearn.configs", config_name="grok", version_base="1.3")
def _grok_main(cfg: DictConfig) -> None:
    from devlearn.app.grok import run_grok  # deferred: torch loads only when a run starts

    try:
        run_grok(cfg, Path(HydraConfig.get().runtime.output_dir))
    except ConfigError as err:
        print(f"devlearn: error: {err}", file=sys.stderr)
        sys.exit(2)


@hydra.main(config_path="pkg://devlearn.configs", config_name="train", version_base="1.3")
def _train_main(cfg: DictConfig) -> float | None:
    """One run. Returns the figure named by ``objective`` (what a sweeper such as Optuna optimizes), else None.

    Errors are answered here: Hydra would print its own traceback for anything that leaves this function.
    This is the function every launcher runs (in this process, a joblib worker, a SLURM job), so the stop
    signals are answered here too (``devlearn/app/signals.py``).
    """
    from devlearn.app.run import (
        train,  # deferred: torch and SB3 load only when a run starts (--help stays fast)
    )
    from devlearn.logging.runlog import Diverged  # deferred: torch's TensorBoard writer, likewise

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    with signals.answered():
        try:
            if cfg.get("objective") is None and "optuna" in str(hydra_cfg.sweeper.get("_target_", "")):
                raise ConfigError(
                    "The Optuna sweeper needs a figure to optimize: add objective=NAME. "
                    f"Allowed values: {', '.join(OBJECTIVES)}."
                )
            sweep_job = hydra_cfg.mode == RunMode.MULTIRUN
            # a sweep's job resumes its own run wherever it is under runs/, not only in this sweep's new folder
            runs_root = Path(hydra_cfg.sweep.dir).parent if sweep_job else None
            results = train(cfg, run_dir, runs_root=runs_root)
        except (ConfigError, RegistryError) as err:
            if debug():
                raise
            fail(str(err))
        except Diverged as err:
            if debug():
                raise
            fail(str(err), code=1)
        except (Interrupted, EvaluationInterrupted, KeyboardInterrupt) as err:
            _stopped(err, list(hydra_cfg.overrides.task), signals.forward)
        except OSError as err:  # a full disk, a folder turned read-only: the last checkpoint that fit is on disk
            if debug():
                raise
            _storage_failed(err, run_dir, list(hydra_cfg.overrides.task))
    return None if cfg.get("objective") is None else final_figures(results)[cfg.objective]


def _stopped(err: BaseException, overrides: list[str], forward: Any) -> None:
    """Ctrl-C or a stop signal: one line (and the command that continues the run), then the handler devlearn's replaced
    (``forward``: submitit's requeues the job), then exit 128 + the signal's number."""
    signum = getattr(err, "signum", None)
    if isinstance(err, Interrupted):
        print(f"\ndevlearn: {err}. Continue with:\n  {resume_command(overrides, err.run_dir)}", file=sys.stderr)
    elif isinstance(err, EvaluationInterrupted):  # the model is trained and saved: say how to evaluate it
        print(f"\ndevlearn: {err}", file=sys.stderr)
    else:  # before training began
        print(f"\ndevlearn: {signal_name(signum)} before training began; nothing was saved. Run the command again.",
              file=sys.stderr)  # fmt: skip
    sys.stderr.flush()
    forward(signum)
    sys.exit(exit_code(signum))


def _storage_failed(err: OSError, run_dir: Path, overrides: list[str]) -> None:
    """A file the run could not write: one line saying which and why, and how to continue from the checkpoint on disk."""
    where = Path(os.fsdecode(err.filename)) if err.filename else run_dir  # C code names files in bytes
    message = str(err) if isinstance(err, StorageError) else str(write_error(err, where))
    if checkpoint_file(run_dir) is not None:
        message += f" Then continue with: {resume_command(overrides, run_dir)}"
    fail(message, code=1)


SINGLE_RUN_FLAGS = ("-m", "--multirun", "-c", "--cfg", "--help", "-h", "--hydra-help", "--info", "-i", "-p", "--package")


def _prepare_train(args: list[str]) -> list[str]:
    """Check a single run before Hydra creates its folder; returns the arguments Hydra gets.

    A multirun (``-m``) or an inspection flag (``--cfg``) goes to Hydra as it is: each job of a
    sweep is checked again when it starts (``devlearn.app.run.train``).
    """
    args = normalize_overrides(args)
    if any(a in SINGLE_RUN_FLAGS for a in args):
        return args
    cfg, run_dir = prepare(overrides_of(args))
    if str(cfg.resume).lower() != "false":  # Hydra's job runs in the resumed folder, not a new one
        args = [a for a in args if not a.lstrip("+").startswith("hydra.run.dir=")] + [f"hydra.run.dir={run_dir}"]
    return args


def _eval(args: list[str]) -> None:
    from devlearn.app.evaluate_run import evaluate_run  # deferred: torch and SB3 load only for an evaluation

    if any(a in ("-h", "--help") for a in args):
        print(EVAL_USAGE)
        return

    options = dict(a.split("=", 1) for a in args if "=" in a)
    allowed = {"run_dir", "split", "episodes", "seed", "dynamic_eval", *DYNAMIC_OPTIONS}
    unknown = sorted(set(options) - allowed) + [a for a in args if "=" not in a and a != "--json"]
    if unknown or "run_dir" not in options:
        close = difflib.get_close_matches(unknown[0].split("=")[0], sorted(allowed), n=1) if unknown else []
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"devlearn eval takes run_dir=PATH [split=train|heldout] [episodes=N] [seed=S] [--json] "
            f"[dynamic_eval=true] [{' '.join(f'{k}=...' for k in DYNAMIC_OPTIONS)}]; got {' '.join(args)!r}.{hint}"
        )
    numbers = {}
    for key, default in (("episodes", 100), ("seed", 12345)):
        try:
            numbers[key] = int(options.get(key, default))
        except ValueError:
            raise ConfigError(f"{key}={options[key]!r} must be an integer.") from None
    dynamic_eval = _flag("dynamic_eval", options.get("dynamic_eval", "false"))
    given = [k for k in DYNAMIC_OPTIONS if k in options]
    if given and not dynamic_eval:
        raise ConfigError(f"{given[0]} is an option of dynamic evaluation: add dynamic_eval=true.")
    dynamic = None
    if dynamic_eval:
        # deferred: torch loads only for an evaluation
        from devlearn.agents.developmental.dynamic_eval import DynamicEvalConfig, validate_dynamic_eval

        dynamic = DynamicEvalConfig()
        for key in given:
            name, kind = DYNAMIC_OPTIONS[key]
            try:
                value = _flag(key, options[key]) if kind is bool else kind(options[key])
            except ValueError:
                raise ConfigError(f"{key}={options[key]!r} must be a {kind.__name__}.") from None
            setattr(dynamic, name, value)
        validate_dynamic_eval(dynamic)
    results = evaluate_run(
        Path(options["run_dir"]),
        split=options.get("split", "heldout"),
        dynamic_eval=dynamic_eval,
        dynamic=dynamic,
        progress=sys.stderr if "--json" in args else sys.stdout,  # with --json, stdout is the JSON alone
        **numbers,
    )
    print(json.dumps(results, indent=2) if "--json" in args else results["table"])
    if results.get("not_written"):  # a read-only or full run folder: the figures are above, their file is not
        print(f"devlearn: {results['not_written']}", file=sys.stderr)
        sys.exit(1)


TRAIN_USAGE = """usage: devlearn train [group=option ...] [key=value ...] [-m] [--cfg job] [--hydra-help]

Train an agent (Hydra). Any key of the config below can be set: agent.total_timesteps=5000 seed=1;
env.kwargs.* takes any argument of the env's constructor. -m sweeps comma-separated values (seed=0,1,2),
--cfg job prints the composed config, --hydra-help lists Hydra's own options. A stop signal (SIGTERM,
SIGUSR1, SIGUSR2) or Ctrl-C saves a checkpoint and prints the command that continues the run."""
GROK_USAGE = """usage: devlearn grok [schedule=option] [key=value ...] [-m] [--cfg job] [--hydra-help]

Grokking on modular arithmetic: one task, one schedule, n_seeds seeds (devlearn/app/grok.py)."""


def _help(command: str, args: list[str]) -> str:
    """``devlearn train --help`` (and grok's): the groups a user picks from and the config the overrides compose."""
    overrides = normalize_overrides(overrides_of(args))
    if command == "grok":
        return help_text("grok", overrides, GROK_USAGE, ("schedule",))
    return help_text("train", overrides, TRAIN_USAGE, HELP_GROUPS)


def _envs(args: list[str]) -> None:
    from devlearn.app.media import render_modes  # deferred: torch's TensorBoard writer loads only here

    if any(a in ("-h", "--help") for a in args):
        print(ENVS_USAGE)
        return
    unknown = [a for a in args if a != "--all"]
    if unknown:
        raise ConfigError(f"devlearn envs takes only --all; got {' '.join(unknown)!r}.")

    for entry in registered(include_gymnasium="--all" in args):
        line = f"{entry.id:<36} {entry.api:<10}"
        if entry.id.startswith("devlearn/"):
            env = make(entry.id)
            if entry.api == "gymnasium":
                obs, act = env.observation_space, env.action_space
            else:
                agent = env.possible_agents[0]
                obs, act = env.observation_space(agent), env.action_space(agent)
            env.close()
            twin = " batched twin" if entry.vector_entry_point else ""
            line += f" obs={obs} act={act} render={','.join(render_modes(entry.id))}{twin}\n{'':<48}{entry.description}"
        print(line)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``devlearn`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    try:
        with signals.answered():  # a stop signal or Ctrl-C outside training: one line (training answers its own)
            _dispatch(command, rest)
    except (ConfigError, RegistryError) as err:
        if debug():
            raise
        fail(str(err))
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", None)
        what = WHAT_STOPS.get(command, "nothing was changed")
        print(f"\ndevlearn: {signal_name(signum)} stopped devlearn {command}; {what}.", file=sys.stderr)
        sys.exit(exit_code(signum))


# What a stopped command leaves (its files are written whole or not at all): the line says it, and what to do.
WHAT_STOPS = {
    "train": "nothing was saved before training began. Run the command again",
    "eval": "the run is as it was and no eval file was written. Run the command again",
    "report": "no report file was written. Run the command again",
}


def _dispatch(command: str, rest: list[str]) -> None:
    """One ``devlearn`` command (errors are ``main``'s to answer)."""
    if command in ("train", "grok") and any(a in ("-h", "--help") for a in rest):
        print(_help(command, rest))
    elif command == "train":
        check_overrides(rest)
        hydra_args = _prepare_train(rest)
        register_configs()
        if any(a.startswith(("hydra/launcher=", "hydra.launcher.")) for a in rest):
            register_launchers()
        sys.argv = ["devlearn train", *hydra_args]
        _train_main()
    elif command == "grok":
        check_grok_overrides(rest)
        if not any(a in SINGLE_RUN_FLAGS for a in rest):  # a sweep's jobs are checked as each starts
            prepare_grok(overrides_of(rest))
        register_configs()
        sys.argv = ["devlearn grok", *rest]
        _grok_main()
    elif command == "eval":
        _eval(rest)
    elif command == "report":
        report_main(rest)
    elif command == "envs":
        _envs(rest)
    else:
        close = difflib.get_close_matches(command, ["train", "grok", "eval", "report", "envs"], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"Unknown command {command!r}.{hint} Commands: train, grok, eval, report, envs (devlearn --help).")
