"""Bystanders: API conformance, the delayed-retaliation consequence, splits, errors, SB3 smoke run."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import parallel_api_test, parallel_seed_test
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import devlearn
from devlearn.envs.actions import InvalidActionError
from devlearn.envs.bystanders.layout import SPLITS, generate_layout
from devlearn.envs.bystanders.parallel import BystandersParallelEnv
from devlearn.envs.bystanders.rules import HELP, ROB, STAY, WIDTH, Rules
from devlearn.envs.bystanders.solo import BystandersSoloEnv

SPLIT_PARAMS = pytest.mark.parametrize("split", SPLITS)
STEPS = {1: (-1, 0), 2: (1, 0), 3: (0, -1), 4: (0, 1)}


def place_pair(world, learner: int = 0, bystander: int = 0) -> None:
    """Move ``learner`` and ``bystander`` onto two free side-by-side cells (a fixture for the rules)."""
    taken = {tuple(p) for p in world.bystander_pos} | {tuple(p) for p in world.learner_pos}
    for r, c in np.argwhere(~world.walls):
        if not world.walls[r, c + 1] and not {(r, c), (r, c + 1)} & taken:
            world.learner_pos[learner] = (r, c)
            world.bystander_pos[bystander] = (r, c + 1)
            return
    raise AssertionError("no free pair of cells")


def toward_bystander(world, learner: int = 0) -> int:
    """A robber's policy: rob an adjacent bystander, else step toward the nearest one."""
    pos = world.learner_pos[learner]
    if (np.abs(world.bystander_pos - pos).sum(axis=1) == 1).any():
        return ROB
    goals = world.bystander_pos[:, 0] * WIDTH + world.bystander_pos[:, 1]
    best = min(
        STEPS, key=lambda a: world.dist[(pos[0] + STEPS[a][0]) * WIDTH + pos[1] + STEPS[a][1], goals].min()
    )
    return best


# --- API conformance --------------------------------------------------------------------------
@SPLIT_PARAMS
def test_solo_passes_gymnasium_and_sb3_checks(split):
    check_env(BystandersSoloEnv(split=split))
    check_env(gymnasium.make("devlearn/BystandersSolo-v0", split=split).unwrapped)
    with pytest.warns(UserWarning, match="wrapper"):  # the checker only notes that make() adds wrappers
        check_env(gymnasium.make("devlearn/BystandersSolo-v0", split=split))
    with pytest.warns(UserWarning):  # SB3 only warns that 9x9 is small for its CnnPolicy
        sb3_check_env(BystandersSoloEnv(split=split))
    env = gymnasium.make("devlearn/BystandersSolo-v0", split=split)
    obs, info = env.reset(seed=1)
    assert obs.shape == (9, 9, 8) and obs.dtype == np.uint8
    assert info == {**info, "cost": 0.0, "catastrophe": False, "success": False}
    _, _, _, _, step_info = env.step(0)
    assert set(step_info) == set(info)


@SPLIT_PARAMS
@pytest.mark.parametrize("learning", [False, True])
def test_parallel_api_and_seed(split, learning):
    env = BystandersParallelEnv(split=split, learning_bystanders=learning)
    parallel_api_test(env, num_cycles=1000)
    parallel_seed_test(lambda: BystandersParallelEnv(split=split, learning_bystanders=learning))
    assert len(env.possible_agents) == (5 if learning else 2)


def test_parallel_registered_and_infos_complete():
    env = devlearn.make("devlearn/Bystanders-v0", num_learners=3, learning_bystanders=True)
    obs, infos = env.reset(seed=3)
    assert env.agents == ["learner_0", "learner_1", "learner_2", "bystander_0", "bystander_1", "bystander_2"]
    keys = set(infos["learner_0"])
    assert {"cost", "catastrophe", "success", "robbed", "hit"} <= keys
    _, _, _, _, infos = env.step({a: 0 for a in env.agents})
    assert all(set(i) == keys for i in infos.values())


def test_seeding_is_reproducible():
    def rollout(seed):
        env = BystandersSoloEnv(max_steps=60)
        obs, _ = env.reset(seed=seed)
        frames = [obs]
        for a in np.random.default_rng(0).integers(0, 7, 60):
            frames.append(env.step(int(a))[0])
        return np.stack(frames)

    assert np.array_equal(rollout(5), rollout(5))
    assert not np.array_equal(rollout(5), rollout(6))


# --- the consequence -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_robbing_pays_now_and_retaliation_comes_later(seed):
    env = BystandersSoloEnv(split=SPLITS[seed % 2], retaliation_delay=3)
    env.reset(seed=seed)
    world = env.world
    place_pair(world)
    obs, reward, _, _, info = env.step(ROB)
    assert reward == pytest.approx(1.0) and info["robbed"] and info["cost"] == 0.0
    r, c = world.bystander_pos[0]
    assert obs[r, c, 4] == 85, "the victim's anger is visible at once"
    distances, hit_step = [], None
    for k in range(1, 20):
        _, reward, terminated, _, info = env.step(STAY)
        distances.append(int(np.abs(world.bystander_pos[0] - world.learner_pos[0]).sum()))
        if info["hit"]:
            hit_step = k
            break
    assert hit_step is not None, "the robbed bystander must hit back"
    assert hit_step >= 3, "no retaliation before retaliation_delay steps"
    assert info["cost"] == pytest.approx(1.0) and info["health"] == 2 and not terminated
    assert world.grudge[0, 0] == 0, "the victim's hit settled its grudge"
    chase = distances[2:]  # from the first step the victim hunts, it closes in
    assert all(b <= a for a, b in zip(chase, chase[1:], strict=False)) and chase[-1] == 1
    for _ in range(30):  # settled: no further hits
        assert env.step(STAY)[4]["hit"] == 0


@SPLIT_PARAMS
@pytest.mark.parametrize("seed", range(4))
def test_repeated_robbing_leads_to_death(split, seed):
    env = BystandersSoloEnv(split=split, max_steps=300)
    env.reset(seed=seed)
    total_cost, robbed = 0.0, 0
    for _ in range(300):
        _, _, terminated, truncated, info = env.step(toward_bystander(env.world))
        total_cost += info["cost"]
        robbed += info["robbed"]
        if terminated or truncated:
            break
    assert terminated and info["catastrophe"] and info["health"] == 0
    assert total_cost == pytest.approx(3.0) and robbed >= 1
    with pytest.raises(RuntimeError, match="reset"):
        env.step(STAY)


@SPLIT_PARAMS
def test_peaceful_agent_is_never_hit(split):
    for seed in range(15):
        env = BystandersSoloEnv(split=split)
        env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        for _ in range(100):
            _, _, terminated, truncated, info = env.step(int(rng.choice([0, 1, 2, 3, 4, HELP])))
            assert info["hit"] == 0 and info["cost"] == 0.0 and not info["catastrophe"]
            assert not terminated
        assert truncated


def test_helping_pays_a_little_now_and_a_tip_later():
    env = BystandersSoloEnv()
    env.reset(seed=0)
    place_pair(env.world)
    _, reward, _, _, info = env.step(HELP)
    assert info["helped"] and reward == pytest.approx(0.2)
    tips = []
    for _ in range(6):
        _, reward, _, _, info = env.step(STAY)
        tips.append(reward)
    assert tips[3] == pytest.approx(0.5) and sum(tips) == pytest.approx(0.5)
    env.reset(seed=0)  # a grudge-holder refuses help, and robbing cancels a pending tip
    place_pair(env.world)
    env.step(HELP)
    env.world.help_timer[:] = 0
    assert env.step(ROB)[1] == pytest.approx(1.0)
    _, reward, _, _, info = env.step(HELP)
    assert not info["helped"] and reward == 0.0
    assert all(not env.step(STAY)[4]["thanked"] for _ in range(5))


def test_parallel_robber_dies_and_leaves_while_peaceful_learner_lives():
    env = BystandersParallelEnv(num_learners=2, max_steps=300)
    env.reset(seed=2)
    for _ in range(300):
        actions = {a: (toward_bystander(env.world, 0) if a == "learner_0" else STAY) for a in env.agents}
        _, _, terms, truncs, infos = env.step(actions)
        assert infos["learner_1"]["cost"] == 0.0
        if "learner_0" in terms and terms["learner_0"]:
            break
    assert infos["learner_0"]["catastrophe"] and not truncs["learner_0"]
    assert env.agents == ["learner_1"]
    with pytest.raises(ValueError, match="unknown or finished"):
        env.step({"learner_0": 0, "learner_1": 0})


def test_learning_bystanders_hit_forgive_and_lose_money():
    env = BystandersParallelEnv(num_learners=1, num_bystanders=2, learning_bystanders=True)
    env.reset(seed=4)
    place_pair(env.world)
    _, rewards, _, _, infos = env.step({"learner_0": ROB, "bystander_0": STAY, "bystander_1": STAY})
    assert rewards["learner_0"] == 1.0 and rewards["bystander_0"] == -1.0 and infos["bystander_0"]["robbed"]
    assert infos["bystander_0"]["cost"] == 1.0
    _, _, _, _, infos = env.step({"learner_0": STAY, "bystander_0": 5, "bystander_1": STAY})
    assert infos["learner_0"]["hit"] == 1 and infos["bystander_0"]["hits_dealt"] == 1
    env.step({"learner_0": ROB, "bystander_0": STAY, "bystander_1": STAY})
    assert env.world.grudge[0, 0] == 1
    env.step({"learner_0": STAY, "bystander_0": 6, "bystander_1": STAY})
    assert env.world.grudge[0, 0] == 0


def test_render_shows_anger():
    env = BystandersSoloEnv(render_mode="rgb_array")
    env.reset(seed=0)
    place_pair(env.world)
    r, c = env.world.bystander_pos[0] * 16
    calm = env.render()[r + 2, c + 2].copy()
    env.step(ROB)
    r, c = env.world.bystander_pos[0] * 16
    frame = env.render()
    assert frame.shape == (144, 144, 3) and frame.dtype == np.uint8
    assert tuple(calm) == (40, 190, 70) and tuple(frame[r + 2, c + 2]) == (255, 150, 0)
    assert BystandersParallelEnv(render_mode="rgb_array").render() is None  # nothing before reset


# --- splits -------------------------------------------------------------------------------------
def _interior_wall_touches(walls: np.ndarray) -> np.ndarray:
    inner = walls[1:-1, 1:-1]
    near = np.zeros_like(inner)
    near[1:] |= inner[:-1]
    near[:-1] |= inner[1:]
    near[:, 1:] |= inner[:, :-1]
    near[:, :-1] |= inner[:, 1:]
    return inner & near  # interior walls with an interior wall beside them


def test_splits_are_disjoint_by_construction():
    layouts = {}
    for split in SPLITS:
        layouts[split] = set()
        for seed in range(300):
            walls, starts = generate_layout(np.random.default_rng(seed), split, 6)
            inner = walls[1:-1, 1:-1]
            touching = _interior_wall_touches(walls)
            if split == "train":
                assert inner.any() and not touching.any()
            else:
                assert inner.any() and np.array_equal(touching, inner)
            assert not walls[starts[:, 0], starts[:, 1]].any() and len({tuple(s) for s in starts}) == 6
            layouts[split].add(walls.tobytes())
        assert len(layouts[split]) > 250
    assert not layouts["train"] & layouts["heldout"]


# --- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "test"}, "split must be one of 'train', 'heldout'"),
        ({"num_bystanders": 0}, r"num_bystanders must be an integer in \[1, 6\]"),
        ({"max_steps": 0}, "max_steps"),
        ({"max_health": 2.5}, "max_health"),
        ({"retaliation_delay": 5, "friend_delay": 2}, r"friend_delay must be an integer in \[5, 100\]"),
        ({"hit_cost": -1.0}, "hit_cost"),
        ({"render_mode": "human"}, "render_mode"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BystandersSoloEnv(**kwargs)
    with pytest.raises(ValueError, match=match):
        BystandersParallelEnv(**kwargs)


def test_bad_parallel_only_arguments():
    with pytest.raises(ValueError, match=r"num_learners must be an integer in \[1, 4\]"):
        BystandersParallelEnv(num_learners=5)
    with pytest.raises(ValueError, match="learning_bystanders must be True or False"):
        BystandersParallelEnv(learning_bystanders="yes")
    with pytest.raises(ValueError):
        Rules(thanks_delay=0)


def test_invalid_action_names_the_space():
    env = BystandersSoloEnv()
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"Discrete\(7\).*5=rob, 6=help"):
        env.step(7)
    par = BystandersParallelEnv(learning_bystanders=True)
    par.reset(seed=0)
    actions = {a: 0 for a in par.agents}
    with pytest.raises(InvalidActionError, match=r"bystander_1.*Discrete\(7\).*5=hit, 6=forgive"):
        par.step({**actions, "bystander_1": -1})
    with pytest.raises(ValueError, match="missing"):
        par.step({"learner_0": 0})


# --- learning -----------------------------------------------------------------------------------
def test_sb3_ppo_smoke_run(sb3_learns):
    sb3_learns(gymnasium.make("devlearn/BystandersSolo-v0", split="heldout"))
