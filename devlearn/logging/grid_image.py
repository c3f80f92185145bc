"""Symbolic grid observations -> RGB images for TensorBoard (predicted vs actual next state).

A MiniGrid-style observation is an integer grid ``(H, W, C)`` whose channel 0 is an object index
(empty, wall, lava, goal, agent, ...). Each cell is painted with a fixed colour per object index,
so a predicted and an actual grid can be compared at a glance: the same palette, scaled up, side
by side with a gap between the panels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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


def side_by_side(
    predicted: np.ndarray,
    actual: np.ndarray,
    scale: int = 8,
    gap: int = 4,
    errors: np.ndarray | None = None,
) -> np.ndarray:
    """``[predicted | gap | actual]`` as one ``(H*s, 2*W*s + gap, 3)`` uint8 image (HWC).

    ``errors`` (``(H, W)`` bool) frames the predicted panel's wrong cells in magenta: the palette
    shows only the object index, and a wrong colour or direction would otherwise be invisible.
    """
    left, right = grid_to_rgb(predicted, scale), grid_to_rgb(actual, scale)
    if errors is not None and errors.any():
        frame = np.zeros((scale, scale), dtype=bool)
        frame[[0, -1], :] = frame[:, [0, -1]] = True
        outline = np.kron(np.asarray(errors, dtype=bool), frame).astype(bool)
        left[outline] = ERROR_COLOUR
    spacer = np.empty((left.shape[0], gap, 3), dtype=np.uint8)
    spacer[:] = GAP_COLOUR
    return np.concatenate([left, spacer, right], axis=1)


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
