"""Imagination: every candidate action's consequence rolled forward; the shield and the update read it; the monitor checks it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from devlearn.agents import make_agent
from devlearn.agents.developmental.imagine import imagine
from devlearn.agents.developmental.shield import ShieldMonitor, auroc, step_copies
from devlearn.config import DevelopmentalConfig
from devlearn.envs.cliff_edge.env import FORWARD
from devlearn.envs.vector.make import make_vector_env
from devlearn.model.context import tree_map

CLIFF = "devlearn/CliffEdge-v0"
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def agent_on_cliff(num_envs: int = 4, **overrides):
    cfg = OmegaConf.structured(DevelopmentalConfig(n_steps=16, batch_size=32))
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    env = make_vector_env(CLIFF, num_envs)
    agent = make_agent(cfg, env, seed=0, device="cpu", writer=None)
    agent.collector.start(0)
    return agent, env


def set_heads(world_model, p_catastrophe: float, p_termination: float) -> None:
    """Heads that answer the same probability whatever the state (the last layer's bias alone)."""
    with torch.no_grad():
        for head, p, shift in (
            (world_model.catastrophe_head, p_catastrophe, math.log(world_model.cfg.catastrophe_pos_weight)),
            (world_model.termination_head, p_termination, 0.0),
        ):
            head[-1].weight.zero_()
            head[-1].bias.fill_(math.log(p / (1 - p)) + shift)  # catastrophe_prob subtracts log(pos_weight)


def window_and_obs(agent):
    C = agent.context
    j = C.first
    return C.acting_window(j), tree_map(lambda b: b[:, j], C.obs)


def test_one_step_imagination_is_the_shield_of_before():
    agent, _ = agent_on_cliff()
    w, last = window_and_obs(agent)
    net = agent.net
    with torch.no_grad():
        im = imagine(net.core, net.world_model, net.actor, w, last, net.candidates, 1, 0.9)
        h_obs, h_act = net.core.candidate_states(w.obs, w.act, w.valid, net.candidates, w.memory)
        expected = net.world_model.catastrophe_prob(h_act)
    torch.testing.assert_close(im.risk, expected)
    torch.testing.assert_close(im.h_obs, h_obs)
    assert im.plan.shape == (4, 3, 1) and (im.plan[..., 0] == net.candidates).all()


def test_risk_is_the_discounted_chance_of_a_catastrophe_before_the_episode_ends():
    agent, _ = agent_on_cliff()
    net, c, d, gamma = agent.net, 0.1, 0.3, 0.9
    set_heads(net.world_model, c, d)
    w, last = window_and_obs(agent)
    with torch.no_grad():
        im = imagine(net.core, net.world_model, net.actor, w, last, net.candidates, 3, gamma)
    alive = 1 - max(c, d)
    expected = c + gamma * alive * c + gamma**2 * alive**2 * c
    torch.testing.assert_close(im.risk, torch.full_like(im.risk, expected), rtol=1e-4, atol=1e-5)
    assert im.plan.shape == (4, 3, 3)
    assert (im.plan[..., 0] == net.candidates).all()  # the candidate first, then the policy's own actions
    assert ((im.plan >= 0) & (im.plan < 3)).all()


def test_the_shield_masks_what_imagination_fears_and_keeps_one_action():
    agent, _ = agent_on_cliff(shield_tau=0.5)
    set_heads(agent.net.world_model, 0.9, 0.9)  # every action imagined to fall
    w, last = window_and_obs(agent)
    with torch.no_grad():
        d = agent.net.decide(w, False, agent.gen, last)
    assert d.allowed.sum(-1).tolist() == [1, 1, 1, 1]  # all dangerous: the least dangerous one stays
    set_heads(agent.net.world_model, 0.01, 0.01)
    with torch.no_grad():
        d = agent.net.decide(w, False, agent.gen, last)
    assert d.allowed.all()


def test_the_update_moves_the_policy_away_from_what_it_imagined_falls_into():
    """An imagined fall teaches as a real one: the risky action's probability drops, though it was never taken."""
    agent, _ = agent_on_cliff(num_envs=2, shield_tau=1.0, **{"imagine.coef": 5.0, "world_model_coef": 0.0})
    agent.collector.collect()
    R = agent.rollout
    R.danger.zero_()
    R.danger[..., FORWARD] = 1.0  # imagination says: forward falls, everywhere
    C = agent.context
    w = C.acting_window(C.first)
    with torch.no_grad():
        before = torch.softmax(agent.net.actor(agent.net.core.states(w.obs, w.act, w.valid, w.memory, 1)[0][:, -1]), -1)
    agent.updater(0)
    with torch.no_grad():
        after = torch.softmax(agent.net.actor(agent.net.core.states(w.obs, w.act, w.valid, w.memory, 1)[0][:, -1]), -1)
    assert (after[:, FORWARD] < before[:, FORWARD]).all(), (before, after)


def test_the_replay_keeps_the_rollouts_falls_and_rides_in_the_checkpoint(tmp_path):
    agent, _ = agent_on_cliff(num_envs=2)
    agent.collector.collect()
    R, replay = agent.rollout, agent.updater.replay
    s = R.segment()
    R.catastrophe[:, s] = False
    R.catastrophe[0, s.start + 3] = True  # one fall, at env 0, step 3
    R.real[0, s.start + 3] = True
    agent.updater.remember_catastrophes()
    assert replay.size == 1
    torch.testing.assert_close(replay.obs[0, -1], agent.context.obs[0, s.start + 3])
    w = replay.sample(5, agent.gen, agent.net.core.encoder)
    assert w.obs.shape[:2] == (5, agent.context.window) and w.valid[:, -1].all()
    agent.save(tmp_path)
    again, _ = agent_on_cliff(num_envs=2)
    again.load(tmp_path)
    assert again.updater.replay.size == 1
    torch.testing.assert_close(again.updater.replay.obs, replay.obs)


def test_auroc_counts_ties_half_and_needs_both_classes():
    assert auroc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([True, True, False, False])) == 1.0
    assert auroc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    assert auroc(np.array([0.1, 0.9]), np.array([True, False])) == 0.0
    assert auroc(np.array([0.3]), np.array([True])) is None


def test_ground_truth_follows_each_candidates_plan_in_copies_of_the_env():
    env = make_vector_env(CLIFF, 2)
    env.reset(seed=0)
    plans = np.zeros((2, 3, 4), dtype=np.int64)
    plans[:, FORWARD] = FORWARD  # walk forward four times
    first, within = step_copies(env, plans)
    assert first.shape == within.shape == (2, 3)
    assert (within >= first).all()  # a first-step fall is a fall within the horizon
    assert not within[:, [a for a in range(3) if a != FORWARD]].any()  # turning on the spot never falls
    # the real env was not moved: stepping it now gives what a fresh copy gives
    again, _ = step_copies(env, plans)
    assert (again == first).all()


def test_a_rollout_where_the_world_had_a_fall_and_the_shield_never_fired_is_reported():
    monitor = ShieldMonitor()
    monitor._truth_had_catastrophe = True  # a probe of this rollout found a catastrophe action
    real = torch.ones(2, 4, dtype=torch.bool)
    allowed = torch.ones(2, 4, 3, dtype=torch.bool)
    logs = monitor.scalars(real, allowed, torch.zeros(2, 4, 3), torch.zeros(2, 4, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.bool))
    assert logs["shield/silent"] == 1.0
    monitor._truth_had_catastrophe = True
    allowed[0, 1, FORWARD] = False  # it fired once
    logs = monitor.scalars(real, allowed, torch.zeros(2, 4, 3), torch.zeros(2, 4, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.bool))
    assert logs["shield/silent"] == 0.0
    assert "shield/silent" not in monitor.scalars(real, allowed, torch.zeros(2, 4, 3), torch.zeros(2, 4, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.bool))
