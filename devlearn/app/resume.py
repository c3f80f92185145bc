"""``resume=true|force``: find the run to continue by its config, and refuse to mix experiments.

A run is identified by what it trained on, not by its folder name: the stored
``.hydra/config.yaml`` of every run folder beside the new one is compared with the requested
config. Keys fall in three classes:

* ``FREE``: may differ on any resume (``agent.total_timesteps`` extends a run; logging and
  checkpoint cadence do not change what is learned; ``distributed.*`` splits the same envs over
  another number of processes).
* ``STRUCTURAL``: the environment, the model's shapes and the seed. A run trained with other
  values is another experiment; no resume mode continues it with new ones (its checkpoint does
  not fit, or its figures would no longer mean what they say).
* everything else (learning rate, coefficients, ...): ``resume=true`` refuses and names them;
  ``resume=force`` continues the run with the new values and says which it overrode.
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from devlearn.app.checkpoints import check_checkpoint, checkpoint_file, checkpoint_step
from devlearn.config import upgrade
from devlearn.errors import ConfigError

__all__ = ["check_checkpoint", "checkpoint_file", "checkpoint_step", "find_resumable", "read_run_config"]

FREE = (
    "resume", "agent.total_timesteps", "log.", "device", "checkpoint_every", "checkpoint_every_s", "max_rollbacks",
    "distributed.",
)  # fmt: skip
STRUCTURAL = (
    "env.id",
    "env.kwargs.",
    "env.num_envs",
    "agent.name",
    "agent.hidden_sizes",
    "agent.normalize_images",
    "agent.n_steps",
    "agent.core.",
    "agent.memory.variant",  # which memory modules the checkpoint holds
    "agent.memory.k",
    "agent.memory.n_heads",
    "agent.memory.d_state",
    "agent.world_model.latent",
    "agent.world_model.k",
    "seed",
)
IDENTITY = ("env.id", "agent.name", "seed")  # what a run is "of": only such runs are candidates


def _matches(key: str, patterns: tuple[str, ...]) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in patterns)


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{"agent.core.d_model": 64, ...}``: every leaf of a config (lists stay whole)."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, Any] = {}
    for key, value in container.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(stored: Any, requested: Any) -> dict[str, tuple[Any, Any]]:
    """Keys whose value differs between two configs (a key only one side has counts), FREE keys left out."""
    a, b = flatten(stored), flatten(requested)
    missing = object()
    diff = {}
    for key in sorted(set(a) | set(b)):
        if _matches(key, FREE):
            continue
        old, new = a.get(key, missing), b.get(key, missing)
        if old != new:
            diff[key] = (None if old is missing else old, None if new is missing else new)
    return diff


def describe(diff: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in diff.items())


def read_run_config(run_dir: Path) -> DictConfig:
    """The config ``run_dir`` was trained with (its ``.hydra/config.yaml``, in today's schema), or a one-line
    ``ConfigError`` saying why it cannot be read (missing, not YAML, not a devlearn config)."""
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no .hydra/config.yaml: it is not a devlearn run folder (devlearn train writes one).")
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # yaml's ParserError and ScannerError: many lines, of which the first and the mark say it
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        why = getattr(err, "problem", None) or " ".join(str(err).split())[:120]
        raise ConfigError(
            f"{path} is not valid YAML ({why}{where}): it was edited or cut short. Restore it from a copy, "
            "or write it again with devlearn train --cfg job and the run's overrides (.hydra/overrides.yaml)."
        ) from None
    if not isinstance(cfg, DictConfig) or "agent" not in cfg or "name" not in cfg.get("agent", {}):
        raise ConfigError(f"{path} is not a devlearn train config (it has no agent.name).")
    return upgrade(cfg)  # an old run's keys in today's schema


def stored_config(run_dir: Path) -> DictConfig | None:
    """The config a run folder was trained with, or None if it has none (or it is unreadable)."""
    try:
        return read_run_config(run_dir)
    except ConfigError:  # a half-written YAML file, or a config of another devlearn, is simply not a candidate
        return None


def run_folders(runs_root: Path) -> list[Path]:
    """The run folders under ``runs_root``: ``runs/<run>/`` and the jobs of sweeps, ``runs/multirun-<date>/<job>/``.

    A job folder that points (a symlink, ``link_job_folder``) to a run listed already is listed once.
    """
    if not runs_root.is_dir():
        return []
    seen, folders = set(), []
    for folder in sorted([*runs_root.glob("*/"), *runs_root.glob("*/*/")]):
        if (folder / ".hydra").is_dir() and folder.resolve() not in seen:
            seen.add(folder.resolve())
            folders.append(folder)
    return folders


def link_job_folder(job_dir: Path, run_dir: Path) -> None:
    """A sweep job that resumes ``run_dir`` trains there: its fresh folder becomes a link to it.

    Hydra created ``job_dir`` for the job (its ``.hydra/`` and log, nothing else); as a link it still lists
    the job in its sweep folder, so the job's progress line and ``devlearn report`` on the sweep read the
    resumed run's ``results.json``.
    """
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.symlink_to(run_dir.resolve(), target_is_directory=True)


def _named_run(cfg: DictConfig, run_dir: Path) -> Path:
    """``hydra.run.dir=PATH resume=...``: that run, or a one-line refusal; never another folder."""
    if checkpoint_file(run_dir) is not None:
        return run_dir
    mode = str(cfg.resume).lower()
    parent = run_dir.parent
    runs = sorted(p.name for p in parent.iterdir() if checkpoint_file(p) is not None) if parent.is_dir() else []
    close = difflib.get_close_matches(run_dir.name, runs, n=1)
    hint = f" Did you mean hydra.run.dir={parent / close[0]}?" if close else ""
    what = "does not exist" if not run_dir.exists() else "holds no checkpoint (checkpoint.pt or checkpoint.zip)"
    raise ConfigError(
        f"hydra.run.dir={run_dir} {what}, so resume={mode} has nothing to continue there.{hint} "
        "Drop resume to start a new run in that folder."
    )


def _search(cfg: DictConfig, runs_root: Path, announce: bool) -> Path:
    """The newest run under ``runs_root`` of this env id, agent and seed with a checkpoint (the one whose config
    matches preferred); says which it took."""
    want = flatten(cfg)
    candidates = []
    for folder in run_folders(runs_root):
        stored = stored_config(folder)
        if stored is None or checkpoint_file(folder) is None:
            continue
        have = flatten(stored)
        if all(have.get(k) == want.get(k) for k in IDENTITY):
            candidates.append(folder)
    of = f"env.id={cfg.env.id} agent={cfg.agent.name} seed={cfg.seed}"
    if not candidates:
        raise ConfigError(
            f"resume={str(cfg.resume).lower()}, but no run of {of} with a checkpoint was found under {runs_root}. "
            "Start without resume, or name the run with hydra.run.dir=PATH."
        )
    newest = lambda p: checkpoint_file(p).stat().st_mtime  # noqa: E731
    candidates.sort(key=lambda p: (not differences(stored_config(p), cfg), newest(p)), reverse=True)
    if announce:
        among = f"the newest of {len(candidates)} runs of {of} there" if len(candidates) > 1 else f"the one run of {of}"
        print(f"devlearn: resume={str(cfg.resume).lower()}: continuing {candidates[0]} ({among}; "
              "hydra.run.dir=PATH names another)")  # fmt: skip
    return candidates[0]


def find_resumable(
    cfg: DictConfig, runs_root: Path, run_dir: Path | None = None, own: Path | None = None, announce: bool = True
) -> Path:
    """The run folder ``resume`` continues, after comparing its stored config with ``cfg``.

    ``run_dir`` (an explicit ``hydra.run.dir``) is that run or none: a folder without a checkpoint is refused in
    one line, never replaced by a sibling. ``own`` (a sweep job's fresh folder) is taken if it has a checkpoint
    (a requeued job), else the search. Otherwise the candidates are the run folders under ``runs_root``
    (``run_folders``: single runs and the jobs of sweeps) whose stored config has the same env id, agent and
    seed; one that differs from ``cfg`` in no key is preferred, the newest first, and ``announce`` prints which.
    Raises a one-line ``ConfigError`` naming the differing keys (see the module docstring).
    """
    force = str(cfg.resume).lower() == "force"
    if run_dir is not None:
        chosen = _named_run(cfg, run_dir)
    elif own is not None and checkpoint_file(own) is not None:
        chosen = own
    else:
        chosen = _search(cfg, runs_root, announce)
    stored = read_run_config(chosen)  # a corrupt or missing config: one line saying so
    diff = differences(stored, cfg)
    structural = {k: v for k, v in diff.items() if _matches(k, STRUCTURAL)}
    if structural:
        raise ConfigError(
            f"resume={str(cfg.resume).lower()}: {chosen} was trained with other structural keys: {describe(structural)}. "
            "They shape the environment or the model; start a new run (resume=false) to use them."
        )
    if diff and not force:
        raise ConfigError(
            f"resume=true: {chosen} was trained with other values of {describe(diff)}. "
            "resume=force continues it with the new values; resume=false starts a new run."
        )
    check_checkpoint(chosen)
    if diff and announce:
        print(f"devlearn: resume=force: continuing {chosen} with {describe(diff)}")
    return chosen


def refuse_overwrite(run_dir: Path) -> None:
    """A new run (``resume=false``) in a folder that holds one already would overwrite its checkpoint and config."""
    if checkpoint_file(run_dir) is not None:
        step = checkpoint_step(run_dir)
        at = f" (its checkpoint is at step {step:,})" if step is not None else ""
        raise ConfigError(
            f"hydra.run.dir={run_dir} already holds a run{at}. resume=true continues it; "
            "for a new run, choose another hydra.run.dir."
        )
