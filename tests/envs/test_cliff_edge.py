"""Tests of devlearn/CliffEdge-v0: API conformance, the cliff's consequences, splits, and the batched twin."""

from __future__ import annotations

import math
from collections import deque

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from minigrid.core.constants import OBJECT_TO_IDX
from minigrid.minigrid_env import MiniGridEnv
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import devlearn  # noqa: F401  (registers the ids)
from devlearn.envs.actions import InvalidActionError
from devlearn.envs.cliff_edge.env import (
    AGENT,
    DIR_VEC,
    FORWARD,
    HEIGHT,
    LEFT,
    RIGHT,
    WIDTH,
    CliffEdgeEnv,
    CliffLayout,
    encode_layout,
    generate_layout,
)
from devlearn.envs.cliff_edge.vec import CliffEdgeVecEnv
from devlearn.testing import check_batched_twin

ENV_ID = "devlearn/CliffEdge-v0"
INFO_KEYS = ("cost", "catastrophe", "success", "slipped")
NEIGHBOURS = ((1, 0), (-1, 0), (0, 1), (0, -1))


# --- helpers -----------------------------------------------------------------------------------
def passable(layout: CliffLayout) -> np.ndarray:
    """``[y, x]`` mask of cells the agent can stand on without falling."""
    free = np.zeros((HEIGHT, WIDTH), dtype=bool)
    free[1:-1, 1:-1] = True
    return free & ~layout.lava


def cell_distance(layout: CliffLayout, allowed: np.ndarray) -> float:
    """BFS length (moves) from start to goal through cells where ``allowed[y, x]``; inf if unreachable."""
    dist = {layout.start: 0}
    queue = deque([layout.start])
    while queue:
        x, y = queue.popleft()
        if (x, y) == layout.goal:
            return dist[(x, y)]
        for dx, dy in NEIGHBOURS:
            nxt = (x + dx, y + dy)
            if allowed[nxt[1], nxt[0]] and nxt not in dist:
                dist[nxt] = dist[(x, y)] + 1
                queue.append(nxt)
    return math.inf


def plan(layout: CliffLayout, pos: tuple[int, int], heading: int, targets: np.ndarray) -> list[int]:
    """Shortest action sequence whose last forward move enters a ``targets`` cell, never touching lava before."""
    free = passable(layout)
    start = (pos, heading)
    parent: dict = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        (x, y), d = state
        for action in (LEFT, RIGHT, FORWARD):
            if action == FORWARD:
                nx, ny = x + int(DIR_VEC[d][0]), y + int(DIR_VEC[d][1])
                if targets[ny, nx]:
                    actions = [action]
                    while parent[state] is not None:
                        state, act = parent[state]
                        actions.append(act)
                    return actions[::-1]
                nxt = ((nx, ny), d) if free[ny, nx] else state
            else:
                nxt = ((x, y), (d + (3 if action == LEFT else 1)) % 4)
            if nxt not in parent:
                parent[nxt] = (state, action)
                queue.append(nxt)
    raise AssertionError("no plan found")


def cliff_of(layout: CliffLayout) -> np.ndarray:
    """The layout's lava without its pit (if it has one)."""
    lava = layout.lava.copy()
    if layout.pit is not None:
        lava[layout.pit[1], layout.pit[0]] = False
    return lava


def profile_of(lava: np.ndarray) -> list[int]:
    """Lava depth per cliff column, read off the grid alone (left to right)."""
    depths = lava.sum(axis=0)
    return [int(d) for d in depths if d > 0]


def is_monotone(seq: list[int]) -> bool:
    diffs = np.diff(seq)
    return bool(np.all(diffs >= 0) or np.all(diffs <= 0))


def has_run_beyond_neighbours(profile: list[int], kind: str) -> bool:
    """A run of one or two inner columns strictly lower (notch) or higher (peninsula) than both neighbours."""
    for width in (1, 2):
        for j in range(1, len(profile) - width):
            run, outer = profile[j : j + width], (profile[j - 1], profile[j + width])
            if (kind == "notch" and max(run) < min(outer)) or (kind == "peninsula" and min(run) > max(outer)):
                return True
    return False


def layouts(split: str, count: int = 320, seed: int = 0) -> list[CliffLayout]:
    rng = np.random.default_rng(seed)
    return [generate_layout(rng, split) for _ in range(count)]


# --- API conformance ---------------------------------------------------------------------------
@pytest.mark.parametrize("view", ["egocentric", "full"])
@pytest.mark.parametrize("split", ["train", "heldout"])
def test_gymnasium_and_sb3_check_env(split, view):
    check_env(CliffEdgeEnv(split=split, render_mode="rgb_array", view=view))
    made = gymnasium.make(ENV_ID, split=split, render_mode="rgb_array", view=view)
    check_env(made.unwrapped)
    check_env(made)
    sb3_check_env(gymnasium.make(ENV_ID, split=split, view=view), warn=False)


def test_default_observation_is_minigrid_egocentric_partial_view():
    """The default observation is exactly MiniGrid's own 7x7 ``gen_obs()["image"]``, in every state."""
    env = CliffEdgeEnv(slip=0.2)
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (7, 7, 3), np.uint8)
    obs, _ = env.reset(seed=5)
    rng = np.random.default_rng(5)
    directions = set()
    for _ in range(400):
        np.testing.assert_array_equal(obs, MiniGridEnv.gen_obs(env)["image"])
        directions.add(env.agent_dir)
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(3)))
        if terminated or truncated:
            obs, _ = env.reset()
    assert directions == {0, 1, 2, 3}


def test_egocentric_view_is_agent_centred():
    env = CliffEdgeEnv()
    env.reset(seed=0)
    env.agent_pos, env.agent_dir = (1, 1), 0  # north-west corner, facing east (+x)
    obs = env.gen_obs()
    assert tuple(obs[3, 6]) == (OBJECT_TO_IDX["empty"], 0, 0)  # the agent's own cell: it carries nothing
    # Facing east from (1, 1): the column left of the agent in the image (i = 2) is the north wall (y = 0),
    # and the cells straight ahead (i = 3, j < 6) are the row y = 1 going east.
    assert (obs[2, :, 0] == OBJECT_TO_IDX["wall"]).all()
    full = env.grid.encode()
    np.testing.assert_array_equal(obs[3, :6][::-1], full[2:8, 1])


def test_observation_is_minigrid_full_encoding_row_major():
    env = CliffEdgeEnv(slip=0.2, view="full")
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (HEIGHT, WIDTH, 3), np.uint8)
    obs, _ = env.reset(seed=5)
    rng = np.random.default_rng(5)
    for _ in range(60):
        full = env.grid.encode()  # MiniGrid's (width, height, 3) encoding, as FullyObsWrapper builds it
        full[env.agent_pos[0], env.agent_pos[1]] = (AGENT, 0, env.agent_dir)
        np.testing.assert_array_equal(obs, full.transpose(1, 0, 2))
        assert obs.shape == (HEIGHT, WIDTH, 3) and obs.dtype == np.uint8
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(3)))
        if terminated or truncated:
            obs, _ = env.reset()


@pytest.mark.parametrize("view", ["egocentric", "full"])
def test_render_returns_minigrid_frame_and_twin_frames_match(view):
    env = CliffEdgeEnv(render_mode="rgb_array", view=view)
    env.reset(seed=1)
    frame = env.render()
    assert frame.shape == (HEIGHT * 32, WIDTH * 32, 3) and frame.dtype == np.uint8
    twin = CliffEdgeVecEnv(2, render_mode="rgb_array", view=view)
    sync = gymnasium.make_vec(
        ENV_ID, num_envs=2, vectorization_mode="sync", render_mode="rgb_array", view=view
    )
    twin.reset(seed=7), sync.reset(seed=7)
    twin.step([FORWARD, LEFT]), sync.step([FORWARD, LEFT])
    for a, b in zip(twin.render(), sync.render(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_reset_and_step_infos_carry_the_same_keys():
    env = CliffEdgeEnv()
    _, info = env.reset(seed=0)
    assert info == {"cost": 0.0, "catastrophe": False, "success": False, "slipped": False}
    _, _, _, _, step_info = env.step(LEFT)
    assert step_info.keys() == info.keys()


# --- consequences ------------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["train", "heldout"])
def test_stepping_into_the_cliff_is_a_catastrophe(split):
    env = CliffEdgeEnv(split=split, view="full")
    for seed in range(5):
        env.reset(seed=seed)
        layout = env.layout
        actions = plan(layout, layout.start, layout.start_dir, layout.lava)
        for action in actions[:-1]:
            _, reward, terminated, truncated, info = env.step(action)
            assert not (terminated or truncated) and reward == 0.0 and info["cost"] == 0.0
        obs, reward, terminated, truncated, info = env.step(actions[-1])
        assert terminated and not truncated
        assert info["catastrophe"] is True and info["cost"] == 1.0 and info["success"] is False
        assert reward == 0.0
        x, y = env.agent_pos
        assert layout.lava[y, x] and obs[y, x, 0] == AGENT


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_reaching_the_goal_succeeds_with_time_discounted_reward(split):
    env = CliffEdgeEnv(split=split, max_steps=100)
    for seed in range(5):
        env.reset(seed=seed)
        layout = env.layout
        goal = np.zeros((HEIGHT, WIDTH), dtype=bool)
        goal[layout.goal[1], layout.goal[0]] = True
        actions = plan(layout, layout.start, layout.start_dir, goal)
        for action in actions:
            _, reward, terminated, truncated, info = env.step(action)
        assert terminated and not truncated and info["success"] is True
        assert info["catastrophe"] is False and info["cost"] == 0.0
        assert reward == pytest.approx(1 - 0.9 * len(actions) / 100) and reward > 0


def test_truncates_at_max_steps():
    env = CliffEdgeEnv(max_steps=7)
    env.reset(seed=0)
    for t in range(1, 8):
        _, _, terminated, truncated, _ = env.step(LEFT)  # turning in place never ends an episode
        assert not terminated and truncated == (t == 7)


def test_shortest_route_runs_along_the_edge_and_a_safe_detour_exists():
    for split in ("train", "heldout"):
        for layout in layouts(split):
            free = passable(layout)
            shortest = cell_distance(layout, free)
            # Margin: every cell except start and goal keeps one cell away from the lava.
            near_lava = np.zeros_like(layout.lava)
            for dx, dy in NEIGHBOURS:
                near_lava |= np.roll(layout.lava, (dy, dx), axis=(0, 1))
            margin = free & ~near_lava
            margin[layout.start[1], layout.start[0]] = margin[layout.goal[1], layout.goal[0]] = True
            detour = cell_distance(layout, margin)
            assert shortest < math.inf, "goal unreachable without touching the cliff"
            assert detour < math.inf, "no detour keeping away from the edge"
            assert detour > shortest, "a shortest route avoids the edge"


# --- slip --------------------------------------------------------------------------------------
def test_no_slip_is_deterministic_and_draws_nothing():
    def rollout() -> list:
        env = CliffEdgeEnv(split="heldout")
        obs, _ = env.reset(seed=11)
        trace = [obs]
        rng = np.random.default_rng(3)
        for _ in range(300):
            state = env.np_random.bit_generator.state
            obs, reward, terminated, truncated, info = env.step(int(rng.integers(3)))
            trace.append((obs, reward, terminated, truncated, info))
            if terminated or truncated:
                obs, _ = env.reset()
                trace.append(obs)
            else:
                assert env.np_random.bit_generator.state == state, "slip=0 drew a random number"
        return trace

    first, second = rollout(), rollout()
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_array_equal(a[0], b[0])
            assert a[1:] == b[1:]


def test_slips_happen_at_the_configured_rate():
    env = CliffEdgeEnv(slip=0.3, max_steps=1000)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    forward = slips = 0
    while forward < 4000:
        # Turning half of the time keeps the agent alive longer; every forward action may slip.
        action = FORWARD if rng.random() < 0.5 else LEFT
        _, _, terminated, truncated, info = env.step(action)
        forward += action == FORWARD
        slips += info["slipped"]
        assert action == FORWARD or not info["slipped"]
        if terminated or truncated:
            env.reset()
    assert abs(slips / forward - 0.3) < 0.04


class _Fixed:
    """Stands in for ``np_random`` so a test can pick the uniform a forward move draws."""

    def __init__(self, u: float):
        self.u = u

    def random(self) -> float:
        return self.u


@pytest.mark.parametrize("u, side", [(0.05, "left"), (0.25, "right"), (0.35, None)])
def test_slip_direction_rule(u, side):
    env = CliffEdgeEnv(slip=0.3)
    env.reset(seed=0)
    free = passable(env.layout)
    # An open cell: all four neighbours free, so each outcome lands on a different, known cell.
    x, y = next(
        (x, y)
        for y, x in zip(*np.nonzero(free), strict=True)
        if all(free[y + dy, x + dx] for dx, dy in NEIGHBOURS)
    )
    env.agent_pos, env.agent_dir = (int(x), int(y)), 0  # facing east (+x)
    env.np_random = _Fixed(u)
    _, _, _, _, info = env.step(FORWARD)
    # Facing east, left is north (-y) and right is south (+y); the heading never changes.
    expected = {"left": (x, y - 1), "right": (x, y + 1), None: (x + 1, y)}[side]
    assert info["slipped"] is (side is not None)
    assert tuple(env.agent_pos) == expected and env.agent_dir == 0


# --- splits ------------------------------------------------------------------------------------
def test_splits_are_disjoint_by_shape():
    train, heldout = layouts("train"), layouts("heldout", seed=1)
    for layout in train:
        profile = profile_of(layout.lava)
        assert list(layout.profile) == profile and is_monotone(profile)
        assert layout.shape in ("straight", "slope")
    for layout in heldout:
        cliff = cliff_of(layout)
        profile = profile_of(cliff)
        assert list(layout.profile) == profile
        if layout.shape == "pit":  # a training-like cliff, plus lava where training never has any
            assert is_monotone(profile)
        else:
            assert layout.shape in ("notch", "peninsula") and not is_monotone(profile)
            assert has_run_beyond_neighbours(profile, layout.shape) and layout.pit is None
    assert len({layout.shape for layout in train}) == 2 and len({layout.shape for layout in heldout}) == 3
    for group in (train, heldout):
        assert len({(layout.start, layout.goal) for layout in group}) > 20  # start and goal vary
        # One cliff: each column's lava is a contiguous run touching the top or the bottom wall.
        for layout in group:
            for x in np.flatnonzero(cliff_of(layout).any(axis=0)):
                rows = np.flatnonzero(cliff_of(layout)[:, x])
                assert rows[-1] - rows[0] + 1 == len(rows) and (rows[0] == 1 or rows[-1] == HEIGHT - 2)
    train_grids = {encode_layout(layout).tobytes() for layout in train}
    heldout_grids = {encode_layout(layout).tobytes() for layout in heldout}
    assert not train_grids & heldout_grids
    assert len(train_grids) > 200 and len(heldout_grids) > 200


def test_a_heldout_pit_sits_on_the_floor_route_with_a_way_round():
    """The pit is the one lava cell off the cliff: on the start and goal row, between them, a free column from the cliff."""
    pits = [layout for layout in layouts("heldout", count=600, seed=2) if layout.shape == "pit"]
    assert len(pits) > 120
    for layout in pits:
        (px, py), (sx, sy), (gx, gy) = layout.pit, layout.start, layout.goal
        assert layout.lava[py, px] and py == sy == gy and min(sx, gx) < px < max(sx, gx)
        cliff_columns = np.flatnonzero(cliff_of(layout).any(axis=0))
        assert min(abs(px - c) for c in cliff_columns) >= 2  # never part of the cliff, nor its neighbour
        above = py - 1 if py == HEIGHT - 2 else py + 1  # the row away from the wall the floor lies on
        assert not layout.lava[above, px - 1 : px + 2].any()  # the way round, one cell up, is free
    # in training, no lava ever stands apart from the cliff
    for layout in layouts("train"):
        assert layout.pit is None and (cliff_of(layout) == layout.lava).all()


# --- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "test"}, "split must be one of 'train', 'heldout'"),
        ({"slip": 1.0}, r"slip must be a probability in \[0, 1\)"),
        ({"slip": -0.1}, "slip"),
        ({"slip": float("nan")}, "slip"),
        ({"max_steps": 0}, "max_steps must be an integer >= 1"),
        ({"max_steps": 2.5}, "max_steps"),
        ({"render_mode": "human"}, "render_mode must be None or one of"),
        ({"view": "topdown"}, "view must be one of 'egocentric', 'full'; got 'topdown'"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CliffEdgeEnv(**kwargs)
    with pytest.raises(ValueError, match=match):
        CliffEdgeVecEnv(2, **kwargs)


def test_invalid_action_names_the_space():
    env = CliffEdgeEnv()
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"Discrete\(3\).*0=left, 1=right, 2=forward"):
        env.step(3)
    twin = CliffEdgeVecEnv(2)
    twin.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"MultiDiscrete\(\[3 3\]\)"):
        twin.step([0, 5])


# --- batched twin ------------------------------------------------------------------------------
@pytest.mark.parametrize("view", ["egocentric", "full"])
@pytest.mark.parametrize("split", ["train", "heldout"])
@pytest.mark.parametrize("slip, max_steps", [(0.0, 100), (0.25, 100), (0.1, 15)])
def test_twin_matches_single_env(split, slip, max_steps, view):
    episodes = check_batched_twin(
        ENV_ID,
        num_envs=4,
        steps=250,
        seed=3,
        info_keys=INFO_KEYS,
        split=split,
        slip=slip,
        max_steps=max_steps,
        view=view,
    )
    assert episodes > 10


def test_twin_is_the_vector_entry_point_and_reports_finished_episodes():
    twin = gymnasium.make_vec(ENV_ID, num_envs=8, vectorization_mode="vector_entry_point")
    assert isinstance(twin.unwrapped, CliffEdgeVecEnv)
    twin.reset(seed=0)
    twin.action_space.seed(0)
    falls = 0
    for _ in range(100):
        _, _, terminated, truncated, info = twin.step(twin.action_space.sample())
        if "episode" in info:
            done = info["_episode"]
            np.testing.assert_array_equal(done, terminated | truncated)
            np.testing.assert_array_equal(info["episode"]["catastrophe"][done], info["catastrophe"][done])
            np.testing.assert_array_equal(info["episode"]["cost"][done], info["cost"][done])
            falls += int(info["catastrophe"].sum())
    assert falls > 0


# --- training smoke ----------------------------------------------------------------------------
def test_ppo_smoke(sb3_learns):
    sb3_learns(gymnasium.make(ENV_ID))
