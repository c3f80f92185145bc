"""world_model/predicted_vs_actual: readable, labelled, the agent's heading drawn, wrong cells framed."""

from __future__ import annotations

import numpy as np
import pytest

import devlearn
from devlearn.logging.grid_image import (
    AGENT,
    AGENT_COLOUR,
    ERROR_COLOUR,
    LABEL_HEIGHT,
    MIN_PANEL,
    side_by_side,
)

GAP = 8  # side_by_side's default gap between the panels


def cliff(view: str) -> np.ndarray:
    obs, _ = devlearn.make("devlearn/CliffEdge-v0", view=view).reset(seed=0)
    return obs


def panels(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The predicted and actual panels of a ``side_by_side`` image, labels cut off."""
    body = image[LABEL_HEIGHT:]
    width = (body.shape[1] - GAP) // 2
    return body[:, :width], body[:, width + GAP :]


def cell(panel: np.ndarray, shape: tuple[int, int], row: int, col: int) -> np.ndarray:
    scale = panel.shape[0] // shape[0]
    return panel[row * scale : (row + 1) * scale, col * scale : (col + 1) * scale]


def red(pixels: np.ndarray) -> np.ndarray:
    return (pixels == AGENT_COLOUR).all(-1)


@pytest.mark.parametrize("view", ["egocentric", "full"])
def test_panels_are_large_enough_to_read_and_labelled(view):
    obs = cliff(view)
    image = side_by_side(obs, obs)
    left, right = panels(image)
    assert min(left.shape[:2]) >= MIN_PANEL and left.shape == right.shape
    band = image[:LABEL_HEIGHT]
    dark = (band < 100).all(-1)  # the black label text on white
    half = (image.shape[1] - GAP) // 2
    assert dark[:, :half].sum() > 50 and dark[:, half + GAP :].sum() > 50  # "predicted" over one, "actual" over the other
    assert dark[:, :half].sum() != dark[:, half + GAP :].sum()  # two different words


def test_full_map_heading_is_drawn_from_the_direction_channel():
    """Two observations differing only in the agent's direction give different pictures (a wrong heading shows)."""
    obs = cliff("full")
    (row, col), = np.argwhere(obs[..., 0] == AGENT)
    pictures = []
    for direction in range(4):
        turned = obs.copy()
        turned[row, col, 2] = direction
        left, right = panels(side_by_side(turned, turned))
        assert red(cell(right, obs.shape[:2], row, col)).sum() > 100  # the triangle stands in the agent's cell
        pictures.append(right)
    for a in range(4):
        for b in range(a + 1, 4):
            assert not np.array_equal(pictures[a], pictures[b]), (a, b)
    # east: the triangle's point is on the cell's right, its base on the left
    turned = obs.copy()
    turned[row, col, 2] = 0
    agent = red(cell(panels(side_by_side(turned, turned))[1], obs.shape[:2], row, col))
    third = agent.shape[1] // 3
    assert agent[:, :third].sum() > agent[:, -third:].sum()


def test_a_wrong_predicted_heading_is_drawn_as_predicted_and_framed():
    actual = cliff("full")
    (row, col), = np.argwhere(actual[..., 0] == AGENT)
    predicted = actual.copy()
    predicted[row, col, 2] = (actual[row, col, 2] + 2) % 4  # facing backwards
    image = side_by_side(predicted, actual, errors=(predicted != actual).any(-1))
    left, right = panels(image)
    assert not np.array_equal(cell(left, actual.shape[:2], row, col), cell(right, actual.shape[:2], row, col))
    assert (cell(left, actual.shape[:2], row, col) == ERROR_COLOUR).all(-1).any()
    assert not (right == ERROR_COLOUR).all(-1).any()


def test_egocentric_view_is_upright_with_the_agent_at_the_bottom_pointing_up():
    obs = cliff("egocentric")  # MiniGrid's [column, row] agent view: the agent at (3, 6), facing up
    marked = obs.copy()
    marked[6, 0] = (8, 1, 0)  # a goal at column 6, row 0: the top-right corner, upright
    left, right = panels(side_by_side(marked, marked))
    size = obs.shape[:2]
    green = cell(right, size, 0, 6)
    assert (green == (40, 200, 60)).all(-1).mean() > 0.9
    agent = red(cell(right, size, 6, 3))  # bottom row, centre column
    assert agent.sum() > 100
    third = agent.shape[0] // 3
    assert agent[:third].sum() < agent[-third:].sum()  # the point up, the base down
    assert red(left).sum() == red(right).sum()  # the predicted panel too


def test_wrong_cells_are_framed_in_magenta_on_the_predicted_panel_only():
    actual = cliff("full")
    predicted = actual.copy()
    predicted[1, 1, 0] = 9  # lava where the floor is
    left, right = panels(side_by_side(predicted, actual, errors=(predicted != actual).any(-1)))
    frame = (cell(left, actual.shape[:2], 1, 1) == ERROR_COLOUR).all(-1)
    assert frame[0].all() and frame[-1].all() and frame[:, 0].all() and frame[:, -1].all()
    assert not frame[frame.shape[0] // 2, frame.shape[1] // 2]  # a frame, not a fill
    assert not (right == ERROR_COLOUR).all(-1).any()
