"""The Memory module: variants, acting step by step equals the update's recompute, episode isolation, gradients."""

from __future__ import annotations

import pytest
import torch

from devlearn.model.memory import VARIANTS, Memory, MemoryConfig

D = 16


def segment(e: int, t: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(e, t, D, generator=gen)
    start = torch.zeros(e, t, dtype=torch.bool)
    start[:, 0] = True
    surprise = torch.rand(e, t, generator=gen)
    return emb, start, surprise


def act(memory: Memory, state, emb, start, surprise):
    """The acting path: one ``step`` per time step."""
    tokens = [memory.step(state, emb[:, i], start[:, i], surprise[:, i]) for i in range(emb.shape[1])]
    return None if tokens[0] is None else torch.stack(tokens, 1)


def assert_same_state(a, b):
    assert torch.equal(a.t, b.t)
    if a.ssm is not None:
        torch.testing.assert_close(a.ssm, b.ssm, atol=1e-5, rtol=0)
    if a.store is not None:
        for name in ("steps", "filled", "surprise", "keys"):
            assert torch.equal(getattr(a.store, name), getattr(b.store, name)), name


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_gives_its_number_of_tokens(one_thread, variant):
    memory = Memory(D, MemoryConfig(variant=variant, k=3, capacity=8))
    expected = {"none": 0, "window": 0, "ssm": 1, "retrieval": 3 + 1, "hybrid": 1 + 3 + 1}[variant]  # gist, top-k, soft read
    assert memory.n_tokens == expected
    emb, start, surprise = segment(2, 5)
    tokens = act(memory, memory.initial_state(2), emb, start, surprise)
    assert (tokens is None) if expected == 0 else tokens.shape == (2, 5, expected, D)


@pytest.mark.parametrize("variant", ["ssm", "retrieval", "hybrid"])
@pytest.mark.parametrize("write", ["always", "surprise"])
def test_the_update_recomputes_exactly_what_acting_saw(one_thread, variant, write):
    """Two segments with episode starts inside them and a small store (eviction at work)."""
    torch.manual_seed(0)
    memory = Memory(D, MemoryConfig(variant=variant, k=3, capacity=4, write=write, threshold=0.3, chunk=4))
    with torch.no_grad():  # make resurfacing matter (it starts at zero)
        if variant == "hybrid":
            memory.resurface.weight.normal_(std=0.1)
    emb, start, surprise = segment(3, 26, seed=1)
    start[0, 9] = start[1, 13] = start[2, 20] = True
    first, second = slice(0, 13), slice(13, 26)

    state = memory.initial_state(3)
    with torch.no_grad():
        saved = state.snapshot()  # what the agent keeps at the segment's start
        acted = act(memory, state, emb[:, first], start[:, first], surprise[:, first])
        saved2 = state.snapshot()
        acted2 = act(memory, state, emb[:, second], start[:, second], surprise[:, second])

    replay = saved.snapshot()
    recomputed = memory.sequence(replay, emb[:, first], start[:, first], surprise[:, first])
    torch.testing.assert_close(recomputed, acted, atol=1e-5, rtol=0)
    assert_same_state(replay, saved2)
    recomputed2 = memory.sequence(replay, emb[:, second], start[:, second], surprise[:, second])
    torch.testing.assert_close(recomputed2, acted2, atol=1e-5, rtol=0)
    assert_same_state(replay, state)
    recomputed2.sum().backward()  # the recompute is differentiable
    grads = {n: p.grad for n, p in memory.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), [
        n for n, g in grads.items() if g is None
    ]
    if variant != "ssm":
        assert grads["query.weight"].abs().sum() > 0  # the scores carry gradient to the query


@pytest.mark.parametrize("write", ["always", "surprise"])
def test_what_acting_recorded_is_what_a_replay_of_the_store_reads(one_thread, write):
    """``Memory.reads`` from acting's own per-step record (what a ``SequenceContext`` keeps) equals ``replay``,
    and the tokens the update recomputes from it equal acting's: no step-by-step replay of the store is needed."""
    torch.manual_seed(0)
    memory = Memory(D, MemoryConfig(variant="hybrid", k=2, capacity=4, write=write, threshold=0.3, chunk=4))
    emb, start, surprise = segment(3, 26, seed=2)
    start[0, 9] = start[1, 13] = start[2, 20] = True
    first, second = slice(0, 13), slice(13, 26)
    state = memory.initial_state(3)
    with torch.no_grad():
        act(memory, state, emb[:, first], start[:, first], surprise[:, first])  # a full store: evictions below
        saved = state.snapshot()
        values, valid, read, slots, tokens = [], [], [], [], []
        for i in range(second.start, second.stop):
            tokens.append(memory.step(state, emb[:, i], start[:, i], surprise[:, i]))
            values.append(state.last_values)
            valid.append(state.last_valid)
            read.append(state.last_read)
            slots.append(state.last_slot)
        slots = torch.stack(slots, 1)
        assert (slots >= 0).any() and (slots < 0).any()  # some steps stored (evicting), some not
        seg = emb[:, second], start[:, second], surprise[:, second]
        stacked = (torch.stack(x, 1) for x in (values, valid, read))
        recorded = memory.reads(saved.store, seg[0], seg[1], *stacked, slots)
        replayed = memory.replay(saved.snapshot(), *seg[:2], memory.episode_steps(saved, seg[1]), seg[2])
    for name, a, b in zip(recorded._fields, recorded, replayed, strict=True):
        assert torch.equal(a, b), name
    recomputed = memory.sequence(saved.snapshot(), *seg, recorded)
    torch.testing.assert_close(recomputed, torch.stack(tokens, 1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("soft", [False, True])
def test_a_fact_read_back_within_the_segment_teaches_the_step_that_wrote_it(one_thread, soft):
    """The update's reads of entries its own segment wrote carry gradient to those steps' embeddings (so a rule
    read at step 0 and recalled at step 9 trains the encoder to read it); entries older than the segment do not.
    The second segment continues the first one's episode in sub-env 0 and starts a new one in sub-env 1."""
    torch.manual_seed(0)
    memory = Memory(D, MemoryConfig(variant="retrieval", k=2, capacity=32, soft=soft))
    with torch.no_grad():
        memory.query.weight.copy_(torch.eye(D))  # soft: the query starts at zero; make it pick
    emb, start, surprise = segment(2, 16, seed=3)
    start[1, 10] = True
    state = memory.initial_state(2)
    with torch.no_grad():
        act(memory, state, emb[:, :8], start[:, :8], surprise[:, :8])
    saved = state.snapshot()
    reads = memory.replay(saved.snapshot(), emb[:, 8:], start[:, 8:], memory.episode_steps(saved, start[:, 8:]))
    second = emb[:, 8:].clone().requires_grad_(True)
    tokens = memory.sequence(saved.snapshot(), second, start[:, 8:], None, reads)
    with torch.no_grad():
        frozen = memory.sequence(saved.snapshot(), second, start[:, 8:], None, reads)
    torch.testing.assert_close(tokens, frozen, atol=0, rtol=0)  # the values are the same; only gradients differ
    last = 7  # the segment's last step: episode step 15 in sub-env 0, 5 in sub-env 1
    read = reads.steps[:, last]
    assert (read[0] < 8).any() and (read[0] >= 8).any() and (read[1] >= 0).all()  # old and new entries
    tokens[:, last, :2].sum().backward()  # the top-k tokens only
    got = second.grad.abs().sum(-1)  # (2, 8): gradient reaching each step of the segment
    position = {0: lambda s: s - 8, 1: lambda s: s + 2}  # where each sub-env's episode step s sits in the segment
    wrote = {(e, position[e](s)) for e in (0, 1) for s in read[e].tolist() if position[e](s) >= 0}
    assert len(wrote) >= 3  # both of sub-env 1's reads, and sub-env 0's new one
    assert all(got[e, p] > 0 for e, p in wrote)
    silent = [(e, p) for e in (0, 1) for p in range(last) if (e, p) not in wrote]
    if not soft:  # no other step feeds these tokens (the soft read would reach every held entry)
        assert all(got[e, p] == 0 for e, p in silent)


def test_the_soft_read_keeps_only_the_candidates_some_step_held(one_thread):
    """``held_only`` drops the slots no step saw (weight exactly 0), keeps the others in order, and reads the same."""
    gen = torch.Generator().manual_seed(0)
    entries = torch.randn(2, 10, D, generator=gen)
    held = torch.zeros(2, 3, 10, dtype=torch.bool)
    held[0, :, [1, 4]] = True
    held[0, 2, 7] = True  # seen by one step only: kept
    held[1, 1:, 9] = True
    kept, kept_held, order = Memory.held_only(entries, held)
    assert kept.shape == (2, 3, D) and kept_held.shape == (2, 3, 3)  # the most any sub-env holds: 3
    assert torch.equal(kept[0], entries[0, [1, 4, 7]]) and torch.equal(order[0], torch.tensor([1, 4, 7]))
    assert torch.equal(kept[1, 0], entries[1, 9]) and not kept_held[1, :, 1:].any()  # padding: held by no step
    memory = Memory(D, MemoryConfig(variant="retrieval", capacity=8))
    query = torch.randn(2, 3, D, generator=gen)
    full = memory._soft_read((query @ entries.transpose(1, 2)).masked_fill(~held, -torch.inf), entries)
    short = memory._soft_read((query @ kept.transpose(1, 2)).masked_fill(~kept_held, -torch.inf), kept)
    torch.testing.assert_close(short[0], full[0], atol=1e-6, rtol=0)
    assert torch.equal(short[1], full[1])  # the same steps read something
    nothing = Memory.held_only(entries, torch.zeros(2, 3, 10, dtype=torch.bool))
    assert nothing[0].shape == (2, 1, D) and not nothing[1].any()  # an empty store: one candidate, never held


def test_nothing_crosses_an_episode_start(one_thread):
    memory = Memory(D, MemoryConfig(variant="hybrid", k=2, capacity=8))
    emb, start, surprise = segment(1, 12)
    start[0, 7] = True
    tokens = memory.sequence(memory.initial_state(1), emb, start, surprise)
    fresh = memory.sequence(memory.initial_state(1), emb[:, 7:], start[:, 7:], surprise[:, 7:])
    torch.testing.assert_close(tokens[:, 7:], fresh, atol=1e-5, rtol=0)
    assert torch.equal(tokens[0, 7, 1:], memory.empty.expand(3, D))  # the first step retrieves nothing (top-2, soft)


def test_the_matching_stored_step_is_retrieved_first(one_thread):
    """With an identity query, the step whose embedding the current one repeats comes back first."""
    memory = Memory(D, MemoryConfig(variant="retrieval", k=2, capacity=64))
    with torch.no_grad():
        memory.query.weight.copy_(torch.eye(D) * 10)
    state = memory.initial_state(1)
    emb, start, surprise = segment(1, 30)
    emb[0, 29] = emb[0, 3]  # the question repeats step 3's content
    memory.sequence(state, emb[:, :29], start[:, :29], surprise[:, :29])  # the store just before step 29
    read = state.store.read(memory.query(emb[:, 29]).detach(), 2)
    assert read.steps[0, 0, 0] == 3 and read.valid.all()


def test_state_memory_is_bounded_and_bad_config_is_named():
    memory = Memory(D, MemoryConfig(variant="hybrid", capacity=100))
    state = memory.initial_state(4)
    before = state.nbytes
    emb, start, surprise = segment(4, 300)
    memory.sequence(state, emb, start, surprise)
    assert state.nbytes == before and state.store.size.max() == 100
    with pytest.raises(ValueError, match="memory.variant='lstm' is not valid; allowed values: none, window"):
        Memory(D, MemoryConfig(variant="lstm"))
    with pytest.raises(ValueError, match="write='top' is not valid"):
        Memory(D, MemoryConfig(write="top"))
    with pytest.raises(ValueError, match=r"memory.gist_horizon=-5 must be 0 \(unbounded\) or a positive integer"):
        Memory(D, MemoryConfig(variant="hybrid", gist_horizon=-5))
    assert Memory(D, MemoryConfig(variant="ssm", gist_horizon=64)).ssm.horizon == 64


def test_core_shows_memory_to_the_last_step_only() -> None:
    """Memory tokens hold the last step's gist (it includes o_{T-1}): an earlier slot's state must not see
    them, or its prediction of o_{t+1} could read the answer; the last step's states must."""
    from gymnasium import spaces

    from devlearn.model.core import Core, CoreConfig

    torch.manual_seed(0)
    core = Core(spaces.MultiDiscrete([3, 5]), spaces.Discrete(3), CoreConfig(d_model=16, n_heads=2, window=4))
    o = torch.randn(2, 4, 16)
    act = torch.randint(3, (2, 4))
    mem_a, mem_b = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    with torch.no_grad():
        h_obs_a, h_act_a = core.states(o, act, None, mem_a)
        h_obs_b, h_act_b = core.states(o, act, None, mem_b)
        _, imagined_a = core.candidate_states(o, act, None, torch.arange(3), mem_a)
        _, imagined_b = core.candidate_states(o, act, None, torch.arange(3), mem_b)
    torch.testing.assert_close(h_obs_a[:, :-1], h_obs_b[:, :-1])  # earlier slots: memory unseen
    torch.testing.assert_close(h_act_a[:, :-1], h_act_b[:, :-1])
    assert not torch.allclose(h_obs_a[:, -1], h_obs_b[:, -1])  # the last step reads it
    assert not torch.allclose(h_act_a[:, -1], h_act_b[:, -1])
    assert not torch.allclose(imagined_a, imagined_b)


def test_memory_scalars_count_what_acting_did(one_thread):
    """``memory/`` scalars: writes gated by surprise, reads that found something, how far back they reached."""
    memory = Memory(D, MemoryConfig(variant="hybrid", k=2, capacity=64, write="surprise", threshold=0.5))
    state = memory.initial_state(2)
    emb, start, _ = segment(2, 10)
    surprise = torch.tensor([[1.0, 0.0] * 5, [1.0] * 10])  # env 0 offers a surprising step every other step
    act(memory, state, emb, start, surprise)
    stats = state.pop_stats()
    assert stats["memory/write_rate"] == pytest.approx(15 / 20)
    assert stats["memory/hit_rate"] == pytest.approx(18 / 20)  # each episode's first read finds nothing
    assert stats["memory/store_size"] == pytest.approx((5 + 10) / 2)
    assert stats["memory/retrieved_age"] >= 1  # only earlier steps are retrieved
    assert stats["memory/ssm_state_norm"] > 0
    assert state.pop_stats()["memory/write_rate"] == 0  # popped: counting starts again
    memory.sequence(state.snapshot(), emb, start, surprise)  # a replay counts nothing
    assert state.pop_stats()["memory/write_rate"] == 0


def test_soft_top_weight_reports_how_sharply_the_soft_read_looks(one_thread):
    """A fresh (zero) query reads uniformly: over stores of 1, 2, 3, 4 steps the largest weights are 1, 1/2, 1/3, 1/4."""
    memory = Memory(D, MemoryConfig(variant="hybrid", capacity=8))
    state = memory.initial_state(1)
    emb, start, surprise = segment(1, 5)
    with torch.no_grad():
        act(memory, state, emb, start, surprise)
    stats = state.pop_stats()
    assert stats["memory/soft_top_weight"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert "memory/soft_top_weight" not in state.pop_stats()  # nothing read since: no figure, not a stale one
