"""Line charts as PNG with Pillow alone (docs pictures, with no plotting library to install).

``line_chart`` draws one or several panels side by side; each panel holds named series of
``(x, y)`` points, solid or dashed, on a linear or log x axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


@dataclass
class Series:
    """One line: its points, its legend label, its colour index and whether it is dashed."""

    label: str
    x: list[float]
    y: list[float]
    color: int = 0
    dashed: bool = False


@dataclass
class Panel:
    """One chart: a title, axis labels and its lines."""

    title: str
    series: list[Series] = field(default_factory=list)
    xlabel: str = "step"
    ylabel: str = ""
    logx: bool = False
    ylim: tuple[float, float] | None = None


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        return [10.0**e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    span = hi - lo or 1.0
    step = 10 ** math.floor(math.log10(span / 4))
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= 6:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _label(v: float) -> str:
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-2):
        return f"{v:.0e}"
    return f"{v:g}"


def _draw_panel(draw: ImageDraw.ImageDraw, panel: Panel, box: tuple[int, int, int, int]) -> None:
    left, top, right, bottom = box
    x0, y0, x1, y1 = left + 60, top + 30, right - 15, bottom - 45  # the plotting area
    xs = [x for s in panel.series for x in s.x if not panel.logx or x > 0]
    ys = [y for s in panel.series for y in s.y if math.isfinite(y)]
    if not xs or not ys:
        return
    xlo, xhi = min(xs), max(xs)
    ylo, yhi = panel.ylim or (min(ys), max(ys))
    if yhi == ylo:
        yhi = ylo + 1
    if xhi == xlo:
        xhi = xlo + 1
    fx = (lambda v: math.log10(v)) if panel.logx else (lambda v: v)

    def to_px(x: float, y: float) -> tuple[float, float]:
        u = (fx(x) - fx(xlo)) / (fx(xhi) - fx(xlo))
        v = (min(max(y, ylo), yhi) - ylo) / (yhi - ylo)
        return x0 + u * (x1 - x0), y1 - v * (y1 - y0)

    draw.text((left + 60, top + 8), panel.title, fill="black")
    draw.rectangle((x0, y0, x1, y1), outline="black")
    for t in _ticks(xlo, xhi, panel.logx):
        if xlo <= t <= xhi:
            px = to_px(t, ylo)[0]
            draw.line((px, y1, px, y1 + 4), fill="black")
            draw.text((px - 12, y1 + 7), _label(t), fill="black")
    for t in _ticks(ylo, yhi, False):
        py = to_px(xlo, t)[1]
        draw.line((x0 - 4, py, x0, py), fill="black")
        draw.line((x0, py, x1, py), fill=(230, 230, 230))
        draw.text((left + 5, py - 6), _label(t), fill="black")
    draw.text(((x0 + x1) // 2 - 20, y1 + 24), panel.xlabel + (" (log)" if panel.logx else ""), fill="black")
    draw.text((left + 5, top + 18), panel.ylabel, fill="black")
    for s in panel.series:
        pts = [
            to_px(x, y)
            for x, y in zip(s.x, s.y, strict=True)
            if math.isfinite(y) and (not panel.logx or x > 0)
        ]
        color = PALETTE[s.color % len(PALETTE)]
        for i, (a, b) in enumerate(zip(pts, pts[1:], strict=False)):
            if not s.dashed or i % 2 == 0:
                draw.line((*a, *b), fill=color, width=2)
    # legend: one row per distinct label, top right
    seen: dict[str, Series] = {}
    for s in panel.series:
        seen.setdefault(s.label, s)
    for i, (label, s) in enumerate(seen.items()):
        ly = y0 + 8 + 14 * i
        color = PALETTE[s.color % len(PALETTE)]
        draw.line((x1 - 150, ly + 6, x1 - 130, ly + 6), fill=color, width=2)
        draw.text((x1 - 125, ly), label, fill="black")


def line_chart(panels: list[Panel], path: Path, panel_size: tuple[int, int] = (520, 360)) -> Path:
    """Draw ``panels`` side by side into the PNG ``path``; returns ``path``."""
    w, h = panel_size
    image = Image.new("RGB", (w * len(panels), h), "white")
    draw = ImageDraw.Draw(image)
    for i, panel in enumerate(panels):
        _draw_panel(draw, panel, (i * w, 0, (i + 1) * w, h))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
