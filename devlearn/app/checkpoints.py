"""A run folder's checkpoint as the app reads it: which file, whether it is whole, what it holds, loading it.

Both agents' files are zip containers (``torch.save`` writes one; SB3 writes ``checkpoint.zip`` with
devlearn's own ``devlearn.pt`` entry inside). What a checkpoint was trained on (env id, observation and
action spaces, agent: ``RunLog.trained_on``) rides inside it, so a checkpoint loaded into a model another
config builds is answered in words: which env and observation space it came from.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from devlearn.app.checks import one_line
from devlearn.errors import ConfigError

SB3_EXTRA = "devlearn.pt"  # devlearn's entry in SB3's checkpoint.zip (agents/sb3/agent.py: EXTRA)


def checkpoint_file(run_dir: Path) -> Path | None:
    """``run_dir``'s checkpoint (``checkpoint.pt`` or SB3's ``checkpoint.zip``), None if it has none."""
    for name in ("checkpoint.pt", "checkpoint.zip"):
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
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


def checkpoint_meta(run_dir: Path) -> dict[str, Any]:
    """``{"step": env steps, "trained_on": {...}}`` of ``run_dir``'s checkpoint, read without building a model.

    Empty for a folder without a readable checkpoint; ``trained_on`` is missing from checkpoints older than it.
    """
    import torch  # deferred: torch loads only when a checkpoint is read (`--help` and config errors stay fast)

    path = checkpoint_file(run_dir)
    try:
        if path is None:
            return {}
        if path.suffix == ".pt":  # mmap: the tensors stay on disk, only the small entries are read
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            return {"step": int(state["num_timesteps"]), "trained_on": dict(state.get("log", {}).get("trained_on", {}))}
        with zipfile.ZipFile(path) as z:
            step = int(json.loads(z.read("data"))["num_timesteps"])
            extra = torch.load(io.BytesIO(z.read(SB3_EXTRA)), weights_only=True) if SB3_EXTRA in z.namelist() else {}
        return {"step": step, "trained_on": dict(extra.get("log", {}).get("trained_on", {}))}
    except Exception:  # a checkpoint this cannot read is reported by check_checkpoint or load_checkpoint
        return {}


def checkpoint_step(run_dir: Path) -> int | None:
    """The env step ``run_dir``'s checkpoint holds, None if it has none (or it is unreadable)."""
    return checkpoint_meta(run_dir).get("step")


def _short(space: str, width: int = 90) -> str:
    return space if len(space) <= width else space[: width - 3] + "..."


def _mismatch(run_dir: Path, expected: dict[str, str], err: Exception) -> str | None:
    """The one line for a checkpoint whose weights do not fit the model ``expected`` describes (None: not that)."""
    text = str(err)
    if not re.search(r"size mismatch|Missing key|Unexpected key|shape|does not match", text):
        return None
    have = checkpoint_meta(run_dir).get("trained_on", {})
    builds = f"{expected['env']} (observation space {_short(expected['observation_space'])})"
    todo = "Evaluate or resume it with the config it was trained with, or start a new run in another folder."
    if have:
        return (
            f"the checkpoint in {run_dir} was trained on {have.get('env', '?')} (observation space "
            f"{_short(have.get('observation_space', '?'))}, agent {have.get('agent', '?')}); this run's config "
            f"builds a model for {builds}, agent {expected['agent']}: the weights do not fit. {todo}"
        )
    weight = re.search(r"size mismatch for ([\w.]+)", text)
    first = f" (first mismatch: {weight.group(1)})" if weight else ""
    return (
        f"the checkpoint in {run_dir} does not fit the model this run's config builds for {builds}{first}: "
        f"it was trained on another env or with other model sizes. {todo}"
    )


def load_checkpoint(agent: Any, run_dir: Path, expected: dict[str, str] | None = None) -> None:
    """``agent.load``, with an unreadable checkpoint answered in one line (it passed the zip check, yet fails).

    ``expected``: what this run's config builds (``devlearn.app.run.trained_on``); a checkpoint whose weights
    do not fit is answered with what it was trained on instead of torch's list of shapes.
    """
    check_checkpoint(run_dir)
    try:
        agent.load(run_dir)
    except Exception as err:
        message = _mismatch(run_dir, expected, err) if expected else None
        raise ConfigError(
            message
            or f"the checkpoint in {run_dir} cannot be loaded ({one_line(err)[:200]}). "
            "It is corrupt or from an incompatible version; start a new run (resume=false)."
        ) from None
