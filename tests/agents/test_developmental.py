"""The developmental agent: world model, shield, PPO learning, checkpoints, rollback, logging, env kinds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from devlearn import checkpoint
from devlearn.agents import make_agent, observation_wrappers
from devlearn.agents.developmental.agent import DevelopmentalAgent
from devlearn.agents.developmental.imagine import imagine
from devlearn.agents.developmental.intrinsic import IntrinsicReward
from devlearn.agents.developmental.ppo import gae
from devlearn.agents.developmental.shield import allowed_actions
from devlearn.agents.sb3.vec import SB3VecEnv
from devlearn.app.evaluate import run_episodes
from devlearn.config import AGENT_SCHEMAS, upgrade
from devlearn.envs.cliff_edge.env import FORWARD, LAVA
from devlearn.envs.vector.make import make_vector_env
from devlearn.logging.grid_image import MIN_PANEL
from devlearn.logging.runlog import RunLog
from devlearn.model.context import Window
from devlearn.model.world_model import WorldModel
from devlearn.registry import make

CLIFF = "devlearn/CliffEdge-v0"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class RecordingLog(RunLog):
    """A RunLog that also keeps every scalar it is given, by tag."""

    def __init__(self, writer: SummaryWriter, total: int) -> None:
        super().__init__(writer, total, progress=False)
        self.values: dict[str, list[float]] = {}

    def scalars(self, values: dict[str, float], step: int) -> None:
        super().scalars(values, step)
        for tag, value in values.items():
            self.values.setdefault(tag, []).append(float(value))


def config(name: str = "developmental", **overrides: Any) -> Any:
    cfg = OmegaConf.structured(AGENT_SCHEMAS[name](n_steps=32, batch_size=64, n_epochs=4))
    cfg.core.window = 4
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def build(tmp_path: Path, cfg: Any, env_id: str = CLIFF, num_envs: int = 4, seed: int = 0, **env_kwargs: Any):
    wrappers = observation_wrappers(cfg.name, env_id, **env_kwargs)
    env = make_vector_env(env_id, num_envs, wrappers=wrappers, **env_kwargs)
    writer = SummaryWriter(str(tmp_path / "tb"))
    agent = make_agent(cfg, env, seed=seed, device="cpu", writer=writer)
    return agent, RecordingLog(writer, 10**9), writer


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[DevelopmentalAgent, RecordingLog, Path]:
    """A developmental agent trained briefly on CliffEdge with the shield off (so it meets the cliff)."""
    run_dir = tmp_path_factory.mktemp("cliff")
    # No novelty bonus (the default's 0.001): this fixture measures the world model on the behaviour it was written for.
    cfg = config(learning_rate=1e-3, shield_tau=1.0, intrinsic_coef=0.0, **{"world_model.catastrophe_pos_weight": 1.0})
    # The full map, as before CliffEdge defaulted to the 7x7 egocentric view (there: 0.70 token accuracy at this budget).
    agent, log, writer = build(run_dir, cfg, view="full")
    agent.learn(3072, log, run_dir, checkpoint_every=1024)
    writer.flush()
    return agent, log, run_dir


def test_world_model_learns_cliff_edge(trained) -> None:
    agent, log, _ = trained
    changed, whole, copy = (log.values[f"world_model/{k}"] for k in ("acc_changed", "acc_obs", "acc_obs_copy"))
    # a copier scores acc_changed 0: the model must predict the cells the action changed, the agent's move
    assert changed[-1] > 0.5 and changed[-1] > changed[0] + 0.3, changed
    assert whole[-1] > copy[-1] + 0.1, (whole, copy)
    assert log.values["world_model/exact"][-1] < log.values["world_model/exact"][0]


def lava_ahead(obs: np.ndarray) -> bool:
    # CliffEdge's default egocentric view: the agent stands at (3, 6) facing up the image, so the cell ahead is (3, 5).
    return obs[3, 5, 0] == LAVA


def observations(n: int, seed: int = 0, **env_kwargs: Any) -> np.ndarray:
    """CliffEdge observations from random play."""
    env = make(CLIFF, **env_kwargs)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    seen = []
    for _ in range(n):
        seen.append(obs)
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(3)))
        if terminated or truncated:
            obs, _ = env.reset()
    return np.stack(seen)


def force_forward(agent: DevelopmentalAgent) -> None:
    """Make the policy want to step forward whatever it sees (so only the shield can stop it)."""
    with torch.no_grad():
        agent.net.actor[2].weight.zero_()
        agent.net.actor[2].bias.copy_(torch.tensor([0.0, 0.0, 20.0]))


def test_shield_masks_the_steps_the_world_says_are_falls(tmp_path, monkeypatch) -> None:
    """Told the true consequence of every action (from copies of the env, not from the test's own reading of the
    observation), the shielded policy keeps walking and never falls; with the shield off the same policy falls."""
    import copy

    def walk(tau: float) -> tuple[int, int]:
        agent, _, _ = build(tmp_path / str(tau), config(shield_tau=tau))
        force_forward(agent)  # the policy itself would always step forward: only the shield can stop it
        truth: dict[str, torch.Tensor] = {}
        monkeypatch.setattr(agent.wm, "catastrophe_prob", lambda h: truth["danger"].expand(h.shape[:-1]))
        env = make_vector_env(CLIFF, 4)
        policy = agent.policy(True)
        obs, _ = env.reset(seed=3)
        start, resetting = np.ones(4, dtype=bool), np.zeros(4, dtype=bool)
        falls = forward = 0
        for _ in range(150):
            danger = np.zeros((4, 3), dtype=np.float32)
            for a in range(3):  # the world's answer for each action, from the same state and RNG
                _, _, _, _, info = copy.deepcopy(env).step(np.full(4, a))
                danger[:, a] = info["catastrophe"]
            truth["danger"] = torch.as_tensor(danger)
            actions = policy(obs, start)
            obs, _, terminated, truncated, info = env.step(actions)
            falls += int((info["catastrophe"] & ~resetting).sum())
            forward += int(((actions == FORWARD) & ~resetting).sum())
            done = (terminated | truncated) & ~resetting
            start, resetting = resetting, done
        env.close()
        return falls, forward

    falls, forward = walk(0.5)
    assert falls == 0 and forward > 100  # never off the edge, and not passive: most steps still go forward
    assert walk(1.0)[0] > 0  # tau = 1: the shield is off and the same policy walks off the cliff


def test_shield_keeps_the_least_dangerous_action(tmp_path, monkeypatch) -> None:
    agent, _, _ = build(tmp_path, config(shield_tau=0.5))
    force_forward(agent)
    obs = observations(50)
    danger = torch.tensor([0.9, 0.7, 0.8])  # every action above tau: RIGHT (1) is the least dangerous
    monkeypatch.setattr(agent.wm, "catastrophe_prob", lambda h: danger.expand(h.shape[:-1]))
    assert (agent.policy(True)(obs, np.ones(len(obs), dtype=bool)) == 1).all()


@pytest.mark.slow
def test_learned_shield_refuses_the_step_into_lava_and_allows_the_safe_moves(tmp_path) -> None:
    """After a short run of the agent's own loop, on scripted cliff states: forward into lava is refused, the rest allowed.

    The shield reads the world model's catastrophe head through ``imagine``. Falls are 1-4% of transitions here,
    and each is read by the world-model loss a few times before its rollout is gone: without the catastrophe replay
    the head ranked lava-ahead states well but never crossed tau=0.5 (the shield never fired). With it, it does.
    """
    cfg = config(learning_rate=1e-3, shield_tau=1.0, n_steps=64, batch_size=128)  # it meets the cliff unshielded
    agent, log, _ = build(tmp_path, cfg, num_envs=8)
    agent.learn(16384, log, tmp_path, checkpoint_every=10**6)
    obs = observations(600)
    ahead = np.array([lava_ahead(o) for o in obs])
    assert ahead.sum() >= 20  # random play meets the edge: the check has positives to refuse
    with torch.no_grad():
        o = agent.net.core.encoder(torch.as_tensor(obs))[:, None]
        act = torch.zeros(len(obs), 1, dtype=torch.long)
        w = Window(o, act, torch.ones(len(obs), 1, dtype=torch.bool))
        risk = imagine(
            agent.net.core, agent.wm, agent.net.actor, w, torch.as_tensor(obs), agent.net.candidates, 1, 0.9
        ).risk
    allowed = allowed_actions(risk, 0.5).numpy()  # the shipped tau
    assert (~allowed[ahead, FORWARD]).mean() >= 0.9, risk[ahead, FORWARD]  # the step into lava is refused
    assert allowed[~ahead, FORWARD].mean() >= 0.95, risk[~ahead, FORWARD]  # forward on safe ground is not
    turns = [a for a in range(allowed.shape[1]) if a != FORWARD]
    assert allowed[:, turns].mean() >= 0.99  # turning never falls


def test_shield_is_measured_against_the_world(tmp_path) -> None:
    """A head that fears every step masks everything: ground truth from env copies says most masks were safe."""
    agent, log, _ = build(tmp_path, config(shield_tau=0.5))
    force_forward(agent)
    with torch.no_grad():  # a head that fears every step: the shield fires everywhere
        agent.wm.catastrophe_head[-1].bias.fill_(10.0)
    agent.learn(4 * 32 * 4, log, tmp_path, checkpoint_every=10**6)
    assert log.values["shield/fire_rate"][0] == 1.0
    assert all(n > 0 for n in log.values["shield/probed_pairs"])
    # every (state, action) pair was masked, and most steps are not falls: precision is low, false masks high
    precision, false_masks = log.values["shield/precision"], log.values["shield/false_mask_rate"]
    assert all(0.0 <= p < 0.5 for p in precision) and all(f == pytest.approx(1 - p) for f, p in zip(false_masks, precision, strict=True))
    if "shield/recall" in log.values:  # a probed state with a real catastrophe: masking everything catches it
        assert all(r == 1.0 for r in log.values["shield/recall"])
    assert log.values["shield/ece"][-1] > 0.5  # p ~ 1 everywhere against a low true rate: badly calibrated


def test_candidate_states_equal_full_windows(trained) -> None:
    agent, _, _ = trained
    core = agent.net.core
    full = observations(24, view="full")  # what the `trained` agent saw
    obs = torch.as_tensor(full).view(6, 4, *full.shape[1:])
    act = torch.randint(3, (6, 4))
    mask = torch.ones(6, 4, dtype=torch.bool)
    mask[0, :2] = mask[1, :3] = False
    with torch.no_grad():
        h_obs, imagined = core.candidate_states(core.encoder(obs), act, mask, agent.net.candidates)
        for a in range(3):
            act[:, -1] = a
            full_obs, full_act = core(obs, act, mask)
            torch.testing.assert_close(h_obs, full_obs[:, -1])
            torch.testing.assert_close(imagined[:, a], full_act[:, -1])
        # masked steps (another episode's) do not reach the window's own steps
        obs2, act2 = obs.clone(), act.clone()
        obs2[0, :2], act2[0, :2] = 0, 2
        torch.testing.assert_close(core(obs2, act2, mask)[1][0, 2:], core(obs, act, mask)[1][0, 2:])


def test_gae_bootstraps_truncation_not_termination() -> None:
    reward = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    value = torch.tensor([[0.5, 7.0], [0.5, 7.0]])  # value[:, 1] = V(final observation of step 0)
    terminated = torch.tensor([[True, False], [False, False]])
    truncated = torch.tensor([[False, False], [True, False]])
    adv = gae(reward, value, torch.zeros(2), terminated, terminated | truncated, gamma=0.9, lam=0.95)
    assert adv[0, 0] == pytest.approx(1.0 - 0.5)  # terminated: no bootstrap
    assert adv[1, 0] == pytest.approx(1.0 + 0.9 * 7.0 - 0.5)  # truncated: bootstrap, chain cut


def test_autoreset_steps_are_not_real_and_windows_stay_in_episode(trained) -> None:
    agent, _, _ = trained
    C, R = agent.context, agent.rollout
    agent._collect()
    s = R.segment()
    done = R.terminated[:, s] | R.truncated[:, s]
    fake = ~R.real[:, s]
    assert done.any() and fake.any()
    # an autoreset (not real) transition follows every real episode end, and carries no reward
    assert torch.equal(fake[:, 1:], done[:, :-1] & ~fake[:, :-1])
    assert (R.reward[:, s][fake] == 0).all()
    # after it a new episode starts: no window reaches back across it
    for e, t in fake[:, :-1].nonzero().tolist():
        valid = C.acting_window(C.first + t + 1).valid
        assert valid[e].tolist() == [False] * (C.window - 1) + [True]
    R.carry_over()


def test_short_run_improves_return(tmp_path) -> None:
    """On MiniGrid-Empty-5x5 a few thousand steps reach the goal (two seeds: one short run is a coin toss)."""
    wrappers = observation_wrappers("developmental", "MiniGrid-Empty-5x5-v0")
    gains, finals = [], []
    for seed in (0, 1):
        cfg = config(learning_rate=1e-3, n_steps=64, batch_size=128)
        agent, log, _ = build(tmp_path / str(seed), cfg, env_id="MiniGrid-Empty-5x5-v0", num_envs=8, seed=seed)

        def mean_return(agent: DevelopmentalAgent) -> float:
            episodes = run_episodes(agent.policy(True), "MiniGrid-Empty-5x5-v0", 16, seed=123, wrappers=wrappers)
            return float(np.mean([e["return"] for e in episodes]))

        before = mean_return(agent)
        agent.learn(6144, log, tmp_path / str(seed), checkpoint_every=10**6)
        finals.append(mean_return(agent))
        gains.append(finals[-1] - before)
    assert max(finals) > 0.6 and np.mean(gains) > 0.3, (gains, finals)


def state_of(agent: DevelopmentalAgent) -> dict[str, Any]:
    return {
        "params": {k: v.clone() for k, v in agent.net.state_dict().items()},
        "optimizer": agent.optimizer.state_dict(),
        "generator": agent.gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state()[1].copy(),
        "counters": (agent.num_timesteps, agent.updates, agent.rollbacks),
    }


def test_resume_restores_step_params_optimizer_and_rng(tmp_path) -> None:
    agent, log, _ = build(tmp_path, config())
    agent.learn(256, log, tmp_path, checkpoint_every=10**6)  # ends with a checkpoint
    saved = state_of(agent)
    assert saved["counters"][0] == 256 and saved["counters"][1] == 2
    torch.rand(5), np.random.rand()  # move the global RNGs on
    fresh, log2, _ = build(tmp_path / "fresh", config(), seed=1)
    assert not torch.equal(fresh.net.core.encoder.pool.weight, agent.net.core.encoder.pool.weight)
    fresh.load(tmp_path)
    loaded = state_of(fresh)
    assert loaded["counters"] == saved["counters"]
    for key, value in saved["params"].items():
        assert torch.equal(loaded["params"][key], value), key
    for key, slot in saved["optimizer"]["state"].items():
        for name, value in slot.items():
            assert torch.equal(loaded["optimizer"]["state"][key][name], value)
    assert torch.equal(loaded["generator"], saved["generator"])
    assert torch.equal(loaded["torch_rng"], saved["torch_rng"])
    assert np.array_equal(loaded["numpy_rng"], saved["numpy_rng"])
    fresh.learn(384, log2, tmp_path, checkpoint_every=10**6)  # one more rollout from the saved step
    assert fresh.num_timesteps == 384 and fresh.updates == 3


def test_nan_is_rolled_back_and_never_saved(tmp_path, capsys) -> None:
    agent, log, _ = build(tmp_path, config())
    agent.learn(128, log, tmp_path, checkpoint_every=64)
    with torch.no_grad():
        agent.net.core.encoder.pool.weight[0, 0] = float("nan")  # a diverged update
    with pytest.raises(ValueError, match="non-finite"):
        agent.save(tmp_path)
    agent.learn(384, log, tmp_path, checkpoint_every=64)
    assert agent.rollbacks == 1
    assert "rolled back" in capsys.readouterr().out
    assert checkpoint.all_finite(agent.net)
    state = checkpoint.load(tmp_path / "checkpoint.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert state["rollbacks"] == 1 and log.values["train/rollbacks"][-1] == 1


def test_nan_loss_is_rolled_back(tmp_path, monkeypatch) -> None:
    agent, log, _ = build(tmp_path, config())
    agent.learn(128, log, tmp_path, checkpoint_every=64)
    before = {k: v.clone() for k, v in agent.net.state_dict().items()}
    loss = WorldModel.loss

    def nan_loss(self, h_act, batch, *args):
        total, logs, surprise = loss(self, h_act, batch, *args)
        return total * float("nan"), logs, surprise

    monkeypatch.setattr(WorldModel, "loss", nan_loss)
    agent.learn(256, log, tmp_path, checkpoint_every=64)
    assert agent.rollbacks == 1
    after = agent.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # back to the last checkpoint


def test_ablation_has_no_world_model_and_no_shield(tmp_path, monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("the ablation computed a world-model loss")

    monkeypatch.setattr(WorldModel, "loss", forbidden)
    agent, log, _ = build(tmp_path, config("ablation"))
    assert agent.wm is None and not agent.shield_on
    agent.learn(256, log, tmp_path, checkpoint_every=10**6)
    assert "train/policy_loss" in log.values
    assert not [tag for tag in log.values if tag.startswith(("world_model/", "shield/"))]


def test_tensorboard_has_scalars_and_predicted_vs_actual(trained) -> None:
    _, _, run_dir = trained
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    expected = {
        *(
            f"train/{k}"
            for k in (
                "policy_loss",
                "value_loss",
                "entropy",
                "approx_kl",
                "clip_fraction",
                "explained_variance",
                "learning_rate",
                "rollbacks",
            )
        ),
        *(
            f"world_model/{k}"
            for k in (
                "exact",
                "acc_token",
                "acc_obs",
                "reward",
                "termination",
                "catastrophe",
                "latent",
                "total",
                "surprise_mean",
            )
        ),
        "rollout/return",
        "time/steps_per_s",
    }
    assert expected <= set(tags["scalars"]), expected - set(tags["scalars"])
    assert "world_model/predicted_vs_actual" in tags["images"]
    image = events.Images("world_model/predicted_vs_actual")[-1]
    assert image.width >= 2 * MIN_PANEL and image.height >= MIN_PANEL  # two readable panels side by side


@pytest.mark.parametrize(
    ("env_id", "num_envs", "kwargs"),
    [
        (CLIFF, 1, {}),
        ("MiniGrid-Empty-5x5-v0", 2, {}),  # Dict observation, mission dropped
        ("devlearn/Inbox-v0", 2, {"num_emails": 10}),  # text
    ],
)
def test_trains_on_other_envs(tmp_path, env_id, num_envs, kwargs) -> None:
    cfg = config(shield_tau=0.5)
    agent, log, writer = build(tmp_path, cfg, env_id=env_id, num_envs=num_envs, **kwargs)
    agent.learn(192, log, tmp_path, checkpoint_every=10**6)
    writer.flush()
    assert agent.num_timesteps >= 192 and np.isfinite(log.values["world_model/total"]).all()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    kind = "tensors" if env_id == "devlearn/Inbox-v0" else "images"  # text is stored as a tensor summary
    assert "world_model/predicted_vs_actual" in " ".join(events.Tags()[kind])
    actions = agent.policy(False)(*first_batch(env_id, num_envs, **kwargs))
    assert actions.shape == (num_envs,)


def first_batch(env_id: str, num_envs: int, **kwargs: Any) -> tuple[Any, np.ndarray]:
    wrappers = observation_wrappers("developmental", env_id, **kwargs)
    env = make_vector_env(env_id, num_envs, wrappers=wrappers, **kwargs)
    obs, _ = env.reset(seed=0)
    env.close()
    return obs, np.ones(num_envs, dtype=bool)


def test_surprise_becomes_an_intrinsic_reward(tmp_path, monkeypatch) -> None:
    """The rewards GAE sees are the env's plus ``intrinsic_coef`` x surprise on real transitions only."""
    import devlearn.agents.developmental.update as update_module

    seen = []

    def recording_gae(reward, *args, **kwargs):
        seen.append((reward.clone(), agent.rollout.reward[:, agent.rollout.segment()].clone(),
                     agent.rollout.real[:, agent.rollout.segment()].clone()))  # fmt: skip
        return gae(reward, *args, **kwargs)

    monkeypatch.setattr(update_module, "gae", recording_gae)
    agent, log, _ = build(tmp_path, config(intrinsic="surprise", intrinsic_coef=0.5))
    agent.learn(256, log, tmp_path, checkpoint_every=10**6)
    surprise = log.values["world_model/intrinsic_surprise_mean"]
    assert surprise and all(s > 0 for s in surprise)  # an untrained model is surprised
    for (used, env_reward, real), mean in zip(seen, surprise, strict=True):
        bonus = used - env_reward
        assert (bonus[real] > 0).all() and (bonus[~real] == 0).all()
        assert bonus[real].mean().item() == pytest.approx(0.5 * mean, rel=1e-4)
    plain, plain_log, _ = build(tmp_path / "plain", config(intrinsic_coef=0.0))
    plain.learn(256, plain_log, tmp_path / "plain", checkpoint_every=10**6)
    assert "world_model/intrinsic_surprise_mean" not in plain_log.values
    assert "rollout/novelty_rate" not in plain_log.values  # intrinsic_coef=0: no bonus, whatever the kind


def test_intrinsic_surprise_needs_the_world_model(tmp_path) -> None:
    with pytest.raises(Exception, match="intrinsic_coef > 0 needs agent.world_model_coef > 0"):
        build(tmp_path, config(world_model_coef=0.0, intrinsic="surprise", intrinsic_coef=0.5))


@pytest.mark.parametrize("name", ["developmental", "ablation"])
def test_novelty_bonus_reaches_gae_and_not_the_episode_returns(tmp_path, monkeypatch, name) -> None:
    """intrinsic=novelty: GAE sees the env's reward + coef on each step that reached a state new to its episode
    (its SimHash key not yet in the env's set), never on a reset; the logged episode returns stay the env's."""
    import devlearn.agents.developmental.update as update_module

    seen = []

    def recording_gae(reward, *args, **kwargs):
        s = agent.rollout.segment()
        seen.append((reward.clone(), agent.rollout.reward[:, s].clone(), agent.rollout.real[:, s].clone()))
        return gae(reward, *args, **kwargs)

    monkeypatch.setattr(update_module, "gae", recording_gae)
    cfg = config(name, intrinsic_coef=0.25) if name == "ablation" else config(intrinsic_coef=0.25, world_model_coef=0.0)
    agent, log, _ = build(tmp_path, cfg)
    finished, episodes = [], RunLog.episodes

    def recording_episodes(self, done):
        finished.extend(done)
        return episodes(self, done)

    monkeypatch.setattr(RunLog, "episodes", recording_episodes)
    agent.learn(1024, log, tmp_path, checkpoint_every=10**6)
    rates = log.values["rollout/novelty_rate"]
    assert len(rates) == len(seen) == 8 and all(0 < r < 1 for r in rates), rates  # revisits happen: not all new
    for (used, env_reward, real), rate in zip(seen, rates, strict=True):
        bonus = used - env_reward
        assert set(bonus.unique().tolist()) <= {0.0, 0.25} and (bonus[~real] == 0).all()
        assert (bonus[real] > 0).float().mean().item() == pytest.approx(rate)
    # CliffEdge pays 0 unless the goal is reached (then at most 1): a logged return holding the bonus (0.25 for
    # each new state) would be positive without success
    assert len(finished) > 5
    assert all(e["return"] == 0.0 for e in finished if not e["success"])
    assert all(0 < e["return"] <= 1 for e in finished if e["success"])


@pytest.mark.parametrize("name", ["developmental", "ablation", "ppo"])
def test_a_run_from_before_agent_intrinsic_still_builds(tmp_path, name) -> None:
    """``devlearn eval`` rebuilds an agent from the run's stored config, which may predate ``agent.intrinsic``:
    ``devlearn.config.upgrade`` brings it to today's schema first, with no bonus, as that run had."""
    old = OmegaConf.to_container(OmegaConf.structured(AGENT_SCHEMAS[name](n_steps=32, batch_size=64)))
    for key in ("intrinsic", "novelty_bits") + (("intrinsic_coef",) if name != "developmental" else ()):
        old.pop(key, None)  # the ablation and SB3 had no intrinsic_coef; the developmental agent had it alone
    if name == "developmental":
        old["intrinsic_coef"] = 0.0  # its default then
    agent, _, _ = build(tmp_path, upgrade(OmegaConf.create({"agent": old})).agent)
    if name == "ppo":
        assert isinstance(agent.venv, SB3VecEnv)  # no NoveltyBonus wrapper
    else:
        assert type(agent.intrinsic) is IntrinsicReward  # the base callback: no bonus


def test_policy_step_does_not_shrink_when_the_world_model_weight_grows(tmp_path) -> None:
    """PPO and world-model gradients are clipped apart: the world-model loss scale cannot shrink the policy's update."""
    kl = {}
    for coef in (1.0, 1000.0):
        agent, log, _ = build(tmp_path / str(coef), config(world_model_coef=coef, shield_tau=1.0, n_epochs=2))
        agent.learn(3 * 4 * 32, log, tmp_path / str(coef), checkpoint_every=10**6)
        kl[coef] = float(np.mean(log.values["train/approx_kl"]))
        assert log.values["train/grad_norm"] and log.values["world_model/grad_norm"]
    assert kl[1000.0] > 0.5 * kl[1.0], kl
