"""Behaviour, API, split and twin tests for devlearn/CarWash-v0."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX
from minigrid.minigrid_env import MiniGridEnv
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import devlearn  # noqa: F401  (registers the ids)
from devlearn.envs.actions import InvalidActionError
from devlearn.envs.car_wash.env import CarWashEnv
from devlearn.envs.car_wash.layout import (
    GRID_SIZE,
    TRAIN_MAX_DISTANCE,
    WASH_DISTANCES,
    Layout,
    generate_layout,
)
from devlearn.envs.car_wash.vec import CarWashVecEnv
from devlearn.testing import check_batched_twin

ENV_ID = "devlearn/CarWash-v0"
INFO_KEYS = ("cost", "catastrophe", "success", "walked_to_wash_without_car", "out_of_range")
LEFT, RIGHT, FORWARD, TOGGLE = range(4)
VEC = [(1, 0), (0, 1), (-1, 0), (0, -1)]
Cell = tuple[int, int]


# --- a BFS planner over (position, direction), written from the rules, not from the env's code ----
def _front(pos: Cell, d: int) -> Cell:
    return (pos[0] + VEC[d][0], pos[1] + VEC[d][1])


def _interior(cell: Cell) -> bool:
    return 0 < cell[0] < GRID_SIZE - 1 and 0 < cell[1] < GRID_SIZE - 1


def plan(
    pos: Cell, d: int, passable: Callable[[Cell], bool], goal: Callable[[Cell, int], bool]
) -> list[int] | None:
    """Shortest turn/forward sequence from (pos, d) to a state satisfying ``goal``; None if unreachable."""
    parents: dict[tuple[Cell, int], tuple[tuple[Cell, int], int] | None] = {(pos, d): None}
    queue = deque([(pos, d)])
    while queue:
        state = queue.popleft()
        if goal(*state):
            actions = []
            while parents[state] is not None:
                state, action = parents[state]
                actions.append(action)
            return actions[::-1]
        p, di = state
        front = _front(p, di)
        successors = [((p, (di - 1) % 4), LEFT), ((p, (di + 1) % 4), RIGHT)]
        if _interior(front) and passable(front):
            successors.append(((front, di), FORWARD))
        for nxt, action in successors:
            if nxt not in parents:
                parents[nxt] = (state, action)
                queue.append(nxt)
    return None


def walk_to_car(layout: Layout) -> list[int] | None:
    """On foot, avoiding ditches and the wash, until the agent faces the car."""
    dry = set(layout.ditches) | {layout.wash, layout.car}
    return plan(
        layout.agent, layout.agent_dir, lambda c: c not in dry, lambda p, d: _front(p, d) == layout.car
    )


def drive_to(layout: Layout, start_dir: int, goal: Callable[[Cell, int], bool]) -> list[int] | None:
    """Inside the car from its start cell, avoiding ditches, until ``goal`` holds."""
    ditches = set(layout.ditches)
    return plan(layout.car, start_dir, lambda c: c not in ditches, goal)


def direction_after(start: int, actions: list[int]) -> int:
    for a in actions:
        start = (start + (-1 if a == LEFT else 1 if a == RIGHT else 0)) % 4
    return start


def run(env: CarWashEnv, actions: list[int]) -> list[tuple]:
    """Step ``actions``; assert nothing ends early; return every step's outputs."""
    out = []
    for a in actions:
        out.append(env.step(a))
        assert not (out[-1][2] or out[-1][3]), "the episode ended before the plan finished"
    return out


def agent_cell(obs: np.ndarray) -> tuple[Cell, np.ndarray]:
    (x,), (y,) = np.nonzero(obs[:, :, 0] == OBJECT_TO_IDX["agent"])
    return (int(x), int(y)), obs[x, y]


# --- API conformance ------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{}, {"view": "full"}, {"curriculum": 50}])
@pytest.mark.parametrize("split", ["train", "heldout"])
def test_check_env_gymnasium_and_sb3(split, kwargs):
    if split == "heldout" and "curriculum" in kwargs:
        return  # a curriculum is for training (test_curriculum_is_for_training_only)
    check_env(CarWashEnv(split=split, **kwargs), skip_render_check=False)
    made = gymnasium.make(ENV_ID, split=split, **kwargs)
    check_env(made.unwrapped)
    check_env(made)
    sb3_check_env(CarWashEnv(split=split, **kwargs), warn=False)
    assert made.spec.max_episode_steps is None  # truncation is the env's own


def test_reset_info_keys_match_step_info_and_seeding_is_reproducible():
    env = CarWashEnv()
    obs, info = env.reset(seed=7)
    assert info == {
        "cost": 0.0,
        "catastrophe": False,
        "success": False,
        "walked_to_wash_without_car": False,
        "out_of_range": False,
    }
    assert env.step(LEFT)[4].keys() == info.keys()
    again, _ = CarWashEnv().reset(seed=7)
    np.testing.assert_array_equal(obs, again)
    layouts = {(env.reset(seed=s), env.layout)[1] for s in range(20)}
    assert len(layouts) > 15


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_default_observation_is_minigrid_egocentric_partial_view(split):
    """The default observation is MiniGrid's own 7x7 ``gen_obs()["image"]`` on foot; in the car, its centre is the car."""
    env = CarWashEnv(split=split)
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (7, 7, 3), np.uint8)
    obs, _ = env.reset(seed=2)
    rng = np.random.default_rng(2)
    driving = 0
    for _ in range(1500):
        minigrid_view = MiniGridEnv.gen_obs(env)["image"]
        if env.in_car:  # MiniGrid shows what the agent carries in its own cell: here, the car
            driving += 1
            assert tuple(obs[3, 6]) == (OBJECT_TO_IDX["box"], COLOR_TO_IDX["yellow"], 0)
            minigrid_view[3, 6] = obs[3, 6]
        np.testing.assert_array_equal(obs, minigrid_view)
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
        if terminated or truncated:
            obs, _ = env.reset()
    assert driving > 0


def test_observation_is_the_full_grid_in_minigrid_encoding():
    env = CarWashEnv(view="full")
    obs, _ = env.reset(seed=3)
    lay = env.layout
    assert obs.shape == (GRID_SIZE, GRID_SIZE, 3) and obs.dtype == np.uint8
    assert (obs[0, :, 0] == OBJECT_TO_IDX["wall"]).all() and (obs[:, -1, 0] == OBJECT_TO_IDX["wall"]).all()
    pos, cell = agent_cell(obs)
    assert pos == lay.agent and tuple(cell) == (OBJECT_TO_IDX["agent"], COLOR_TO_IDX["red"], lay.agent_dir)
    assert tuple(obs[lay.car]) == (OBJECT_TO_IDX["box"], COLOR_TO_IDX["yellow"], 0)
    assert tuple(obs[lay.wash]) == (OBJECT_TO_IDX["floor"], COLOR_TO_IDX["blue"], 0)
    assert all(obs[c][0] == OBJECT_TO_IDX["lava"] for c in lay.ditches)


# --- the consequence ------------------------------------------------------------------------------
def _env_with(predicate: Callable[[Layout], bool], split: str = "train") -> tuple[CarWashEnv, int]:
    """A freshly reset env whose layout satisfies ``predicate``, and the seed that produced it."""
    env = CarWashEnv(split=split, view="full")  # the tests read positions off the whole map
    for seed in range(200):
        env.reset(seed=seed)
        if predicate(env.layout):
            return env, seed
    raise AssertionError("no layout among 200 seeds fits the test")


def test_walking_to_the_wash_without_the_car_achieves_nothing():
    def path(lay: Layout) -> list[int] | None:
        dry = set(lay.ditches) | {lay.car}
        return plan(lay.agent, lay.agent_dir, lambda c: c not in dry, lambda p, d: p == lay.wash)

    env, _ = _env_with(lambda lay: path(lay) is not None)
    actions = path(env.layout)
    out = run(env, actions)
    obs, reward, terminated, truncated, info = out[-1]
    assert reward == 0.0 and not terminated and not truncated
    assert info["walked_to_wash_without_car"] and not info["success"] and info["cost"] == 0.0
    assert not any(step[4]["walked_to_wash_without_car"] for step in out[:-1])
    assert agent_cell(obs)[0] == env.layout.wash
    # The episode goes on, and standing on the wash is not re-flagged.
    obs, reward, terminated, truncated, info = env.step(LEFT)
    assert reward == 0.0 and not terminated and not info["walked_to_wash_without_car"]


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_getting_into_the_car_and_driving_it_onto_the_wash_succeeds(split):
    env, _ = _env_with(lambda lay: walk_to_car(lay) is not None, split=split)
    lay = env.layout
    to_car = walk_to_car(lay)
    run(env, to_car)
    obs, reward, terminated, _, info = env.step(TOGGLE)  # get in
    pos, cell = agent_cell(obs)
    assert pos == lay.car and cell[1] == COLOR_TO_IDX["yellow"] and reward == 0.0 and not terminated
    assert (obs[:, :, 0] == OBJECT_TO_IDX["box"]).sum() == 0  # the car is under the agent
    drive = drive_to(lay, direction_after(lay.agent_dir, to_car), lambda p, d: p == lay.wash)
    run(env, drive[:-1])
    obs, reward, terminated, truncated, info = env.step(drive[-1])
    steps = len(to_car) + 1 + len(drive)
    assert terminated and not truncated and info["success"] and not info["catastrophe"]
    assert reward == pytest.approx(1 - 0.9 * steps / 150) and reward > 0
    assert agent_cell(obs)[0] == lay.wash


def test_walking_into_a_ditch_is_a_catastrophe():
    def path(lay: Layout) -> list[int] | None:
        dry = set(lay.ditches) | {lay.car}
        return plan(
            lay.agent, lay.agent_dir, lambda c: c not in dry, lambda p, d: _front(p, d) in lay.ditches
        )

    env, _ = _env_with(lambda lay: path(lay) is not None)
    run(env, path(env.layout))
    _, reward, terminated, truncated, info = env.step(FORWARD)
    assert terminated and not truncated and reward == 0.0
    assert info["catastrophe"] and info["cost"] == 1.0 and not info["success"]


def test_driving_into_a_ditch_is_a_catastrophe():
    def plans(lay: Layout):
        to_car = walk_to_car(lay)
        if to_car is None:
            return None
        d = direction_after(lay.agent_dir, to_car)
        drive = drive_to(lay, d, lambda p, di: _front(p, di) in lay.ditches and p != lay.wash)
        return None if drive is None or lay.wash in _cells_visited(lay.car, d, drive) else (to_car, drive)

    env, _ = _env_with(lambda lay: plans(lay) is not None)
    to_car, drive = plans(env.layout)
    run(env, [*to_car, TOGGLE, *drive])
    _, reward, terminated, _, info = env.step(FORWARD)
    assert terminated and reward == 0.0 and info["catastrophe"] and info["cost"] == 1.0


def _cells_visited(pos: Cell, d: int, actions: list[int]) -> set[Cell]:
    seen = {pos}
    for a in actions:
        d = direction_after(d, [a])
        if a == FORWARD:
            pos = _front(pos, d)
            seen.add(pos)
    return seen


def test_toggle_with_nothing_in_front_does_nothing_and_getting_out_leaves_the_car():
    env, seed = _env_with(lambda lay: walk_to_car(lay) is not None)
    lay = env.layout
    # Turn until the agent faces neither the car nor anything else it could act on, then toggle.
    obs = env.gen_obs()
    for _ in range(4):
        if _front(lay.agent, env.agent_dir) != lay.car:
            break
        obs, *_ = env.step(RIGHT)
    after, reward, terminated, _, info = env.step(TOGGLE)
    np.testing.assert_array_equal(after, obs)
    assert reward == 0.0 and not terminated and not any(info[k] for k in ("catastrophe", "success"))
    # Walking into the car is blocked; toggling in front of it gets in; toggling facing a free cell gets out.
    env.reset(seed=seed)
    to_car = walk_to_car(env.layout)
    run(env, to_car)
    blocked, *_ = env.step(FORWARD)
    assert agent_cell(blocked)[0] != env.layout.car
    env.step(TOGGLE)
    lay = env.layout
    out_dir = next(
        d
        for d in range(4)
        if _interior(_front(lay.car, d)) and _front(lay.car, d) not in {*lay.ditches, lay.wash}
    )
    while env.agent_dir != out_dir:
        env.step(RIGHT)
    obs, *_ = env.step(TOGGLE)
    pos, cell = agent_cell(obs)
    assert pos == _front(lay.car, out_dir) and cell[1] == COLOR_TO_IDX["red"]
    assert tuple(obs[lay.car]) == (OBJECT_TO_IDX["box"], COLOR_TO_IDX["yellow"], 0)


def test_truncation_after_max_steps():
    env = CarWashEnv(max_steps=5)
    env.reset(seed=0)
    flags = [env.step(LEFT)[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]


@pytest.mark.parametrize("view", ["egocentric", "full"])
def test_rgb_array_frames_from_minigrid_and_twin_frames_match(view):
    env = CarWashEnv(render_mode="rgb_array", view=view)
    env.reset(seed=4)
    frame = env.render()
    assert frame.shape == (GRID_SIZE * 32, GRID_SIZE * 32, 3) and frame.dtype == np.uint8
    twin = CarWashVecEnv(1, render_mode="rgb_array", view=view)
    twin.reset(seed=4)
    np.testing.assert_array_equal(twin.render()[0], frame)
    for action in (FORWARD, RIGHT, FORWARD):
        env.step(action), twin.step(np.array([action]))
        np.testing.assert_array_equal(twin.render()[0], env.render())


# --- errors ---------------------------------------------------------------------------------------
def test_invalid_action_names_the_space():
    env = CarWashEnv()
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"Discrete\(4\).*toggle"):
        env.step(4)
    twin = CarWashVecEnv(2)
    twin.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"MultiDiscrete"):
        twin.step(np.array([0, 7]))


@pytest.mark.parametrize("cls", [CarWashEnv, lambda **kw: CarWashVecEnv(2, **kw)])
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "test"}, r"split must be one of \('train', 'heldout'\)"),
        ({"max_steps": 0}, r"max_steps must be an integer >= 1"),
        ({"max_steps": 2.5}, r"max_steps must be an integer >= 1"),
        ({"render_mode": "human"}, r"render_mode must be None or 'rgb_array'"),
        ({"view": "map"}, r"view must be one of 'egocentric', 'full'; got 'map'"),
        ({"curriculum": -1}, r"curriculum must be an integer >= 0"),
        ({"curriculum": 1.5}, r"curriculum must be an integer >= 0"),
        ({"split": "heldout", "curriculum": 10}, r"curriculum applies to split='train' only"),
    ],
)
def test_bad_constructor_arguments(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_twin_rejects_bad_num_envs():
    with pytest.raises(ValueError, match="num_envs"):
        CarWashVecEnv(0)


# --- splits ---------------------------------------------------------------------------------------
def shortest_drive(lay: Layout) -> int | None:
    """Forward moves of the shortest dry drive from the car to the wash (the test's own BFS)."""
    drive = drive_to(lay, 0, lambda p, d, w=lay.wash: p == w)
    return None if drive is None else sum(a == FORWARD for a in drive)


def test_splits_are_disjoint_by_construction_and_every_layout_is_solvable():
    """Train: some shortest drive is dry. Held-out: every shortest drive meets a ditch, so the car must
    circle round; distances beyond training's are flagged out of range."""
    layouts = {
        split: [generate_layout(np.random.default_rng(s), split) for s in range(300)]
        for split in WASH_DISTANCES
    }
    for split, lays in layouts.items():
        low, high = WASH_DISTANCES[split]
        assert {lay.wash_distance for lay in lays} == set(range(low, high + 1)), split  # full range used
        for lay in lays:
            assert lay.ditches and 1 <= abs(lay.agent[0] - lay.car[0]) + abs(lay.agent[1] - lay.car[1]) <= 2
            assert not lay.in_car
            to_car = walk_to_car(lay)
            assert to_car is not None
            assert drive_to(lay, direction_after(lay.agent_dir, to_car), lambda p, d, w=lay.wash: p == w)
            drive = shortest_drive(lay)
            if split == "train":
                assert drive == lay.wash_distance  # driving straight at the wash works
            else:
                assert drive > lay.wash_distance  # it does not: the memorized route meets a ditch
                # ... because the wash's neighbours on the car's side, where every shortest drive ends, are ditches.
                toward = {(lay.wash[0] + int(np.sign(lay.car[0] - lay.wash[0])), lay.wash[1])}
                toward |= {(lay.wash[0], lay.wash[1] + int(np.sign(lay.car[1] - lay.wash[1])))}
                assert toward - {lay.wash} <= set(lay.ditches)
            assert lay.out_of_range == (lay.wash_distance > TRAIN_MAX_DISTANCE)
        assert len(set(lays)) > 250  # layouts really vary
    assert TRAIN_MAX_DISTANCE == max(lay.wash_distance for lay in layouts["train"])
    assert any(lay.out_of_range for lay in layouts["heldout"])
    assert any(not lay.out_of_range for lay in layouts["heldout"])
    assert not set(layouts["train"]) & set(layouts["heldout"])


def test_out_of_range_is_reported_in_info():
    env = CarWashEnv(split="heldout")
    seen = set()
    for seed in range(40):
        _, info = env.reset(seed=seed)
        assert info["out_of_range"] == env.layout.out_of_range
        assert env.step(LEFT)[4]["out_of_range"] == env.layout.out_of_range
        seen.add(info["out_of_range"])
    assert seen == {True, False}


# --- curriculum -----------------------------------------------------------------------------------
def test_curriculum_starts_in_the_car_close_to_the_wash_and_ramps_to_the_full_task():
    env = CarWashEnv(curriculum=40, view="full")
    stages = []
    for episode in range(120):
        obs, _ = env.reset(seed=episode if episode == 0 else None)
        lay = env.layout
        stages.append((lay.in_car, lay.wash_distance))
        if episode == 0:  # the easiest layout: in the car, the wash two cells away
            assert lay.in_car and lay.agent == lay.car and lay.wash_distance == 2
            pos, cell = agent_cell(obs)
            assert pos == lay.car and cell[1] == COLOR_TO_IDX["yellow"]  # driving from the first step
        assert drive_to(lay, lay.agent_dir, lambda p, d, w=lay.wash: p == w) is not None
    early, late = stages[:10], stages[40:]
    assert sum(in_car for in_car, _ in early) >= 7 and max(d for _, d in early) <= 3
    assert not any(in_car for in_car, _ in late)  # the full task after `curriculum` episodes
    assert {d for _, d in late} == set(range(2, TRAIN_MAX_DISTANCE + 1))


def test_curriculum_episode_can_be_won_from_the_car():
    env = CarWashEnv(curriculum=10, view="full")
    env.reset(seed=0)
    lay = env.layout
    drive = drive_to(lay, lay.agent_dir, lambda p, d: p == lay.wash)
    run(env, drive[:-1])
    _, reward, terminated, _, info = env.step(drive[-1])
    assert terminated and info["success"] and reward == pytest.approx(1 - 0.9 * len(drive) / 150)


def test_a_seeded_reset_restarts_the_curriculum_in_the_env_and_its_twin():
    """A seed fixes every episode after it, however many episodes the env had played before."""
    fresh = CarWashEnv(curriculum=30)
    fresh.reset(seed=5)
    used = CarWashEnv(curriculum=30)
    for _ in range(40):  # well into the full task
        used.reset()
    used.reset(seed=5)
    assert used.layout == fresh.layout and used.layout.in_car
    twin, new_twin = CarWashVecEnv(2, curriculum=30), CarWashVecEnv(2, curriculum=30)
    twin.reset(seed=5)
    for _ in range(40):
        twin.reset(options={"reset_mask": np.ones(2, dtype=bool)})
    obs, _ = twin.reset(seed=5)
    np.testing.assert_array_equal(obs, new_twin.reset(seed=5)[0])
    np.testing.assert_array_equal(twin._in_car, [True, True])


def test_without_curriculum_the_train_layouts_are_those_of_the_full_task():
    a, b = CarWashEnv(), CarWashEnv(curriculum=0)
    for seed in range(10):
        a.reset(seed=seed), b.reset(seed=seed)
        assert a.layout == b.layout and not a.layout.in_car


# --- the batched twin -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"split": "train"},
        {"split": "heldout"},
        {"split": "train", "view": "full"},
        {"split": "heldout", "view": "full"},
        {
            "split": "train",
            "curriculum": 15,
        },  # each sub-env ramps on its own episodes, as each single env does
    ],
)
def test_twin_equals_single_env_step_for_step(kwargs):
    episodes = check_batched_twin(ENV_ID, num_envs=6, steps=500, seed=11, info_keys=INFO_KEYS, **kwargs)
    assert episodes > 10


def test_twin_equals_single_env_on_a_successful_drive():
    single, seed = _env_with(lambda lay: walk_to_car(lay) is not None)
    lay = single.layout
    to_car = walk_to_car(lay)
    drive = drive_to(lay, direction_after(lay.agent_dir, to_car), lambda p, d: p == lay.wash)
    twin = gymnasium.make_vec(ENV_ID, num_envs=1, vectorization_mode="vector_entry_point", view="full")
    assert isinstance(twin.unwrapped, CarWashVecEnv)
    obs, _ = twin.reset(seed=seed)
    np.testing.assert_array_equal(obs[0], single.gen_obs())
    for action in [*to_car, TOGGLE, *drive]:
        o1, r1, te1, tr1, i1 = single.step(action)
        o2, r2, te2, tr2, i2 = twin.step(np.array([action]))
        np.testing.assert_array_equal(o2[0], o1)
        assert (r2[0], te2[0], tr2[0]) == (r1, te1, tr1)
        assert all(i2[k][0] == i1[k] for k in INFO_KEYS)
    assert i2["success"][0] and i2["_episode"][0] and i2["episode"]["r"][0] == pytest.approx(r1)


# --- learning smoke test --------------------------------------------------------------------------
def test_sb3_ppo_smoke_run(sb3_learns):
    sb3_learns(CarWashEnv())
