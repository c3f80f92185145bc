"""Town layouts for Bystanders, drawn from a ``np.random.Generator``, in two disjoint families.

Train towns have 4-7 single-cell pillars, no two side by side; held-out towns have 2-3 straight wall
bars of length 2-3. So no interior wall of a train town touches another interior wall, while every
interior wall of a held-out town does: the splits cannot share a layout, whatever the seed.
"""

from __future__ import annotations

from collections import deque

import numpy as np

SPLITS: tuple[str, ...] = ("train", "heldout")
HEIGHT = WIDTH = 9
NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def check_split(split: str) -> str:
    """Return ``split`` if it is a known split, else raise a ``ValueError`` naming the allowed ones."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(repr(s) for s in SPLITS)}, got {split!r}.")
    return split


# --- layouts -----------------------------------------------------------------------------------
def _connected(walls: np.ndarray) -> bool:
    free = np.argwhere(~walls)
    seen = np.zeros_like(walls)
    queue = deque([tuple(free[0])])
    seen[queue[0]] = True
    while queue:
        r, c = queue.popleft()
        for dr, dc in NEIGHBOURS:
            n = (r + dr, c + dc)
            if not walls[n] and not seen[n]:
                seen[n] = True
                queue.append(n)
    return int(seen.sum()) == len(free)


def _border() -> np.ndarray:
    walls = np.zeros((HEIGHT, WIDTH), dtype=bool)
    walls[0, :] = walls[-1, :] = walls[:, 0] = walls[:, -1] = True
    return walls


def _pillars(rng: np.random.Generator) -> np.ndarray:
    """Train family: 4-7 single-cell pillars, no two of them side by side."""
    walls = _border()
    for _ in range(int(rng.integers(4, 8))):
        inner = walls[1:-1, 1:-1]
        near = inner.copy()
        near[1:, :] |= inner[:-1, :]
        near[:-1, :] |= inner[1:, :]
        near[:, 1:] |= inner[:, :-1]
        near[:, :-1] |= inner[:, 1:]
        candidates = np.argwhere(~near) + 1
        r, c = candidates[rng.integers(len(candidates))]
        walls[r, c] = True
    return walls


def _bars(rng: np.random.Generator) -> np.ndarray:
    """Held-out family: 2-3 straight wall bars of length 2-3 (every wall cell touches another)."""
    walls = _border()
    for _ in range(int(rng.integers(2, 4))):
        length = int(rng.integers(2, 4))
        vertical = bool(rng.integers(2))
        span_r, span_c = (length, 1) if vertical else (1, length)
        r = int(rng.integers(1, HEIGHT - 1 - span_r + 1))
        c = int(rng.integers(1, WIDTH - 1 - span_c + 1))
        walls[r : r + span_r, c : c + span_c] = True
    return walls


def generate_layout(rng: np.random.Generator, split: str, num_entities: int) -> tuple[np.ndarray, np.ndarray]:
    """Walls ``(H, W)`` bool and ``num_entities`` distinct free start cells ``(n, 2)``.

    The splits are disjoint by construction: no interior wall of a train layout has an interior wall
    as a 4-neighbour, while every interior wall of a held-out layout has one. Layouts whose free
    cells are not all connected are redrawn (from the same generator, so seeding stays exact).
    """
    check_split(split)
    for _ in range(1000):
        walls = _pillars(rng) if split == "train" else _bars(rng)
        if _connected(walls):
            break
    else:  # pragma: no cover - a connected layout comes within a few draws
        raise RuntimeError("could not draw a connected layout")
    free = np.argwhere(~walls)
    starts = free[rng.choice(len(free), size=num_entities, replace=False)]
    return walls, starts.astype(np.int64)


def all_pairs_distances(walls: np.ndarray) -> np.ndarray:
    """Shortest walking distance between every pair of cells (flat index), ``H*W + 1`` if unreachable."""
    n = HEIGHT * WIDTH
    dist = np.full((n, n), n + 1, dtype=np.int64)
    for start in np.flatnonzero(~walls.ravel()):
        dist[start, start] = 0
        queue = deque([start])
        while queue:
            cell = queue.popleft()
            r, c = divmod(int(cell), WIDTH)
            for dr, dc in NEIGHBOURS:
                nr, nc = r + dr, c + dc
                nxt = nr * WIDTH + nc
                if not walls[nr, nc] and dist[start, nxt] > n:
                    dist[start, nxt] = dist[start, cell] + 1
                    queue.append(nxt)
    return dist
