"""ParallelVectorEnv: parameter-shared learners on a PettingZoo env, with devlearn's vector-env contract."""

from __future__ import annotations

import json
import subprocess
import sys
from copy import deepcopy
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

import devlearn  # noqa: F401  (registers the bundled ids)
from devlearn.agents.sb3.vec import SB3VecEnv
from devlearn.config import ConfigError
from devlearn.envs.actions import InvalidActionError
from devlearn.envs.bystanders.parallel import BystandersParallelEnv
from devlearn.envs.vector.episodes import EpisodeStats
from devlearn.envs.vector.make import make_vector_env
from devlearn.envs.vector.parallel import ParallelVectorEnv

# One hit kills and retaliation is immediate, so deaths and copy resets come within a few dozen steps.
DEADLY = dict(max_health=1, retaliation_delay=1, friend_delay=2, max_steps=30)
LEARNERS = ("learner_0", "learner_1")
DEVLEARN = str(Path(sys.executable).parent / "devlearn")


def deadly_env(**kwargs) -> BystandersParallelEnv:
    return BystandersParallelEnv(**{**DEADLY, **kwargs})


def make_venv(num_copies: int = 2, **kwargs) -> ParallelVectorEnv:
    return ParallelVectorEnv(lambda: deadly_env(**kwargs), num_copies)


def run_until(venv: ParallelVectorEnv, rng: np.random.Generator, cond, limit: int = 2000):
    """Step with random actions until ``cond(step_result)`` holds; return that step's result."""
    for _ in range(limit):
        result = venv.step(rng.integers(7, size=venv.num_envs))
        if cond(result):
            return result
    raise AssertionError("condition never met")


def partial_death(venv: ParallelVectorEnv):
    """A condition: some agent terminated while another agent of its copy plays on."""

    def cond(result) -> bool:
        terminated = result[2]
        for c in range(venv.num_copies):
            slots = list(venv._slots(c))
            if terminated[slots].any() and venv._live[slots].any():
                return True
        return False

    return cond


# --- spaces and sizes -------------------------------------------------------------------------
def test_spaces_and_num_envs():
    venv = make_venv(3)
    assert venv.agents == LEARNERS and venv.num_envs == 6
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert venv.single_observation_space == spaces.Box(0, 255, (9, 9, 8), np.uint8)
    assert venv.single_action_space == spaces.Discrete(7)
    assert venv.action_space == spaces.MultiDiscrete([7] * 6)
    obs, info = venv.reset(seed=0)
    assert obs.shape == (6, 9, 9, 8) and obs.dtype == np.uint8 and venv.observation_space.contains(obs)
    assert info["real"].all() and info["_cost"].all() and not info["catastrophe"].any()
    assert venv.sub_env(2, "learner_1") == 5

    # Learning bystanders are not learners: by default only learners are controlled ...
    assert make_venv(2, learning_bystanders=True).num_envs == 4
    # ... unless asked for; they share the learners' spaces, so one policy can drive them all.
    every = BystandersParallelEnv(learning_bystanders=True).possible_agents
    assert ParallelVectorEnv(lambda: deadly_env(learning_bystanders=True), 2, every).num_envs == 10


def test_mismatched_spaces_and_unknown_agents_are_named():
    def lopsided() -> BystandersParallelEnv:
        env = BystandersParallelEnv(learning_bystanders=True)
        env.action_spaces["bystander_0"] = spaces.Discrete(5)
        return env

    with pytest.raises(
        ValueError, match=r"action space.*learner_0: Discrete\(7\); bystander_0: Discrete\(5\)"
    ):
        ParallelVectorEnv(lopsided, 1, ["learner_0", "bystander_0"])
    with pytest.raises(ValueError, match=r"learner_9.*possible agents"):
        ParallelVectorEnv(deadly_env, 1, ["learner_9"])
    with pytest.raises(ValueError, match="num_copies"):
        ParallelVectorEnv(deadly_env, 0)


def test_make_vector_env_builds_whole_copies_of_a_pettingzoo_id():
    for asked, got in ((8, 8), (5, 4), (1, 2)):
        venv = make_vector_env("devlearn/Bystanders-v0", asked, split="heldout", max_steps=20)
        assert isinstance(venv, ParallelVectorEnv) and venv.num_envs == got
        assert venv.envs[0].split == "heldout" and venv.envs[0].rules.max_steps == 20
        venv.close()
    with pytest.raises(ConfigError, match="only apply to Gymnasium"):
        make_vector_env("devlearn/Bystanders-v0", 4, wrappers=[lambda env: env])
    with pytest.raises(ConfigError, match="no batched twin"):
        make_vector_env("devlearn/Bystanders-v0", 4, vectorization="twin")
    with pytest.raises(devlearn.RegistryError, match="max_step"):
        make_vector_env("devlearn/Bystanders-v0", 4, max_step=20)


# --- seeding ----------------------------------------------------------------------------------
def test_seeding_is_reproducible():
    def rollout(seed: int, learning_bystanders: bool) -> list:
        venv = make_venv(2, learning_bystanders=learning_bystanders)
        rng = np.random.default_rng(7)
        out = [venv.reset(seed=seed)[0]]
        for _ in range(60):
            obs, reward, terminated, truncated, _ = venv.step(rng.integers(7, size=venv.num_envs))
            out += [obs, reward, terminated, truncated]
        return out

    for learning in (False, True):  # with learning bystanders, the uncontrolled ones act at random
        a, b = rollout(3, learning), rollout(3, learning)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(rollout(3, False)[0], rollout(4, False)[0])
    # copy c gets seed + c: copy 1 under seed 3 is copy 0 under seed 4
    assert np.array_equal(rollout(3, False)[0][2:4], rollout(4, False)[0][0:2])


# --- the same as stepping the PettingZoo env by hand ------------------------------------------
def test_matches_the_parallel_env_step_for_step():
    venv = make_venv(2)
    raw = [deadly_env() for _ in range(2)]
    rng = np.random.default_rng(0)
    obs, _ = venv.reset(seed=11)
    for c, env in enumerate(raw):
        ref, _ = env.reset(seed=11 + c)
        for a in LEARNERS:
            assert np.array_equal(obs[venv.sub_env(c, a)], ref[a])
    live = {(c, a): True for c in range(2) for a in LEARNERS}
    copy_done = [False, False]
    deaths = partial_deaths = copy_resets = waiting = 0
    zero = np.zeros((9, 9, 8), np.uint8)

    for _ in range(400):
        actions = rng.integers(7, size=venv.num_envs)
        obs, reward, terminated, truncated, info = venv.step(actions)
        for c, env in enumerate(raw):
            idx = {a: venv.sub_env(c, a) for a in LEARNERS}
            if copy_done[c]:  # next-step autoreset: reset observation, reward 0, not a real step
                ref, _ = env.reset()
                for a, i in idx.items():
                    assert np.array_equal(obs[i], ref[a]) and reward[i] == 0
                    assert not (terminated[i] or truncated[i] or info["real"][i])
                    live[c, a] = True
                copy_done[c], copy_resets = False, copy_resets + 1
                continue
            ref_obs, ref_rew, ref_term, ref_trunc, ref_info = env.step(
                {a: int(actions[idx[a]]) for a in env.agents}
            )
            for a, i in idx.items():
                if not live[c, a]:  # finished earlier: waits for its copy
                    assert np.array_equal(obs[i], zero) and reward[i] == 0 and not info["real"][i]
                    assert not (terminated[i] or truncated[i]) and info["cost"][i] == 0
                    waiting += 1
                    continue
                assert np.array_equal(obs[i], ref_obs[a]) and reward[i] == ref_rew[a] and info["real"][i]
                assert (terminated[i], truncated[i]) == (ref_term[a], ref_trunc[a])
                for key in ("cost", "catastrophe", "success", "health", "money"):
                    assert info[key][i] == ref_info[a][key] and info[f"_{key}"][i]
                if ref_term[a] or ref_trunc[a]:
                    live[c, a] = False
                    deaths += ref_term[a]
                    partial_deaths += bool(ref_term[a] and env.agents)
            copy_done[c] = not any(live[c, a] for a in LEARNERS)
            assert copy_done[c] == (not env.agents)
    assert deaths and partial_deaths and copy_resets and waiting


# --- the dead-agent rule ----------------------------------------------------------------------
def test_dead_agent_waits_for_its_copy():
    venv = make_venv(2)
    rng = np.random.default_rng(1)
    venv.reset(seed=5)
    obs, reward, terminated, truncated, info = run_until(venv, rng, partial_death(venv))
    (dead,) = np.flatnonzero(terminated & ~venv._live)[:1]
    copy = dead // 2
    # the death step is real: the final observation, catastrophe, and the episode's figures
    assert obs[dead].any() and info["catastrophe"][dead] and info["real"][dead]
    assert info["_episode"][dead] and info["episode"]["catastrophe"][dead]

    while not venv._copy_done[copy]:
        actions = rng.integers(7, size=venv.num_envs)
        other = actions.copy()
        other[dead] = (actions[dead] + 1) % 7
        twin = deepcopy(venv)
        obs, reward, terminated, truncated, info = venv.step(actions)
        assert not obs[dead].any() and reward[dead] == 0 and not info["real"][dead]
        assert not (terminated[dead] or truncated[dead])
        assert "_episode" not in info or not info["_episode"][dead]
        # the waiting slot's action is ignored
        twin_out = twin.step(other)
        assert all(np.array_equal(x, y) for x, y in zip((obs, reward, terminated), twin_out[:3], strict=True))

    # once every learner of the copy is done, the next step restarts the whole copy
    obs, reward, terminated, truncated, info = venv.step(rng.integers(7, size=venv.num_envs))
    slots = list(venv._slots(copy))
    assert obs[slots].any(axis=(1, 2, 3)).all() and not info["real"][slots].any()
    assert not reward[slots].any() and venv._live[slots].all()


# --- reset_mask -------------------------------------------------------------------------------
def test_reset_mask_resets_whole_copies():
    venv = make_venv(2)
    rng = np.random.default_rng(2)
    venv.reset(seed=0)
    for _ in range(3):
        before, *_ = venv.step(rng.integers(7, size=4))
    obs, info = venv.reset(seed=9, options={"reset_mask": np.array([True, True, False, False])})
    fresh, _ = deadly_env().reset(seed=9)  # copy 0 gets seed 9 + 0
    assert np.array_equal(obs[0], fresh["learner_0"]) and np.array_equal(obs[1], fresh["learner_1"])
    assert np.array_equal(obs[2:], before[2:]) and list(info["_real"]) == [True, True, False, False]

    with pytest.raises(ValueError, match=r"copy 1.*resets whole"):
        venv.reset(options={"reset_mask": np.array([False, False, True, False])})
    with pytest.raises(ValueError, match="bool array of shape"):
        venv.reset(options={"reset_mask": np.array([True, True])})


def test_reset_mask_of_a_dead_agent_waits_and_of_a_finished_copy_restarts():
    venv = make_venv(2)
    rng = np.random.default_rng(3)
    venv.reset(seed=1)
    _, _, terminated, _, _ = run_until(venv, rng, partial_death(venv))
    # what SB3 asks after a death: reset just that sub-env. The copy plays on; the slot waits.
    obs, info = venv.reset(options={"reset_mask": terminated.copy()})
    (dead,) = np.flatnonzero(terminated)[:1]
    assert not obs[dead].any() and info["_real"][dead] and not info["real"][dead]
    assert not venv._live[dead] and venv._live[list(venv._slots(dead // 2))].any()

    # when the copy's last learner finishes, masking that one sub-env restarts the whole copy at once
    copy = dead // 2
    _, _, terminated, truncated, _ = run_until(venv, rng, lambda _: venv._copy_done[copy])
    mask = np.zeros(4, dtype=bool)
    mask[np.flatnonzero(terminated | truncated)[0]] = True
    obs, info = venv.reset(options={"reset_mask": mask})
    slots = list(venv._slots(copy))
    assert venv._live[slots].all() and info["real"][slots].all() and obs[slots].any(axis=(1, 2, 3)).all()


# --- episode statistics -----------------------------------------------------------------------
def test_episode_stats_match_the_real_steps():
    venv = make_venv(2)
    rng = np.random.default_rng(4)
    venv.reset(seed=2)
    stats = EpisodeStats(venv.num_envs)  # counts only steps with info["real"]
    ret, length, cost, cat = (np.zeros(4) for _ in range(4))
    finished = 0
    for _ in range(150):
        _, reward, terminated, truncated, info = venv.step(rng.integers(7, size=4))
        active = info["real"]
        ret += np.where(active, reward, 0)
        length += active
        cost += np.where(active, info["cost"], 0)
        cat = np.where(active, cat + info["catastrophe"], cat)
        stats.update(reward, info)
        done = terminated | truncated
        for i, ep in zip(np.flatnonzero(done), stats.pop(done), strict=True):
            ep_info = info["episode"]
            assert info["_episode"][i] and ep_info["l"][i] == length[i] == ep["length"]
            assert ep_info["r"][i] == pytest.approx(ret[i]) == pytest.approx(ep["return"])
            assert ep_info["cost"][i] == pytest.approx(cost[i]) and ep_info["catastrophe"][i] == (cat[i] > 0)
            ret[i] = length[i] = cost[i] = cat[i] = 0
            finished += 1
        if "_episode" in info:
            assert not info["_episode"][~done].any()
    assert finished >= 4


# --- errors and SB3 ---------------------------------------------------------------------------
def test_invalid_actions_name_the_space():
    venv = make_venv(2)
    venv.reset(seed=0)
    for bad in ([0, 1, 2, 7], [0, 1, 2], [0, 1, 2, 1.5], [[0, 1, 2, 3]]):
        with pytest.raises(InvalidActionError, match=r"MultiDiscrete\(\[7 7 7 7\]\).*Discrete\(7\)"):
            venv.step(bad)
    with pytest.raises(RuntimeError, match="reset"):
        make_venv(1).step([0, 0])


def test_sb3_vec_env_trains_through_deaths():
    # SB3 resets a dead agent's sub-env at once; the copy plays on and no error is raised.
    sb3 = SB3VecEnv(make_venv(2))
    sb3.seed(0)
    sb3.reset()
    rng = np.random.default_rng(5)
    lengths = []
    for _ in range(200):
        sb3.step_async(rng.integers(7, size=4))
        _, _, done, infos = sb3.step_wait()
        lengths += [infos[i]["episode"]["l"] for i in np.flatnonzero(done)]
    assert lengths and max(lengths) <= DEADLY["max_steps"]


# --- end to end -------------------------------------------------------------------------------
def test_devlearn_train_on_bystanders_multi(tmp_path):
    args = [
        "train",
        "env=bystanders_multi",
        "agent=ppo",
        "agent.total_timesteps=512",
        "agent.n_steps=32",
        "agent.batch_size=64",
        "env.num_envs=4",
        "log.eval_episodes=2",
        "log.video=false",  # devlearn/train.py's rollout video cannot play a PettingZoo env yet (below)
    ]
    out = subprocess.run([DEVLEARN, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["env"] == "devlearn/Bystanders-v0" and results["env_steps"] >= 512
    assert set(results["eval"]) == {"train", "heldout"} and results["eval"]["train"]["episodes"] == 2


def test_rollout_video_of_a_pettingzoo_env(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from devlearn.app.media import record_episode

    with SummaryWriter(str(tmp_path)) as writer:
        kind = record_episode(
            writer,
            "devlearn/Bystanders-v0",
            [],
            {"max_steps": 6},
            lambda obs, start: np.zeros(len(obs), dtype=np.int64),
            "rollout",
            0,
            20,
        )
    assert kind == "video"
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert "rollout/video" in events.Tags()["images"]
