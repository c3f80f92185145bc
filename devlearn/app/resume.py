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

import shutil
import zipfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from devlearn.config import upgrade
from devlearn.errors import ConfigError

FREE = (
    "resume", "agent.total_timesteps", "log.", "device", "checkpoint_every", "max_rollbacks", "distributed.",
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


def stored_config(run_dir: Path) -> DictConfig | None:
    """The config a run folder was trained with, or None if it has none (or it is unreadable)."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    try:
        cfg = OmegaConf.load(path)
        return upgrade(cfg) if isinstance(cfg, DictConfig) else None  # an old run's keys in today's schema
    except Exception:  # a half-written YAML file, or a config of another devlearn, is simply not a candidate
        return None


def checkpoint_file(run_dir: Path) -> Path | None:
    for name in ("checkpoint.pt", "checkpoint.zip"):
        if (run_dir / name).is_file():
            return run_dir / name
    return None


def check_checkpoint(run_dir: Path) -> None:
    """Raise a one-line ``ConfigError`` if ``run_dir``'s checkpoint is truncated or corrupt.

    Cheap structural checks only (the zip's central directory and CRCs, the .pt's zip container):
    they catch a file cut short by a kill or a full disk before any model is built.
    """
    path = checkpoint_file(run_dir)
    if path is None:
        raise ConfigError(f"{run_dir} has no checkpoint (checkpoint.pt or checkpoint.zip).")
    try:
        with zipfile.ZipFile(path) as z:  # torch.save writes a zip container too
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        bad = f"{type(err).__name__}: {err}"
    if bad is not None:
        raise ConfigError(
            f"{path} is truncated or corrupt ({bad}); it cannot be loaded. "
            "Delete it to train this run from scratch, or restore it from a backup."
        )


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


def find_resumable(cfg: DictConfig, runs_root: Path, run_dir: Path | None = None) -> Path:
    """The run folder ``resume`` continues, after comparing its stored config with ``cfg``.

    ``run_dir`` (an explicit ``hydra.run.dir``) is taken if it has a checkpoint. Otherwise the
    candidates are the run folders under ``runs_root`` (``run_folders``: single runs and the jobs of
    sweeps) whose stored config has the same env id, agent and seed; one that differs from ``cfg`` in
    no key is preferred, the newest first.
    Raises a one-line ``ConfigError`` naming the differing keys (see the module docstring).
    """
    force = str(cfg.resume).lower() == "force"
    if run_dir is not None and checkpoint_file(run_dir) is not None:
        candidates = [run_dir]
    else:
        want = flatten(cfg)
        candidates = []
        for folder in run_folders(runs_root):
            stored = stored_config(folder)
            if stored is None or checkpoint_file(folder) is None:
                continue
            have = flatten(stored)
            if all(have.get(k) == want.get(k) for k in IDENTITY):
                candidates.append(folder)
        if not candidates:
            raise ConfigError(
                f"resume={str(cfg.resume).lower()}, but no run of env.id={cfg.env.id} agent={cfg.agent.name} seed={cfg.seed} "
                f"with a checkpoint was found under {runs_root}. Start without resume, "
                "or name the run with hydra.run.dir=PATH."
            )
        newest = lambda p: checkpoint_file(p).stat().st_mtime  # noqa: E731
        candidates.sort(key=lambda p: (not differences(stored_config(p), cfg), newest(p)), reverse=True)
    chosen = candidates[0]
    stored = stored_config(chosen)
    if stored is None:
        raise ConfigError(f"{chosen} has a checkpoint but no readable .hydra/config.yaml to compare with.")
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
    if diff:
        print(f"devlearn: resume=force: continuing {chosen} with {describe(diff)}")
    return chosen
