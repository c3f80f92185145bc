"""``devlearn report DIR``: aggregate the runs under a folder into one table and one picture.

A run folder is what ``devlearn train`` writes: ``results.json`` (the final figures),
``.hydra/config.yaml`` (the composed config) and TensorBoard events under ``tb/``. The runs under
``DIR`` (a Hydra multirun folder, or any hand-made set) are grouped by their whole config except
the seed, so each group is "one setting, several seeds". For each group the report gives the
median of every final figure with a bootstrap 95% confidence interval of that median, writes the
table as ``report.json`` and ``report.md``, and draws learning curves (median over seeds, with a
bootstrap 95% band) from the runs' TensorBoard events into ``curves.png``.

Why medians and bootstrap: with 3-10 seeds, RL results are skewed by the odd seed that never
learns; the median is robust to it, and the percentile bootstrap needs no normality assumption
(Agarwal et al., 2021, "Deep RL at the edge of the statistical precipice").
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from devlearn.errors import ConfigError

REPORT_USAGE = """usage: devlearn report DIR [--out OUT] [--env ID] [--resamples N]

Aggregate every run under DIR (a multirun folder or any set of run folders, each with results.json,
.hydra/config.yaml and tb/): runs are grouped by their config except the seed; each group gets the
median of its final figures with a bootstrap 95% confidence interval, and learning curves with
95% bands from TensorBoard.

Writes OUT/report.json, OUT/report.md and OUT/curves.png (OUT defaults to DIR) and prints the table.

  --out OUT        where to write the report (default: DIR)
  --env ID         only the runs of this env id (needed when DIR holds runs of several envs)
  --resamples N    bootstrap resamples (default 10000)
"""

# Config keys that do not change what a run learns: runs differing only in these are one group.
NOT_GROUPED = ("seed", "resume", "log.progress_bar", "log.video", "log.video_max_steps")
# The learning curves drawn, from the RunLog's TensorBoard tags (devlearn/logging/runlog.py).
CURVE_TAGS = ("rollout/return", "rollout/success_rate", "rollout/catastrophe_rate")
EVAL_FIGURES = ("return", "success", "catastrophe_rate")  # per eval split, from results.json's table
CURVE_POINTS = 100  # curves are interpolated onto this many common env-step points
CONFIDENCE = 0.95


class ReportError(ConfigError):
    """Input the report cannot aggregate; the CLI prints it as one line and exits with code 2."""


# --------------------------------------------------------------------------------------------- statistics


def bootstrap_median_ci(
    values: np.ndarray, resamples: int = 10_000, confidence: float = CONFIDENCE, seed: int = 0
) -> tuple[float, float, float]:
    """Median of ``values`` and the percentile-bootstrap ``confidence`` interval of that median.

    ``values`` has shape (n,) or (n, points): the bootstrap then runs for every column at once
    with the same resampled seeds, and the three results are arrays of shape (points,). NaNs
    (a run that has no figure, e.g. no episode ended) are dropped per column. The generator is
    seeded so a report is reproducible.
    """
    values = np.asarray(values, dtype=float)
    column = values.ndim == 1
    if column:
        values = values[:, None]
    n, points = values.shape
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    medians = np.full(points, np.nan)
    lows, highs = np.full(points, np.nan), np.full(points, np.nan)
    for j in range(points):
        col = values[:, j]
        ok = ~np.isnan(col)
        if not ok.any():
            continue
        if ok.all():
            samples = col[idx]
        else:  # resample among the runs that have the figure
            kept = col[ok]
            samples = kept[rng.integers(0, len(kept), size=(resamples, len(kept)))]
        medians[j] = np.median(col[ok])
        boot = np.median(samples, axis=1)
        alpha = (1.0 - confidence) / 2.0
        lows[j], highs[j] = np.quantile(boot, [alpha, 1.0 - alpha])
    if column:
        return float(medians[0]), float(lows[0]), float(highs[0])
    return medians, lows, highs  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------ runs


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


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _label(runs_by_group: list[list[Run]]) -> list[str]:
    """A short name per group: the overrides (seed aside) that are not the same in every group.

    Hydra's ``overrides.yaml`` says what the user changed (``agent=ppo``), which is shorter than the
    config keys that differ; hand-made runs without it fall back to the differing config keys.
    """
    own = []
    for runs in runs_by_group:
        sets = {tuple(o for o in r.overrides if _override_key(o) not in NOT_GROUPED) for r in runs}
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


# --------------------------------------------------------------------------------------------- figures


def final_figures(results: dict[str, Any]) -> dict[str, float]:
    """The final figures of one run's ``results.json``, by name: ``<split>/return``, ``<split>/success``,
    ``<split>/catastrophe_rate`` for each eval split, ``training/catastrophes`` and ``env_steps_per_second``.

    The same names are what ``objective=`` accepts (``devlearn.config.OBJECTIVES``), so a sweep optimizes
    exactly a figure the report shows.
    """
    out: dict[str, float] = {}
    for split, row in results.get("eval", {}).items():
        for key in EVAL_FIGURES:
            out[f"{split}/{key}"] = _number(row.get(key))
    out["training/catastrophes"] = _number(results.get("training", {}).get("catastrophes"))
    out["env_steps_per_second"] = _number(results.get("env_steps_per_second"))
    return out


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def aggregate(groups: list[Group], resamples: int = 10_000) -> list[str]:
    """Fill each group's ``figures``; return the metric names, in table order."""
    metrics: list[str] = []
    for group in groups:
        per_run = [final_figures(r.results) for r in group.runs]
        for name in per_run[0]:
            if name not in metrics:
                metrics.append(name)
        for name in metrics:
            values = np.array([f.get(name, math.nan) for f in per_run])
            median, low, high = bootstrap_median_ci(values, resamples)
            group.figures[name] = {"median": median, "ci_low": low, "ci_high": high}
    return metrics


# ---------------------------------------------------------------------------------------------- output


def _cell(fig: dict[str, float] | None) -> str:
    if fig is None or math.isnan(fig["median"]):
        return "-"
    size = abs(fig["median"])
    digits = 0 if size >= 100 else 1 if size >= 10 else 3  # rates and returns keep 3 decimals, steps/s none
    return f"{fig['median']:.{digits}f} [{fig['ci_low']:.{digits}f}, {fig['ci_high']:.{digits}f}]"


def table_rows(groups: list[Group], metrics: list[str]) -> tuple[list[str], list[list[str]]]:
    header = ["group", "seeds", *metrics]
    rows = [[g.label, str(len(g.runs)), *(_cell(g.figures.get(m)) for m in metrics)] for g in groups]
    return header, rows


def format_console(groups: list[Group], metrics: list[str]) -> str:
    """One block per group: metric, median and CI, so long labels and many splits stay readable."""
    lines = [f"median [95% bootstrap CI] over seeds; {len(groups)} group(s)"]
    for g in groups:
        lines.append("")
        lines.append(f"{g.label}  ({g.runs[0].env}, {len(g.runs)} seeds: {', '.join(map(str, g.seeds))})")
        for m in metrics:
            lines.append(f"  {m:<28}{_cell(g.figures.get(m))}")
    return "\n".join(lines)


def format_markdown(groups: list[Group], metrics: list[str], env: str, curves: str | None) -> str:
    header, rows = table_rows(groups, metrics)
    out = [
        f"# Report: {env}",
        "",
        f"Median over seeds, with the percentile-bootstrap {int(CONFIDENCE * 100)}% confidence interval of the "
        "median in brackets. `train/*` and `heldout/*`: the final evaluation table per split; "
        "`training/catastrophes`: catastrophes during training; `env_steps_per_second`: training throughput.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    if curves:
        out += ["", f"![learning curves]({curves})"]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------- curves


def read_scalars(run: Run, tags: tuple[str, ...] = CURVE_TAGS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``tag -> (steps, values)`` from the run's TensorBoard events (tags the run never wrote are absent)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # its INFO lines ("No path found after ...") are noise in a report, and a handler left on a closed stream
    # would turn each into a 'Logging error' traceback on stderr
    logging.getLogger("tensorboard").setLevel(logging.WARNING)

    tb = run.path / "tb"
    if not tb.is_dir():
        return {}
    # size_guidance 0 = keep every scalar (the default samples down to 10,000 per tag)
    events = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    events.Reload()
    have = set(events.Tags().get("scalars", []))
    out = {}
    for tag in tags:
        if tag in have:
            points = sorted(
                {e.step: e.value for e in events.Scalars(tag)}.items()
            )  # a resumed run repeats steps
            out[tag] = (np.array([p[0] for p in points], float), np.array([p[1] for p in points], float))
    return out


def curve_bands(
    series: list[tuple[np.ndarray, np.ndarray]], resamples: int = 2_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Median and 95% band over runs of one tag: ``(steps, median, low, high)`` on a common step grid.

    Runs log at their own steps; each curve is linearly interpolated onto ``CURVE_POINTS`` steps
    between the latest first step and the earliest last step, where every run has data.
    """
    series = [(s, v) for s, v in series if len(s)]
    if not series:
        return None
    start = max(s[0] for s, _ in series)
    stop = min(s[-1] for s, _ in series)
    if stop < start:
        return None
    grid = np.linspace(start, stop, CURVE_POINTS) if stop > start else np.array([start])
    values = np.stack([np.interp(grid, s, v) for s, v in series])
    median, low, high = bootstrap_median_ci(values, resamples)
    return grid, median, low, high


def plot_curves(groups: list[Group], path: Path, env: str) -> bool:
    """Draw one panel per tag, one median line with its band per group; False when no run has curves."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt

    scalars = {id(r): read_scalars(r) for g in groups for r in g.runs}
    if not any(scalars.values()):
        return False
    fig, axes = plt.subplots(1, len(CURVE_TAGS), figsize=(5 * len(CURVE_TAGS), 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, tag in zip(axes[0], CURVE_TAGS, strict=True):
        for i, group in enumerate(groups):
            band = curve_bands([scalars[id(r)][tag] for r in group.runs if tag in scalars[id(r)]])
            if band is None:
                continue
            steps, median, low, high = band
            color = colors[i % len(colors)]
            ax.plot(steps, median, color=color, label=f"{group.label} (n={len(group.runs)})")
            ax.fill_between(steps, low, high, color=color, alpha=0.25, linewidth=0)
        ax.set_title(tag)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), frameon=False)
    fig.suptitle(f"{env}: median over seeds, 95% bootstrap band", fontsize=11)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(labels) - 1) // 3), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------------------------ main


def report(
    root: Path, out: Path | None = None, env: str | None = None, resamples: int = 10_000
) -> dict[str, Any]:
    """Aggregate the runs under ``root``; write ``report.json``, ``report.md`` and ``curves.png`` to ``out``.

    Raises ``ReportError`` (one line) for input that cannot be aggregated.
    """
    runs = load_runs(root)
    envs = sorted({r.env for r in runs})
    if env is not None:
        runs = [r for r in runs if r.env == env]
        if not runs:
            raise ReportError(f"--env {env!r} matches no run under {root}. Envs there: {', '.join(envs)}.")
    elif len(envs) > 1:
        counts = ", ".join(f"{e} ({sum(r.env == e for r in runs)} runs)" for e in envs)
        raise ReportError(
            f"{root} mixes runs of {len(envs)} envs: {counts}; their figures do not compare. "
            f"Report one env at a time: devlearn report {root} --env {envs[0]}"
        )
    env_id = runs[0].env
    groups = group_runs(runs)
    metrics = aggregate(groups, resamples)
    out = root if out is None else out
    out.mkdir(parents=True, exist_ok=True)
    has_curves = plot_curves(groups, out / "curves.png", env_id)
    summary = {
        "root": str(root),
        "env": env_id,
        "confidence": CONFIDENCE,
        "statistic": "median over seeds; percentile bootstrap CI of the median",
        "resamples": resamples,
        "groups": [
            {
                "label": g.label,
                "runs": [str(r.path.relative_to(root)) for r in g.runs],
                "seeds": g.seeds,
                "overrides": [o for o in g.runs[0].overrides if _override_key(o) not in NOT_GROUPED],
                "figures": g.figures,
            }
            for g in groups
        ],
        "curves": "curves.png" if has_curves else None,
    }
    (out / "report.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "report.md").write_text(format_markdown(groups, metrics, env_id, summary["curves"]))
    summary["console"] = format_console(groups, metrics)
    return summary


def main(args: list[str]) -> None:
    """``devlearn report DIR [--out OUT] [--env ID] [--resamples N]`` (errors raise ``ReportError``)."""
    if any(a in ("-h", "--help") for a in args):
        print(REPORT_USAGE)
        return
    positional: list[str] = []
    options: dict[str, str] = {}
    it = iter(args)
    for arg in it:
        if arg.startswith("--"):
            name, _, value = arg.partition("=")
            if name not in ("--out", "--env", "--resamples"):
                raise ReportError(
                    f"Unknown option {name!r}. Allowed: --out, --env, --resamples (see devlearn report --help)."
                )
            options[name] = value or next(it, "")
            if not options[name]:
                raise ReportError(f"{name} needs a value (see devlearn report --help).")
        else:
            positional.append(arg)
    if len(positional) != 1:
        raise ReportError(
            f"devlearn report takes one folder, got {len(positional)}: {' '.join(positional) or '(none)'}."
        )
    try:
        resamples = int(options.get("--resamples", 10_000))
    except ValueError:
        raise ReportError(f"--resamples={options['--resamples']!r} must be an integer.") from None
    if resamples < 100:
        raise ReportError(f"--resamples={resamples} is too few for a 95% interval; use at least 100.")
    out = Path(options["--out"]) if "--out" in options else None
    summary = report(Path(positional[0]), out, options.get("--env"), resamples)
    where = out if out is not None else Path(positional[0])
    print(summary["console"])
    written = ["report.json", "report.md"] + (["curves.png"] if summary["curves"] else [])
    print(f"\nwrote {', '.join(str(where / w) for w in written)}")
