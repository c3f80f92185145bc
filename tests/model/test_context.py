"""The sequence context: what the agent acted on is, tensor for tensor, what it learns from."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from devlearn.agents import make_agent
from devlearn.config import DevelopmentalConfig
from devlearn.envs.vector.make import make_vector_env
from devlearn.model.context import SequenceContext

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def agent_with_window(window: int, shield_tau: float = 0.5, memory: str = "window", write: str = "always"):
    cfg = OmegaConf.structured(
        DevelopmentalConfig(n_steps=24, batch_size=64, n_epochs=1, shield_tau=shield_tau)
    )
    cfg.core.window = window
    cfg.memory.variant, cfg.memory.write, cfg.memory.capacity = (
        memory,
        write,
        8,
    )  # a small store: eviction too
    # short episodes (max_steps) and random early policies (falls) give many resets inside each segment
    env = make_vector_env("devlearn/CliffEdge-v0", 6, max_steps=9)
    return make_agent(cfg, env, seed=window, device="cpu", writer=None)


def start_streams(agent) -> None:
    """What ``learn`` does before its first rollout: reset the envs and begin the context and the rollout."""
    from devlearn.model.context import to_device

    obs, _ = agent.env.reset(seed=0)
    with torch.inference_mode():
        agent.context.begin(to_device(obs, agent.device), agent.net.core.encoder)
    agent.rollout.begin()
    agent._started = True


@pytest.mark.parametrize(
    ("window", "memory", "write"),
    [
        (1, "window", "always"),
        (4, "window", "always"),
        (16, "window", "always"),
        (4, "ssm", "always"),
        (4, "retrieval", "always"),
        (2, "hybrid", "always"),
        (4, "hybrid", "surprise"),
    ],
)
def test_acting_window_equals_update_window_and_log_probs_match(window, memory, write, tmp_path) -> None:
    """RecurrentPPO's guarantee, for every memory: the update replays what acting saw, before the first step."""
    agent = agent_with_window(window, memory=memory, write=write)
    C, R = agent.context, agent.rollout
    recorded: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
    acting_window = C.acting_window

    def spy(j: int):
        w = acting_window(j)
        mem = None if w.memory is None else w.memory.clone()
        recorded.append((j, w.obs.clone(), w.act.clone(), w.valid.clone(), mem))
        return w

    C.acting_window = spy
    start_streams(agent)
    resets = 0
    for _segment in range(3):  # later segments start from carried-over context
        recorded.clear()
        agent._collect()
        resets += int((~R.real[:, R.segment()]).sum())
        env = torch.arange(C.num_envs)
        for j, obs_enc, act, valid, mem in recorded:
            if j >= C.first + C.n_steps:  # the bootstrap value's window, not a step
                continue
            with torch.no_grad():
                w, pos = C.training_window(env, torch.full_like(env, j), agent.net.core.encoder)
                allowed = R.at(R.allowed, pos[:, -1]) if agent.shield_on else None
                logp = agent.net.evaluate(w, allowed).logp
            assert torch.equal(w.valid, valid)
            assert torch.equal(w.act[:, :-1], act[:, :-1])  # the last slot is a placeholder while acting ...
            assert torch.equal(w.act[:, -1], C.act[:, j])  # ... and the update reads the action taken
            # the update's ~500 observations are encoded by the folded pooling (ObservationEncoder._pool_folded),
            # acting's 8 by embedding then pooling: same function, sums in another order (float32 rounding of
            # unit-scale LayerNorm outputs, up to ~2e-6 seen); a wrong slot or window differs by O(1)
            torch.testing.assert_close(w.obs, obs_enc, rtol=0, atol=1e-5)
            assert (w.memory is None) == (memory == "window")
            if mem is not None:  # replayed from the segment's start state: the tokens acting read
                torch.testing.assert_close(w.memory, mem, rtol=0, atol=1e-5)
            # before the first gradient step, the update's log-probabilities are acting's
            torch.testing.assert_close(logp, R.logp[:, j], rtol=0, atol=1e-5)
        R.carry_over()
    assert resets > 0  # episodes did restart inside the segments


def test_windows_never_cross_an_episode_start() -> None:
    from gymnasium import spaces

    C = SequenceContext(
        spaces.Box(0, 9, (2,), dtype=np.int64), 2, n_steps=5, window=3, d_model=4, device="cpu"
    )
    encoder = lambda obs: obs.float().sum(-1, keepdim=True).expand(*obs.shape[:-1], 4)  # noqa: E731
    C.begin(torch.tensor([[1, 1], [2, 2]]), encoder)
    starts = [[False, False], [False, True], [False, False]]
    for t, start in enumerate(starts):
        C.put(C.first + t + 1, torch.tensor([[t, 0], [t, 1]]), torch.tensor(start), encoder)
    w = C.acting_window(C.first + 3)
    assert w.valid.tolist() == [[True, True, True], [False, True, True]]
    w2, _ = C.training_window(torch.tensor([0, 1]), torch.tensor([C.first + 3] * 2), encoder)
    assert torch.equal(w2.valid, w.valid) and torch.equal(w2.obs, w.obs)


@pytest.mark.parametrize("memory", ["ssm", "hybrid"])
def test_memory_carries_over_segments(memory) -> None:
    """A segment's memory continues the last one's: its first tokens, recomputed from the carried state
    (parameters unchanged), are the tokens acting computed for that step at the end of the segment before."""
    agent = agent_with_window(2, memory=memory)
    C, R = agent.context, agent.rollout
    start_streams(agent)
    agent._collect()
    last = C.mem[:, C.length - 1].clone()
    R.carry_over()
    agent._collect()  # re-derives position `first` from the carried state, with the same parameters
    torch.testing.assert_close(C.mem[:, C.first], last, rtol=0, atol=1e-6)
    assert not C.start[:, C.first].all()  # some episodes did run across the segment boundary


@pytest.mark.parametrize("memory", ["ssm", "hybrid"])
def test_a_window_is_the_same_whichever_sub_envs_share_its_batch(memory) -> None:
    """``training_window`` replays only the sub-envs its windows come from; a window's tokens do not change with them."""
    agent = agent_with_window(2, memory=memory)
    C = agent.context
    start_streams(agent)
    agent._collect()
    j = C.first + torch.tensor([3, 17, 9, 3, 20])
    env = torch.tensor([4, 1, 4, 0, 5])  # unsorted, one sub-env twice, others left out
    every = torch.arange(C.num_envs)
    with torch.no_grad():
        few, pos = C.training_window(env, j, agent.net.core.encoder)
        for i in range(len(env)):
            one, one_pos = C.training_window(every, torch.full_like(every, int(j[i])), agent.net.core.encoder)
            e = int(env[i])
            assert torch.equal(pos[i], one_pos[e]) and torch.equal(few.valid[i], one.valid[e])
            assert torch.equal(few.act[i], one.act[e])
            torch.testing.assert_close(few.obs[i], one.obs[e], rtol=0, atol=1e-5)
            torch.testing.assert_close(few.memory[i], one.memory[e], rtol=0, atol=1e-5)


@pytest.mark.parametrize("memory", ["window", "hybrid"])
def test_minibatches_with_memory_are_grouped_by_sub_env(memory) -> None:
    """Each epoch's minibatches cover every transition once; with memory tokens each holds few sub-envs (it replays
    only those), without them they are cut from a plain permutation, as before."""
    agent = agent_with_window(2, memory=memory)  # 6 sub-envs x 24 steps, batch 64
    env = torch.arange(6).repeat_interleave(24)[torch.randperm(144, generator=torch.Generator().manual_seed(1))]
    state = agent.gen.get_state()
    batches = agent.updater.minibatches(env)
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(144))
    assert [len(b) for b in batches] == [64, 64, 16]
    if memory == "window":
        agent.gen.set_state(state)
        assert torch.equal(torch.cat(batches), torch.randperm(144, generator=agent.gen))
    else:  # 64 transitions of sub-envs with 24 each: at most 4 sub-envs (3 whole, 2 cut), not all 6
        assert all(len(env[b].unique()) <= 4 for b in batches)
        assert len(env[batches[0][:16]].unique()) > 1  # shuffled within: its first windows are not one sub-env's


def test_update_split_pass_equals_one_pass() -> None:
    """``Update.evaluate`` runs the world model's windows in a core pass of their own: same values as one pass."""
    agent = agent_with_window(4)
    C, R = agent.context, agent.rollout
    start_streams(agent)
    agent._collect()
    env = torch.arange(C.num_envs).repeat(4)
    j = C.first + torch.arange(len(env)) % C.n_steps
    with torch.no_grad():
        w, pos = C.training_window(env, j, agent.net.core.encoder)
        allowed = R.at(R.allowed, pos[:, -1])
        one = agent.net.evaluate(w, allowed)
        for n_wm in (1, 5, len(env)):
            split = agent.updater.evaluate(w, allowed, n_wm)
            for name in ("logp", "entropy", "value"):
                torch.testing.assert_close(getattr(split, name), getattr(one, name), rtol=0, atol=1e-6)
            k = agent.updater.wm_steps
            torch.testing.assert_close(split.h_act, one.h_act[:, -k:], rtol=0, atol=1e-6)


def test_evaluation_with_surprise_writes_stores_what_training_would() -> None:
    """``memory.write=surprise``: the evaluation policy measures surprise as acting in training does.

    Without it the store's gate saw a surprise of 0 (not above the threshold) and evaluation stored nothing,
    not even the episode's first observation, which is pinned with an infinite surprise.
    """
    agent = agent_with_window(2, memory="hybrid", write="surprise")
    env = agent.env
    policy = agent.policy(deterministic=True)
    obs, _ = env.reset(seed=3)
    start = np.ones(env.num_envs, dtype=bool)
    obs, *_ = env.step(policy(obs, start))
    store = policy.context.memory_state.store
    assert ((store.steps == 0) & (store.surprise == torch.inf)).any(1).all()  # each env's very first observation
    start[:] = False
    for _ in range(5):
        obs, _, terminated, truncated, _ = env.step(policy(obs, start))
        start = terminated | truncated
    store = policy.context.memory_state.store
    assert (store.size >= 2).all(), store.size  # the first observation and the surprising ones after it
    first = store.steps == 0
    assert (store.surprise[first] == torch.inf).all()  # the episode's first observation: pinned
    finite = store.filled & ~first
    assert finite.any() and torch.isfinite(store.surprise[finite]).all() and (store.surprise[finite] > 0).all()


def test_gather_rows_backward_is_the_same_run_to_run_on_two_threads() -> None:
    """Overlapping windows repeat rows; ``x[index]``'s backward sums into them in an order that changes from call to
    call on a multi-threaded CPU. ``gather_rows`` must give ``x[index]``'s values and one gradient, the 1-thread one."""
    from devlearn.model.context import gather_rows

    torch.manual_seed(0)
    x = torch.randn(487, 64, requires_grad=True)  # the default agent's minibatch: 256 windows of 4 steps
    index, weight = torch.randint(0, 487, (256, 4)), torch.randn(256, 4, 64)

    def grad() -> torch.Tensor:
        x.grad = None
        y = gather_rows(x, index)
        assert torch.equal(y, x[index])
        y.backward(weight)
        return x.grad.clone()

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = grad()
        torch.set_num_threads(2)
        assert all(torch.equal(grad(), single) for _ in range(20))
    finally:
        torch.set_num_threads(threads)
