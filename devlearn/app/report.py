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

import contextlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from devlearn.app.curves import plot_curves
from devlearn.app.runs import NOT_GROUPED, Group, ReportError, group_runs, load_runs, override_key
from devlearn.errors import write_error
from devlearn.stats import CONFIDENCE, bootstrap_median_ci

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
# The learning curves drawn, from the RunLog's TensorBoard tags (devlearn/logging/runlog.py).
EVAL_FIGURES = ("return", "success", "catastrophe_rate")  # per eval split, from results.json's table


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


# ------------------------------------------------------------------------------------------------ main


def _write_texts(out: Path, texts: dict[str, str]) -> list[str]:
    """Write each file whole or not at all (a kill mid-write leaves the previous one); why each could not be."""
    not_written = []
    for name, text in texts.items():
        try:
            (out / f".{name}.tmp").write_text(text)
            os.replace(out / f".{name}.tmp", out / name)
        except OSError as err:
            with contextlib.suppress(OSError):  # a read-only folder holds no temp file to remove
                (out / f".{name}.tmp").unlink(missing_ok=True)
            not_written.append(str(write_error(err, out / name)))
    return not_written


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
    not_written: list[str] = []  # a read-only or full folder: the table is printed all the same
    try:
        out.mkdir(parents=True, exist_ok=True)
        has_curves = plot_curves(groups, out / "curves.png", env_id)
    except OSError as err:
        has_curves = False
        not_written.append(str(write_error(err, out / "curves.png")))
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
                "overrides": [o for o in g.runs[0].overrides if override_key(o) not in NOT_GROUPED],
                "figures": g.figures,
            }
            for g in groups
        ],
        "curves": "curves.png" if has_curves else None,
    }
    texts = {
        "report.json": json.dumps(summary, indent=2, default=str),
        "report.md": format_markdown(groups, metrics, env_id, summary["curves"]),
    }
    not_written += _write_texts(out, texts)
    summary["console"] = format_console(groups, metrics)
    summary["not_written"] = not_written[:1]  # one line: the first failure says why (the others share it)
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
    if summary["not_written"]:  # the table above is the report; say where it could not be saved, in one line
        print(f"devlearn: {summary['not_written'][0]} The table above is the report; --out DIR writes it elsewhere.", file=sys.stderr)
        sys.exit(1)
    written = ["report.json", "report.md"] + (["curves.png"] if summary["curves"] else [])
    print(f"\nwrote {', '.join(str(where / w) for w in written)}")
