"""MiniGrid's egocentric partial view, computed on arrays so a single env and its batched twin share it.

MiniGrid's agent sees a ``VIEW_SIZE`` x ``VIEW_SIZE`` square (``agent_view_size``, 7 by default) that
extends ``VIEW_SIZE - 1`` cells ahead of it and ``VIEW_SIZE // 2`` cells to each side, rotated so
that the agent always faces "up" the image and stands at ``(VIEW_SIZE // 2, VIEW_SIZE - 1)``. The
image is indexed ``[i, j]`` (column, row), as ``Grid.encode`` returns it; cells beyond the grid read as
walls; the agent's own cell shows what it carries (nothing: MiniGrid's ``empty``). With
``see_through_walls=True`` (the bundled grid worlds set it) every cell of the square is visible.

``egocentric_view`` reproduces ``MiniGridEnv.gen_obs()["image"]`` exactly under those settings (the
env tests check it against MiniGrid itself), for ``N`` worlds at once: one fancy-indexing gather
instead of MiniGrid's per-cell ``Grid.slice`` and four ``rotate_left`` calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

VIEW_SIZE = 7  # MiniGrid's default agent_view_size
VIEWS: tuple[str, ...] = ("egocentric", "full")
WALL_ENCODING = np.array((OBJECT_TO_IDX["wall"], COLOR_TO_IDX["grey"], 0), dtype=np.uint8)
EMPTY_ENCODING = np.array((OBJECT_TO_IDX["empty"], 0, 0), dtype=np.uint8)
# MiniGrid's DIR_TO_VEC (0 east, 1 south, 2 west, 3 north) and right_vec = (-dy, dx) of each.
_FORWARD = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)], dtype=np.int64)
_RIGHT = np.stack([-_FORWARD[:, 1], _FORWARD[:, 0]], axis=1)
# View cell (i, j) lies (VIEW_SIZE - 1 - j) cells ahead of the agent and (i - VIEW_SIZE // 2) to its right.
_I, _J = np.meshgrid(np.arange(VIEW_SIZE), np.arange(VIEW_SIZE), indexing="ij")
_AHEAD = (VIEW_SIZE - 1 - _J).astype(np.int64)
_SIDE = (_I - VIEW_SIZE // 2).astype(np.int64)


def check_view(view: Any) -> str:
    """Return ``view`` if it is a known observation mode, else raise ``ValueError`` naming the allowed ones."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(repr(v) for v in VIEWS)}; got {view!r}.")
    return view


def view_cells(pos: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World ``(x, y)`` of every view cell: two ``(N, VIEW_SIZE, VIEW_SIZE)`` int arrays (may be off-grid)."""
    pos, direction = np.asarray(pos, dtype=np.int64), np.asarray(direction, dtype=np.int64)
    f, r = _FORWARD[direction], _RIGHT[direction]  # (N, 2) each
    x = pos[:, 0, None, None] + f[:, 0, None, None] * _AHEAD + r[:, 0, None, None] * _SIDE
    y = pos[:, 1, None, None] + f[:, 1, None, None] * _AHEAD + r[:, 1, None, None] * _SIDE
    return x, y


def egocentric_view(
    grid_xy: np.ndarray, pos: np.ndarray, direction: np.ndarray, carried: np.ndarray | None = None
) -> np.ndarray:
    """MiniGrid's partial-view image of ``N`` worlds: ``(N, VIEW_SIZE, VIEW_SIZE, 3)`` uint8, indexed ``[i, j]``.

    ``grid_xy`` is ``(N, W, H, 3)``: each world's MiniGrid encoding indexed ``[x, y]`` (a transposed view
    of a row-major grid works as is), with whatever moves (a car, say) already drawn and the agent not
    drawn. ``pos`` is ``(N, 2)`` as ``(x, y)``, ``direction`` ``(N,)`` in MiniGrid's 0..3. ``carried`` is
    ``(N, 3)``: what the agent's own cell shows (default: MiniGrid's ``empty``, i.e. carrying nothing).
    """
    n, width, height = grid_xy.shape[:3]
    x, y = view_cells(pos, direction)
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    rows = np.arange(n)[:, None, None]
    image = grid_xy[rows, np.clip(x, 0, width - 1), np.clip(y, 0, height - 1)]
    image[~inside] = WALL_ENCODING
    image[:, VIEW_SIZE // 2, VIEW_SIZE - 1] = EMPTY_ENCODING if carried is None else carried
    return image


def highlight_mask(width: int, height: int, pos: tuple[int, int], direction: int) -> np.ndarray:
    """``(width, height)`` bool mask of the grid cells in view: what MiniGrid shades in a rendered frame."""
    x, y = view_cells(np.array([pos]), np.array([direction]))
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    mask = np.zeros((width, height), dtype=bool)
    mask[x[inside], y[inside]] = True
    return mask
