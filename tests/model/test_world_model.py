"""Core + WorldModel: causality, EMA target, k-step rollouts, and learning a small grid world."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces
from minigrid.wrappers import FullyObsWrapper, ImgObsWrapper

from devlearn.config import CoreConfig, WorldModelConfig
from devlearn.model.core import Core
from devlearn.model.world_model import WorldModel

T = 8
FORWARD = 2  # MiniGrid's "move forward"


def collect_windows(seed: int, n_steps: int) -> dict[str, np.ndarray]:
    """Random-action windows of T steps from MiniGrid-Empty-5x5 (fully observed), within episodes.

    Synthetic catastrophe rule: moving forward into a wall (the observation does not change).
    """
    env = ImgObsWrapper(FullyObsWrapper(gymnasium.make("MiniGrid-Empty-5x5-v0")))
    rng = np.random.default_rng(seed)
    windows: dict[str, list] = {
        k: [] for k in ("obs", "action", "next_obs", "reward", "terminated", "catastrophe")
    }
    obs, _ = env.reset(seed=seed)
    episode: dict[str, list] = {k: [] for k in windows}
    for _ in range(n_steps):
        action = int(rng.integers(env.action_space.n))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        step = (
            obs,
            action,
            next_obs,
            reward,
            terminated,
            action == FORWARD and np.array_equal(obs, next_obs),
        )
        for key, value in zip(episode, step, strict=True):
            episode[key].append(value)
        obs = next_obs
        if terminated or truncated:
            for start in range(0, len(episode["obs"]) - T + 1, 2):
                for key in windows:
                    windows[key].append(np.stack(episode[key][start : start + T]))
            episode = {k: [] for k in windows}
            obs, _ = env.reset()
    env.close()
    batch = {key: np.stack(value) for key, value in windows.items()}
    batch["mask"] = np.ones(batch["reward"].shape, bool)
    return batch


def take(batch: dict[str, np.ndarray], index: np.ndarray) -> dict[str, torch.Tensor]:
    return {key: torch.as_tensor(value[index]) for key, value in batch.items()}


def build(obs_space: spaces.Space, act_space: spaces.Space, **wm_kwargs) -> tuple[Core, WorldModel]:
    core = Core(obs_space, act_space, CoreConfig(window=T))
    return core, WorldModel(core.cfg.d_model, core.encoder, act_space, WorldModelConfig(**wm_kwargs))


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


GRID_SPACE = spaces.Box(0, 255, (5, 5, 3), np.uint8)
ACT_SPACE = spaces.Discrete(7)


@pytest.fixture(scope="module")
def trained() -> tuple[Core, WorldModel, dict[str, np.ndarray], dict[str, float]]:
    torch.manual_seed(0)
    train, test = collect_windows(seed=0, n_steps=3000), collect_windows(seed=1, n_steps=600)
    core, wm = build(GRID_SPACE, ACT_SPACE, catastrophe_pos_weight=3.0)
    # beta2=0.99: Adam's default 0.999 remembers the large early gradients (learning that walls stay
    # walls) for ~1000 steps and shrinks the later, informative updates
    opt = torch.optim.Adam([*core.parameters(), *wm.parameters()], lr=1e-3, betas=(0.9, 0.99))
    rng = np.random.default_rng(0)
    for _ in range(600):
        batch = take(train, rng.integers(len(train["obs"]), size=32))
        _, h_act = core(batch["obs"], batch["action"])
        total, _, _ = wm.loss(h_act, batch)
        opt.zero_grad()
        total.backward()
        opt.step()
        wm.update_target()
    core.eval()
    with torch.no_grad():
        batch = take(test, np.arange(len(test["obs"])))
        _, logs, _ = wm.loss(core(batch["obs"], batch["action"])[1], batch)
    return core, wm, test, {k: float(v) for k, v in logs.items()}


def test_learns_what_the_action_changes(trained) -> None:
    core, wm, test, logs = trained
    # a model that copies o_t scores acc_changed 0 and acc_obs = the share of steps where nothing moved:
    # ask for the changed cells themselves, and for whole grids well above the copier
    assert logs["acc_changed"] > 0.8, logs
    assert logs["acc_obs"] > 0.85 and logs["acc_obs"] > logs["acc_obs_copy"] + 0.2, logs
    batch = take(test, np.arange(16))
    with torch.no_grad():
        predicted = wm.predict_next(core(batch["obs"], batch["action"])[1], batch["obs"])
    assert predicted.shape == batch["next_obs"].shape and predicted.dtype == torch.uint8
    assert (predicted == batch["next_obs"]).all(dim=(2, 3, 4)).float().mean() > 0.7


def test_catastrophe_head_learns_rule(trained) -> None:
    core, wm, test, _ = trained
    batch = take(test, np.arange(len(test["obs"])))
    with torch.no_grad():
        prob = wm.catastrophe_prob(core(batch["obs"], batch["action"])[1])
    label = batch["catastrophe"]
    assert label.any() and (~label).any()
    assert prob[label].mean() > 0.7 and prob[~label].mean() < 0.1
    assert ((prob > 0.5) == label).float().mean() > 0.95


def test_surprise_is_higher_on_a_contradicting_transition(trained) -> None:
    core, wm, test, _ = trained
    batch = take(test, np.arange(8))
    contradicted = {key: value.clone() for key, value in batch.items()}
    # teleport: put the agent (object 10) somewhere else in o_{t+1} of step 3
    grid = batch["next_obs"][:, 3]
    agent = grid[..., 0] == 10
    swapped = grid.clone()
    swapped[agent] = torch.tensor([1, 0, 0], dtype=torch.uint8)  # empty floor where the agent was
    swapped[:, 2, 2] = torch.tensor([10, 0, 0], dtype=torch.uint8)  # agent in the centre, facing right
    contradicted["next_obs"][:, 3] = swapped
    changed = (swapped != grid).flatten(1).any(1)
    assert changed.any()
    with torch.no_grad():
        h_act = core(batch["obs"], batch["action"])[1]
        _, _, familiar = wm.loss(h_act, batch)
        _, _, surprised = wm.loss(h_act, contradicted)
    # surprise is nats per changed cell: a teleport costs several nats on each cell it contradicts
    assert (surprised[changed, 3] > familiar[changed, 3] + 1.0).all()
    assert surprised[changed, 3].mean() > 3 * familiar[changed, 3].mean()
    assert torch.equal(surprised[:, [0, 1, 2, 4, 5, 6, 7]], familiar[:, [0, 1, 2, 4, 5, 6, 7]])


def test_surprise_alone_equals_the_surprise_of_the_loss(trained) -> None:
    """``WorldModel.surprise`` (what acting pays with ``memory.write=surprise``) is ``loss``'s third value."""
    core, wm, test, _ = trained
    batch = take(test, np.arange(8))
    with torch.no_grad():
        h_act = core(batch["obs"], batch["action"])[1]
        expected = wm.loss(h_act, batch)[2]
        got = wm.surprise(h_act, batch["obs"], batch["next_obs"])
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got, expected)
    # continuous observations: the 1-step latent error
    torch.manual_seed(0)
    space = spaces.Box(-1.0, 1.0, (10,), np.float32)
    core, wm = build(space, spaces.Discrete(3))
    obs = torch.rand(2, T, 10) * 2 - 1
    zeros = torch.zeros(2, T)
    cont = {"obs": obs, "next_obs": torch.roll(obs, -1, dims=1), "action": torch.randint(3, (2, T))}
    cont.update(reward=zeros, terminated=zeros, catastrophe=zeros, mask=torch.ones(2, T, dtype=torch.bool))
    with torch.no_grad():
        h_act = core(obs, cont["action"])[1]
        torch.testing.assert_close(wm.surprise(h_act, obs, cont["next_obs"]), wm.loss(h_act, cont)[2])


def test_causal_mask_later_steps_do_not_change_earlier_outputs() -> None:
    torch.manual_seed(0)
    core = Core(GRID_SPACE, ACT_SPACE, CoreConfig(window=T))
    GRID_SPACE.seed(0)
    obs = torch.as_tensor(np.stack([GRID_SPACE.sample() for _ in range(2 * T)])).view(2, T, 5, 5, 3)
    act = torch.randint(7, (2, T))
    h_obs, h_act = core(obs, act)
    obs2, act2 = obs.clone(), act.clone()
    obs2[:, 5:] = 255 - obs2[:, 5:]
    act2[:, 4] = (act2[:, 4] + 1) % 7
    g_obs, g_act = core(obs2, act2)
    torch.testing.assert_close(g_obs[:, :5], h_obs[:, :5])  # h_obs[t] never sees a_t
    torch.testing.assert_close(g_act[:, :4], h_act[:, :4])
    assert not torch.allclose(g_act[:, 4], h_act[:, 4]) and not torch.allclose(g_obs[:, 5:], h_obs[:, 5:])


def test_ema_target_gets_no_gradients_and_tracks_online() -> None:
    torch.manual_seed(0)
    batch = take(collect_windows(seed=2, n_steps=150), np.arange(4))
    core, wm = build(GRID_SPACE, ACT_SPACE, k=3)
    total, logs, surprise = wm.loss(core(batch["obs"], batch["action"])[1], batch)
    total.backward()
    assert {
        "exact",
        "latent",
        "latent_k2",
        "latent_k3",
        "reward",
        "termination",
        "catastrophe",
    } <= logs.keys()
    assert surprise.shape == (4, T) and not surprise.requires_grad
    assert all(not p.requires_grad and p.grad is None for p in wm.target.parameters())
    assert all(p.grad is not None for p in core.encoder.parameters())
    # the target is not a submodule of the core, and the online encoder is not saved twice
    assert not any(key.startswith("_online") for key in wm.state_dict())
    with torch.no_grad():
        for p in core.encoder.parameters():
            p.add_(1.0)
    online, target = core.encoder.pool.weight, wm.target.pool.weight
    gap = (online - target).abs().sum()
    wm.update_target(0.25)
    torch.testing.assert_close((online - target).abs().sum(), 0.75 * gap)


def test_rollout_does_not_cross_episode_end() -> None:
    torch.manual_seed(0)
    batch = take(collect_windows(seed=3, n_steps=150), np.arange(2))
    core, wm = build(GRID_SPACE, ACT_SPACE, k=2)
    with torch.no_grad():
        h_act = core(batch["obs"], batch["action"])[1]
    # next_obs[:, 3] = o_4 is the 2-step target of the rollout from t=2 only
    corrupted = dict(batch, next_obs=batch["next_obs"].clone())
    corrupted["next_obs"][:, 3] = 255 - corrupted["next_obs"][:, 3]

    def k2(b: dict) -> torch.Tensor:
        return wm.loss(h_act, b)[1]["latent_k2"]

    assert k2(batch) != k2(corrupted)
    ended = {"done": torch.zeros(2, T, dtype=torch.bool)}
    ended["done"][:, 2] = True  # an episode ends at step 2: the rollout from t=2 must not score o_4
    assert k2({**batch, **ended}) == k2({**corrupted, **ended})
    everywhere = {"done": torch.ones(2, T, dtype=torch.bool)}
    assert k2({**batch, **everywhere}) == 0  # every rollout crosses an end: nothing to score


def test_continuous_observations_use_latent_surprise() -> None:
    torch.manual_seed(0)
    obs_space = spaces.Box(-1.0, 1.0, (10,), np.float32)
    act_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    core, wm = build(obs_space, act_space)
    obs = torch.rand(3, T, 10) * 2 - 1
    batch = {
        "next_obs": torch.roll(obs, -1, dims=1),
        "action": torch.rand(3, T, 2),
        "reward": torch.zeros(3, T),
        "terminated": torch.zeros(3, T),
        "catastrophe": torch.zeros(3, T),
        "mask": torch.ones(3, T, dtype=torch.bool),
    }
    batch["mask"][:, -1] = False
    total, logs, surprise = wm.loss(core(obs, batch["action"])[1], batch)
    assert "exact" not in logs and torch.isfinite(total)
    assert (surprise[:, :-1] > 0).all() and (surprise[:, -1] == 0).all()
    with pytest.raises(ValueError, match="latent=True"):
        WorldModel(core.cfg.d_model, core.encoder, act_space, WorldModelConfig(latent=False))
    with pytest.raises(ValueError, match="no exact targets"):
        wm.predict_next(torch.zeros(1, 1, core.cfg.d_model), None)


def test_sampled_exact_loss_reads_the_same_logits_and_is_unbiased() -> None:
    """``exact_sample``: the decoder's logits for a subset of tokens are the full pass's; sampling every
    token gives the exact loss; and over many draws the sampled loss averages to the exact one."""
    torch.manual_seed(0)
    batch = take(collect_windows(seed=2, n_steps=300), np.arange(6))
    core, wm = build(GRID_SPACE, ACT_SPACE, exact_sample=3, latent=False)
    with torch.no_grad():
        for p in wm.parameters():  # an untrained decoder copies o_t: make the kept tokens' losses differ
            p.add_(torch.randn_like(p) * 0.05)
        h_act = core(batch["obs"], batch["action"])[1]
        full = wm.exact_logits(h_act, batch["obs"])
        n = full.shape[2]
        rows = torch.stack([torch.randperm(n)[:7] for _ in range(6 * T)]).view(6, T, 7)
        part = wm.exact_logits(h_act, batch["obs"], rows)
        picked = full.gather(2, rows[..., None, None].expand(*rows.shape, *full.shape[3:]))
        torch.testing.assert_close(part, picked, rtol=0, atol=1e-5)

        exact = wm.loss(h_act, batch)[1]["exact"]
        wm.cfg.exact_sample = n  # every token drawn: the exact loss
        torch.testing.assert_close(wm.loss(h_act, batch, sample=True)[1]["exact"], exact, rtol=1e-5, atol=0)
        wm.cfg.exact_sample = 3
        draws = torch.stack([wm.loss(h_act, batch, sample=True)[1]["exact"] for _ in range(400)])
    assert draws.std() > 1e-3 * exact  # it is a sample ...
    assert abs(float(draws.mean() - exact)) < 4 * float(draws.std()) / 20 + 1e-6  # ... whose mean is the loss
