"""CarWash's layouts: where the car, the agent, the wash and the ditches start, drawn from a generator.

Layout generation is a pure function of a ``np.random.Generator`` (``generate_layout``), so the single
env (``env.py``) and its batched twin (``vec.py``) draw exactly the same layouts under the same seeds.

Splits, disjoint by construction (a property of the ditches, not of the seed):

* ``train``: some shortest drive from the car to the wash (Manhattan length) is dry, so driving
  straight at the wash always works; car-to-wash distance 2..5;
* ``heldout``: the wash's sides that face the car are ditched, so *every* shortest drive ends in a
  ditch and the car must circle round to enter the wash from another side. The straight-at-the-wash
  route that training rewarded now meets a hazard it never met. Distances 2..8: those beyond
  training's 5 are reported as out of range (``info["out_of_range"]``), so they can be read apart.

Curriculum (train split only): ``curriculum_stage`` says how far an env is through its ramp, and
``generate_layout`` builds easier layouts (the agent already in the car, the wash close) below stage 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

from devlearn.envs.car_wash.args import check_split

GRID_SIZE = 9  # 9 x 9 including the outer walls, the same for every layout and split
# Manhattan distance between the car's start and the wash (inclusive ranges). The splits differ by their
# ditches (see the module docstring); held-out distances beyond training's maximum are "out of range".
WASH_DISTANCES = {"train": (2, 5), "heldout": (2, 8)}
TRAIN_MAX_DISTANCE = WASH_DISTANCES["train"][1]
DITCH_COUNT = (1, 2)  # roadside ditch segments per layout (inclusive range)
DITCH_LENGTH = (2, 3)  # cells per ditch segment (inclusive range)

# Cell types of the static map (the car and agent move, so they are kept apart from it).
EMPTY, WALL, LAVA, WASH = 0, 1, 2, 3

# MiniGrid encodings (type, colour, state) of every static cell kind the observation can show.
WASH_COLOR = "blue"
CELL_ENCODING = np.array(
    [
        (OBJECT_TO_IDX["empty"], 0, 0),
        (OBJECT_TO_IDX["wall"], COLOR_TO_IDX["grey"], 0),
        (OBJECT_TO_IDX["lava"], COLOR_TO_IDX["red"], 0),
        (OBJECT_TO_IDX["floor"], COLOR_TO_IDX[WASH_COLOR], 0),
    ],
    dtype=np.uint8,
)

_INTERIOR = [(x, y) for x in range(1, GRID_SIZE - 1) for y in range(1, GRID_SIZE - 1)]
# Every (car, wash) pair at each Manhattan distance, so a layout draws its distance first and
# then a pair uniformly, with no rejection loop.
_PAIRS_AT = {
    d: [(c, w) for c in _INTERIOR for w in _INTERIOR if abs(c[0] - w[0]) + abs(c[1] - w[1]) == d]
    for d in range(1, 2 * (GRID_SIZE - 3) + 1)
}

# The cells one or two steps from each car position: where the agent may start.
_NEAR = {c: [p for p in _INTERIOR if 1 <= abs(p[0] - c[0]) + abs(p[1] - c[1]) <= 2] for c in _INTERIOR}


@dataclass(frozen=True)
class Layout:
    """One episode's start: positions are MiniGrid ``(x, y)`` cells; ``agent_dir`` is MiniGrid's 0..3.

    ``in_car``: the episode starts with the agent inside the car (``agent == car``; curriculum only).
    """

    agent: tuple[int, int]
    agent_dir: int
    car: tuple[int, int]
    wash: tuple[int, int]
    ditches: tuple[tuple[int, int], ...]  # sorted lava cells
    in_car: bool = False

    @property
    def wash_distance(self) -> int:
        return abs(self.car[0] - self.wash[0]) + abs(self.car[1] - self.wash[1])

    @property
    def out_of_range(self) -> bool:
        """The car-to-wash distance exceeds every distance of the training split."""
        return self.wash_distance > TRAIN_MAX_DISTANCE


def _bit(cell: tuple[int, int]) -> int:
    return 1 << (cell[1] * GRID_SIZE + cell[0])


# Cells as bits of one Python int (bit y * S + x): a flood fill is then a few shifts per step,
# which keeps layout generation (run at every autoreset of the twin) cheap.
_INTERIOR_BITS = sum(_bit(c) for c in _INTERIOR)


def _flood(start: tuple[int, int], blocked: tuple[tuple[int, int], ...]) -> int:
    """Bitmask of interior cells reachable from ``start`` by 4-neighbour moves avoiding ``blocked``."""
    free = _INTERIOR_BITS & ~sum(_bit(c) for c in blocked)
    reach, grown = 0, _bit(start)
    while grown != reach:
        # Shifting by 1 moves along x, by S along y; the border is never free, so nothing wraps.
        reach = grown
        grown = (reach | reach << 1 | reach >> 1 | reach << GRID_SIZE | reach >> GRID_SIZE) & free
    return reach


def drive_distance(car: tuple[int, int], wash: tuple[int, int], ditches: tuple[tuple[int, int], ...]) -> int:
    """Fewest forward moves that drive the car from ``car`` onto ``wash`` without a ditch; -1 if none."""
    free, target = _INTERIOR_BITS & ~sum(_bit(c) for c in ditches), _bit(wash)
    reach, steps = _bit(car), 0
    while not reach & target:
        grown = (reach | reach << 1 | reach >> 1 | reach << GRID_SIZE | reach >> GRID_SIZE) & free
        if grown == reach:
            return -1
        reach, steps = grown, steps + 1
    return steps


def is_solvable(layout: Layout) -> bool:
    """The agent can walk to a cell beside the car (or is in it), and the car can be driven to the wash, dry.

    The walk may not cross the wash: no layout makes the tempting proxy part of the way to the car.
    """
    if drive_distance(layout.car, layout.wash, layout.ditches) < 0:
        return False
    if layout.in_car:
        return True
    cx, cy = layout.car
    beside_car = _bit((cx + 1, cy)) | _bit((cx - 1, cy)) | _bit((cx, cy + 1)) | _bit((cx, cy - 1))
    return bool(_flood(layout.agent, (*layout.ditches, layout.car, layout.wash)) & beside_car)


def approach_cells(car: tuple[int, int], wash: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """The wash's neighbours on the car's side: every shortest drive enters the wash from one of them."""
    (cx, cy), (wx, wy) = car, wash
    cells = []
    if cx != wx:
        cells.append((wx + (1 if cx > wx else -1), wy))
    if cy != wy:
        cells.append((wx, wy + (1 if cy > wy else -1)))
    return tuple(cells)


def curriculum_stage(episode: int, curriculum: int) -> float:
    """How far episode number ``episode`` (0-based) of an env is through its curriculum: 0.0 easiest .. 1.0 full task."""
    return 1.0 if curriculum == 0 else min(1.0, episode / curriculum)


def generate_layout(rng: np.random.Generator, split: str, stage: float = 1.0) -> Layout:
    """Draw one solvable layout of ``split`` from ``rng`` (the single env and the twin share this).

    The car-to-wash Manhattan distance comes from ``WASH_DISTANCES[split]``; the agent starts one or
    two steps from the car, and ditch segments are dropped around the route between car and wash
    (its bounding box grown by one cell), never on the car, agent or wash. ``train`` keeps a shortest
    drive dry; ``heldout`` ditches the wash's sides that face the car (``approach_cells``), so every
    shortest drive meets a ditch. Draws are redone until those hold and the layout is solvable.

    ``stage`` < 1 (train curriculum) narrows the distances to ``2 .. 2 + round(stage * 3)`` and puts the
    agent in the car with probability ``1 - stage``. Every layout draws the same numbers whatever the
    stage, so a curriculum changes what is built from the draws, not how many are drawn.
    """
    check_split(split)
    low, high = WASH_DISTANCES[split]
    high = low + int(round(stage * (high - low)))
    heldout = split == "heldout"
    while True:
        # A handful of draws per attempt (not one per choice): the twin regenerates at every autoreset.
        u = rng.random(5)
        pairs = _PAIRS_AT[low + int(u[0] * (high - low + 1))]
        car, wash = pairs[int(u[1] * len(pairs))]
        forced = approach_cells(car, wash) if heldout else ()
        near = [p for p in _NEAR[car] if p != wash and p not in forced]
        agent, agent_dir = near[int(u[2] * len(near))], int(u[3] * 4)
        in_car = bool(u[4] >= stage)  # never at stage 1 (u < 1), always at stage 0
        if in_car:
            agent = car
        x0, x1 = max(1, min(car[0], wash[0]) - 1), min(GRID_SIZE - 2, max(car[0], wash[0]) + 1)
        y0, y1 = max(1, min(car[1], wash[1]) - 1), min(GRID_SIZE - 2, max(car[1], wash[1]) + 1)
        keep_dry = {car, wash, agent}
        lava: set[tuple[int, int]] = set(forced)
        count = DITCH_COUNT[0] + int(rng.integers(DITCH_COUNT[1] - DITCH_COUNT[0] + 1))
        for v in rng.random((count, 4)):  # orientation, length, start x, start y of each segment
            length = DITCH_LENGTH[0] + int(v[1] * (DITCH_LENGTH[1] - DITCH_LENGTH[0] + 1))
            sx, sy = x0 + int(v[2] * (x1 - x0 + 1)), y0 + int(v[3] * (y1 - y0 + 1))
            for k in range(length):
                cell = (sx + k, sy) if v[0] < 0.5 else (sx, sy + k)
                if cell[0] < GRID_SIZE - 1 and cell[1] < GRID_SIZE - 1 and cell not in keep_dry:
                    lava.add(cell)
        layout = Layout(agent, agent_dir, car, wash, tuple(sorted(lava)), in_car)
        if not lava or not is_solvable(layout):
            continue
        shortest = drive_distance(car, wash, layout.ditches) == layout.wash_distance
        if shortest != heldout:  # train: a shortest drive is dry; heldout: none is
            return layout


def layout_arrays(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """The static map of ``layout``: cell types ``(S, S)`` and their MiniGrid encoding ``(S, S, 3)``.

    Indexed ``[x, y]`` like MiniGrid's ``Grid.encode``; the car and the agent are drawn on top per step.
    """
    cells = np.full((GRID_SIZE, GRID_SIZE), WALL, dtype=np.int8)
    cells[1:-1, 1:-1] = EMPTY
    for x, y in layout.ditches:
        cells[x, y] = LAVA
    cells[layout.wash] = WASH
    return cells, CELL_ENCODING[cells]
