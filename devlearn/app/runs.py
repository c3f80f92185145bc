"""The runs under a folder, read and grouped for ``devlearn report``: one group is one setting, several seeds.

A run folder is what ``devlearn train`` writes: ``results.json`` (the final figures) and
``.hydra/config.yaml`` (the composed config). Runs are grouped by their whole config except the seed
(and the keys in ``NOT_GROUPED``, which do not change what is learned).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devlearn.errors import ConfigError

NOT_GROUPED = ("seed", "resume", "log.progress_bar", "log.video", "log.video_max_steps")


class ReportError(ConfigError):
    """Input the report cannot aggregate; the CLI prints it as one line and exits with code 2."""


@dataclass
class Run:
    """One run folder: its config (flattened to dotted keys), its results and its overrides."""

    path: Path
    config: dict[str, Any]
    results: dict[str, Any]
    overrides: list[str] = field(default_factory=list)

    @property
    def env(self) -> str:
        return str(self.results.get("env", self.config.get("env.id", "?")))

    @property
    def seed(self) -> Any:
        return self.config.get("seed", self.results.get("seed"))


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"agent": {"core": {"window": 8}}}`` -> ``{"agent.core.window": 8}`` (lists stay values)."""
    if not isinstance(node, dict):
        return {prefix[:-1]: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _read_yaml(path: Path, root: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ReportError(f"{path.relative_to(root)} cannot be read: {err}".splitlines()[0]) from None


def load_runs(root: Path) -> list[Run]:
    """Every run under ``root``: folders with ``results.json`` or ``.hydra/config.yaml``.

    A run with a config but no ``results.json`` (it crashed or is still running) is an error,
    not silently skipped: a median over the seeds that happened to finish would be biased.
    """
    if not root.is_dir():
        raise ReportError(
            f"{root} is not a folder. Give the folder of a sweep (runs/multirun-...) or of runs."
        )
    folders = {p.parent for p in root.rglob("results.json")}
    folders |= {p.parent.parent for p in root.rglob(".hydra/config.yaml")}
    if not folders:
        raise ReportError(
            f"No runs under {root}: a run folder has results.json and .hydra/config.yaml (what devlearn train writes)."
        )
    runs = []
    for folder in sorted(folders):
        name = folder.relative_to(root) if folder != root else Path(".")
        if not (folder / "results.json").is_file():
            raise ReportError(
                f"Run {name} has no results.json (did it crash or is it still running?); finish or remove it."
            )
        if not (folder / ".hydra" / "config.yaml").is_file():
            raise ReportError(
                f"Run {name} has no .hydra/config.yaml, so it cannot be grouped; runs come from devlearn train."
            )
        try:
            results = json.loads((folder / "results.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ReportError(f"Run {name}: results.json is not valid JSON ({err}).") from None
        if not isinstance(results, dict) or "eval" not in results:
            raise ReportError(
                f"Run {name}: results.json has no 'eval' table; it was not written by devlearn train."
            )
        config = _read_yaml(folder / ".hydra" / "config.yaml", root)
        overrides_file = folder / ".hydra" / "overrides.yaml"
        overrides = _read_yaml(overrides_file, root) if overrides_file.is_file() else []
        runs.append(Run(folder, flatten(config or {}), results, [str(o) for o in overrides or []]))
    return runs


# ---------------------------------------------------------------------------------------------- groups


@dataclass
class Group:
    """Runs that share every setting but the seed."""

    label: str
    runs: list[Run]
    figures: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> median, ci_low, ci_high

    @property
    def seeds(self) -> list[Any]:
        return [r.seed for r in self.runs]


def _setting(run: Run) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in run.config.items() if k not in NOT_GROUPED))


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _label(runs_by_group: list[list[Run]]) -> list[str]:
    """A short name per group: the overrides (seed aside) that are not the same in every group.

    Hydra's ``overrides.yaml`` says what the user changed (``agent=ppo``), which is shorter than the
    config keys that differ; hand-made runs without it fall back to the differing config keys.
    """
    own = []
    for runs in runs_by_group:
        sets = {tuple(o for o in r.overrides if override_key(o) not in NOT_GROUPED) for r in runs}
        own.append(sets.pop() if len(sets) == 1 else ())
    shared = set.intersection(*(set(o) for o in own)) if own else set()
    labels = [" ".join(o for o in overrides if o not in shared) for overrides in own]
    if len(labels) > 1 and (not all(labels) or len(set(labels)) < len(labels)):
        # the overrides do not tell the groups apart (hand-made runs, or defaults changed between runs)
        settings = [dict(_setting(runs[0])) for runs in runs_by_group]
        varying = sorted(k for k in set().union(*settings) if len({s.get(k) for s in settings}) > 1)
        if "agent.name" in varying:  # agent=... implies its own keys: name the agent, not each key
            varying = ["agent.name"] + [k for k in varying if not k.startswith("agent.")]
        labels = [
            " ".join(
                f"{k}={s.get(k, '-')}".replace("'", "").replace("agent.name=", "agent=") for k in varying[:4]
            )
            for s in settings
        ]
    labels = [
        label or f"{runs[0].config.get('agent.name', 'run')}"
        for label, runs in zip(labels, runs_by_group, strict=True)
    ]
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):  # two settings the overrides do not tell apart still get two names
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label} #{seen[label]}"
    return labels


def group_runs(runs: list[Run]) -> list[Group]:
    """Group runs by everything but the seed, in the order their first run appears."""
    grouped: dict[tuple, list[Run]] = {}
    for run in runs:
        grouped.setdefault(_setting(run), []).append(run)
    members = list(grouped.values())
    return [Group(label, rs) for label, rs in zip(_label(members), members, strict=True)]
