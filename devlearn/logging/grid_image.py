"""Symbolic grid observations -> RGB images for TensorBoard (predicted vs actual next state).

A MiniGrid-style observation is an integer grid ``(H, W, C)`` whose channel 0 is an object index
(empty, wall, lava, goal, agent, ...). Each cell is painted with a fixed colour per object index,
so a predicted and an actual grid can be compared at a glance: the same palette, scaled up to at
least ``MIN_PANEL`` pixels a side, side by side under the labels "predicted" and "actual".

The agent is drawn as MiniGrid draws it, a triangle pointing its heading, so a wrong heading shows:

* full map (the grid holds an agent cell, ``[AGENT, colour, direction]``, row-major as the bundled
  envs' ``view="full"``): the triangle in that cell, pointing ``direction`` (0 east, 1 south, 2 west,
  3 north), drawn from each panel's own agent cell;
* MiniGrid's egocentric view (a square odd-sided grid with no agent cell, indexed ``[column, row]``):
  shown upright, the agent at the bottom centre pointing up, as MiniGrid renders its agent's view.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Colours by MiniGrid object index (0 unseen, 1 empty, 2 wall, 3 floor, 4 door, 5 key, 6 ball,
# 7 box, 8 goal, 9 lava, 10 agent); indices beyond get a repeating fallback palette.
PALETTE = np.array(
    [
        (0, 0, 0),  # unseen
        (30, 30, 30),  # empty
        (110, 110, 110),  # wall
        (60, 60, 90),  # floor
        (200, 160, 40),  # door
        (240, 220, 0),  # key
        (40, 120, 240),  # ball
        (150, 90, 40),  # box
        (40, 200, 60),  # goal
        (240, 90, 20),  # lava
        (230, 30, 30),  # agent
    ],
    dtype=np.uint8,
)
_FALLBACK = np.array([(120, 40, 200), (40, 200, 200), (200, 40, 140), (160, 200, 40)], dtype=np.uint8)
GAP_COLOUR = (255, 255, 255)
ERROR_COLOUR = (255, 0, 255)
AGENT = 10  # MiniGrid's OBJECT_TO_IDX["agent"]
AGENT_COLOUR = (255, 0, 0)  # MiniGrid's agent triangle
HEADING_COLOUR = (255, 255, 255)  # the triangle's outline: visible on any cell
MIN_PANEL = 320  # pixels on a panel's shorter side
LABEL_HEIGHT = 32
# MiniGrid's agent triangle in a unit cell, pointing east (x right, y down); turned 90 degrees per direction.
TRIANGLE = ((0.12, 0.19), (0.87, 0.50), (0.12, 0.81))


def is_grid(x: np.ndarray) -> bool:
    """Whether ``x`` looks like a symbolic grid: an integer array ``(H, W)`` or ``(H, W, C)``."""
    return np.issubdtype(x.dtype, np.integer) and x.ndim in (2, 3)


def grid_to_rgb(grid: np.ndarray, scale: int = 8) -> np.ndarray:
    """Colour each cell of ``grid`` (``(H, W)`` or ``(H, W, C)``, channel 0 = object index) -> ``(H*s, W*s, 3)`` uint8."""
    index = np.asarray(grid)
    index = index[..., 0] if index.ndim == 3 else index
    index = index.astype(np.int64)
    known = index < len(PALETTE)
    rgb = np.where(
        known[..., None],
        PALETTE[np.clip(index, 0, len(PALETTE) - 1)],
        _FALLBACK[np.abs(index) % len(_FALLBACK)],
    ).astype(np.uint8)
    return rgb.repeat(scale, axis=0).repeat(scale, axis=1)


def panel_scale(shape: tuple[int, ...], min_panel: int = MIN_PANEL) -> int:
    """Pixels per cell so that a grid of ``shape`` is at least ``min_panel`` pixels on its shorter side."""
    return max(8, math.ceil(min_panel / max(1, min(shape[0], shape[1]))))


def is_egocentric(grid: np.ndarray) -> bool:
    """MiniGrid's agent view: a square, odd-sided ``(V, V, C)`` grid without an agent cell (the agent is implied)."""
    return grid.ndim == 3 and grid.shape[0] == grid.shape[1] and grid.shape[0] % 2 == 1 and not agent_cells(grid)


def agent_cells(grid: np.ndarray) -> list[tuple[int, int, int]]:
    """``(row, column, direction)`` of each agent cell of a full-map grid (direction in channel 2, MiniGrid's 0..3)."""
    if grid.ndim != 3 or grid.shape[-1] < 3:
        return []
    rows, cols = np.nonzero(grid[..., 0] == AGENT)
    return [(int(r), int(c), int(grid[r, c, 2]) % 4) for r, c in zip(rows, cols, strict=True)]


def draw_heading(image: Image.Image, row: int, col: int, direction: int, scale: int) -> None:
    """MiniGrid's agent triangle in cell ``(row, col)``, pointing ``direction`` (0 east, 1 south, 2 west, 3 north)."""
    turn = 0.5 * math.pi * direction  # clockwise on screen: y points down
    cos, sin = math.cos(turn), math.sin(turn)
    points = []
    for x, y in TRIANGLE:
        dx, dy = x - 0.5, y - 0.5
        points.append(((col + 0.5 + dx * cos - dy * sin) * scale, (row + 0.5 + dx * sin + dy * cos) * scale))
    ImageDraw.Draw(image).polygon(points, fill=AGENT_COLOUR, outline=HEADING_COLOUR, width=max(1, scale // 16))


def panel(grid: np.ndarray, scale: int, errors: np.ndarray | None = None, egocentric: bool = False) -> Image.Image:
    """One grid as a picture: cells coloured, the agent's heading drawn, ``errors`` cells framed in magenta.

    ``egocentric``: ``grid`` (and ``errors``) are MiniGrid's ``[column, row]`` agent view, shown upright.
    """
    grid = np.asarray(grid)
    if egocentric:
        grid = grid.swapaxes(0, 1)
        errors = None if errors is None else np.asarray(errors).swapaxes(0, 1)
    rgb = grid_to_rgb(grid, scale)
    agents = [(grid.shape[0] - 1, grid.shape[1] // 2, 3)] if egocentric else agent_cells(grid)  # ego: up
    for row, col, _ in agents:  # the triangle stands on the floor, as MiniGrid draws it
        rgb[row * scale : (row + 1) * scale, col * scale : (col + 1) * scale] = PALETTE[1]
    image = Image.fromarray(rgb)
    for row, col, direction in agents:
        draw_heading(image, row, col, direction, scale)
    if errors is not None:
        draw = ImageDraw.Draw(image)
        width = max(2, scale // 10)
        for row, col in zip(*np.nonzero(errors), strict=True):
            box = (col * scale, row * scale, (col + 1) * scale - 1, (row + 1) * scale - 1)
            draw.rectangle(box, outline=ERROR_COLOUR, width=width)
    return image


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, ValueError, OSError):
        return ImageFont.load_default()


def side_by_side(
    predicted: np.ndarray,
    actual: np.ndarray,
    scale: int | None = None,
    gap: int = 8,
    errors: np.ndarray | None = None,
) -> np.ndarray:
    """``predicted | actual`` under the labels "predicted" and "actual", as one ``(H, W, 3)`` uint8 image (HWC).

    ``scale`` (pixels per cell) defaults to ``panel_scale``: at least ``MIN_PANEL`` pixels a side.
    ``errors`` (``(H, W)`` bool) frames the predicted panel's wrong cells in magenta: the palette shows
    only the object index, and a wrong colour or state would otherwise be invisible. The view (full
    map or egocentric) is read from ``actual`` and applies to both panels.
    """
    predicted, actual = np.asarray(predicted), np.asarray(actual)
    scale = panel_scale(actual.shape) if scale is None else scale
    egocentric = is_egocentric(actual)
    left = panel(predicted, scale, errors if errors is not None and errors.any() else None, egocentric)
    right = panel(actual, scale, None, egocentric)
    out = Image.new("RGB", (left.width + gap + right.width, LABEL_HEIGHT + left.height), GAP_COLOUR)
    out.paste(left, (0, LABEL_HEIGHT))
    out.paste(right, (left.width + gap, LABEL_HEIGHT))
    draw, font = ImageDraw.Draw(out), _font(LABEL_HEIGHT - 10)
    for text, x in (("predicted", 0), ("actual", left.width + gap)):
        draw.text((x + 4, 4), text, fill=(0, 0, 0), font=font)
    return np.asarray(out)


def bytes_to_text(x: np.ndarray) -> str:
    """A byte-string observation (1-D integer array) as text: NUL padding dropped, non-ASCII replaced."""
    raw = bytes(int(v) & 0xFF for v in np.asarray(x).reshape(-1))
    return raw.rstrip(b"\x00").decode("ascii", errors="replace")


def _leaf_pairs(predicted: Any, actual: Any) -> list[tuple[Any, Any]]:
    if isinstance(actual, dict):
        return [pair for key in actual for pair in _leaf_pairs(predicted[key], actual[key])]
    return [] if predicted is None else [(predicted, actual)]


def write_predicted_vs_actual(writer: Any, tag: str, predicted: Any, actual: Any, step: int) -> bool:
    """Log one predicted next observation next to the actual one (trees of numpy arrays, no batch dim).

    The first grid leaf becomes an image (``side_by_side``, wrong cells framed); otherwise the first
    byte-string leaf becomes text. Returns whether something was written.
    """
    for p, a in _leaf_pairs(predicted, actual):
        p, a = np.asarray(p), np.asarray(a)
        if is_grid(a):
            wrong = (p != a).any(-1) if a.ndim == 3 else p != a
            writer.add_image(tag, side_by_side(p, a, errors=wrong), step, dataformats="HWC")
            return True
        if a.ndim == 1 and a.dtype == np.uint8:  # a byte string (text)
            writer.add_text(
                tag, f"predicted:\n```\n{bytes_to_text(p)}\n```\nactual:\n```\n{bytes_to_text(a)}\n```", step
            )
            return True
    return False
