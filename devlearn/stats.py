"""Medians with percentile-bootstrap confidence intervals: how devlearn reports a figure over seeds."""

from __future__ import annotations

import numpy as np

CONFIDENCE = 0.95


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
