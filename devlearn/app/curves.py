"""Learning curves for ``devlearn report``: the median over seeds with a bootstrap band, from TensorBoard events."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from devlearn.app.runs import Group, Run
from devlearn.stats import bootstrap_median_ci

CURVE_TAGS = ("rollout/return", "rollout/success_rate", "rollout/catastrophe_rate")
CURVE_POINTS = 100  # curves are interpolated onto this many common env-step points


def read_scalars(run: Run, tags: tuple[str, ...] = CURVE_TAGS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``tag -> (steps, values)`` from the run's TensorBoard events (tags the run never wrote are absent)."""
    # deferred: TensorBoard's event reader loads only when curves are read
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
    import matplotlib  # deferred: matplotlib loads only when curves are drawn

    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt  # deferred, likewise (after the backend is chosen)

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
    tmp = path.with_name(f".{path.name}.tmp.png")  # whole or not at all, like every file devlearn writes
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return True
