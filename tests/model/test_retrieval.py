"""The retrieval store: exact recall, surprise-gated writes, eviction by the stated rule, per-env reset."""

from __future__ import annotations

import random

import pytest
import torch
from torch.nn import functional as F

from devlearn.model.memory.retrieval import RetrievalStore


def store(num_envs=2, capacity=8, key_dim=16, value_dim=4, **kwargs) -> RetrievalStore:
    return RetrievalStore(num_envs, capacity, key_dim, value_dim, item_shape=(3,), **kwargs)


def write_one(s: RetrievalStore, step: int, surprise: list[float] | None = None, active=None, seed=None):
    """Offer one random entry per env at ``step``; its item records (env, step, 7)."""
    gen = torch.Generator().manual_seed(step if seed is None else seed)
    e = s.num_envs
    item = torch.tensor([[i, step, 7] for i in range(e)])
    sur = None if surprise is None else torch.tensor(surprise)
    key = torch.randn(e, s.key_dim, generator=gen)
    value = torch.randn(e, s.value_dim, generator=gen)
    return s.write(key, value, item, torch.full((e,), step), sur, active), key, value


def stored_steps(s: RetrievalStore, env: int) -> set[int]:
    return set(s.steps[env][s.filled[env]].tolist())


def test_a_query_built_from_a_fact_retrieves_that_fact_exactly():
    torch.manual_seed(0)
    e, n, d = 3, 200, 32
    s = RetrievalStore(e, n, d, d, item_shape=(5,), item_dtype=torch.uint8)
    facts = torch.randint(0, 256, (e, n, 5), dtype=torch.uint8)  # verbatim observation bytes
    keys = F.normalize(torch.randn(e, n, d), dim=-1)
    values = torch.randn(e, n, d)
    for t in range(n):
        assert s.write(keys[:, t], values[:, t], facts[:, t], torch.full((e,), t)).ge(0).all()
    target = torch.tensor([17, 120, 199])  # one fact per env, each a different step
    query = keys[torch.arange(e), target] + 0.05 * torch.randn(e, d)  # the fact's key, slightly perturbed
    got = s.read(query, k=10)
    assert got.values.shape == (e, 1, 10, d) and got.items.shape == (e, 1, 10, 5) and got.valid.all()
    assert torch.equal(got.steps[:, 0, 0], target)
    assert torch.equal(got.items[:, 0, 0], facts[torch.arange(e), target])  # bit-exact
    assert torch.equal(got.values[:, 0, 0], values[torch.arange(e), target])
    assert (got.scores[..., :-1] >= got.scores[..., 1:]).all()  # best first


def test_each_env_reads_only_its_own_store_and_short_stores_are_masked():
    s = store(num_envs=2, capacity=8)
    _, key, _ = write_one(s, 0, active=torch.tensor([True, False]))
    got = s.read(key[[0, 0]], k=3)  # env 1 is empty even though env 0's key is queried there
    assert got.valid[0, 0].tolist() == [True, False, False] and not got.valid[1].any()
    assert got.steps[1].eq(-1).all() and got.values[1].eq(0).all() and got.items[1].eq(0).all()
    assert got.scores[1].eq(-torch.inf).all()
    more = s.read(key, k=20)  # k beyond capacity: padded, invalid
    assert more.valid.shape == (2, 1, 20) and more.valid[0].sum() == 1


def test_surprise_gated_writes_store_only_above_the_threshold():
    s = store(num_envs=2, capacity=64, write="surprise", threshold=0.5)
    rng = random.Random(0)
    above = [set(), set()]
    for t in range(40):
        sur = [rng.choice([0.1, 0.5, 0.50001, 0.9, 3.0]) for _ in range(2)]
        stored, _, _ = write_one(s, t, sur)
        for i in range(2):
            assert bool(stored[i] >= 0) == (sur[i] > 0.5)  # exactly at the threshold: not stored
            if sur[i] > 0.5:
                above[i].add(t)
    for i in range(2):
        assert stored_steps(s, i) == above[i]
        assert (s.surprise[i][s.filled[i]] > 0.5).all()
    with pytest.raises(ValueError, match="needs surprise"):
        write_one(s, 99)


def test_eviction_keeps_the_cap_and_evicts_lowest_surprise_then_oldest():
    s = store(num_envs=1, capacity=4)
    nbytes = s.nbytes
    for t, sur in enumerate([1.0, 2.0, 1.0, 1.0]):
        write_one(s, t, [sur])
    assert stored_steps(s, 0) == {0, 1, 2, 3}
    write_one(s, 4, [1.0])  # ties at the lowest surprise (1.0): the oldest (step 0) goes
    assert stored_steps(s, 0) == {1, 2, 3, 4}
    stored, _, _ = write_one(s, 5, [0.5])  # lower than everything stored: the candidate itself is dropped
    assert stored[0] == -1 and stored_steps(s, 0) == {1, 2, 3, 4}
    write_one(s, 6, [5.0])  # evicts step 2: the oldest of the 1.0s
    assert stored_steps(s, 0) == {1, 3, 4, 6}
    assert s.size.tolist() == [4] and s.nbytes == nbytes  # the cap holds; memory never grows


def test_eviction_matches_a_plain_python_model_of_the_rule():
    """Random surprises (with ties), gates and activity over many writes; per env, compare to a list model."""
    e, cap = 3, 5
    s = store(num_envs=e, capacity=cap, write="surprise", threshold=0.2)
    rng = random.Random(1)
    model: list[list[tuple[float, int]]] = [[] for _ in range(e)]  # (surprise, step) per env
    for t in range(300):
        sur = [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for _ in range(e)]
        active = [rng.random() < 0.8 for _ in range(e)]
        write_one(s, t, sur, active=torch.tensor(active))
        for i in range(e):
            if not (active[i] and sur[i] > 0.2):
                continue
            if len(model[i]) < cap:
                model[i].append((sur[i], t))
                continue
            victim = min(model[i])  # lowest surprise, then smallest step
            if sur[i] >= victim[0]:
                model[i].remove(victim)
                model[i].append((sur[i], t))
    for i in range(e):
        assert stored_steps(s, i) == {step for _, step in model[i]}
        assert s.size[i] == len(model[i]) <= cap


def test_always_with_a_constant_surprise_is_a_window_of_the_latest_steps():
    s = store(num_envs=1, capacity=3)
    for t in range(10):
        write_one(s, t)
    assert stored_steps(s, 0) == {7, 8, 9}


def test_reset_empties_only_the_masked_envs():
    s = store(num_envs=3, capacity=4)
    for t in range(6):
        write_one(s, t)
    s.reset(torch.tensor([False, True, False]))
    assert s.size.tolist() == [4, 0, 4]
    got = s.read(torch.randn(3, 16), k=2)
    assert got.valid[[0, 2]].all() and not got.valid[1].any()
    write_one(s, 0, active=torch.tensor([False, True, False]))  # env 1's new episode starts at step 0
    assert stored_steps(s, 1) == {0} and stored_steps(s, 0) == {2, 3, 4, 5}
    s.reset()
    assert s.size.tolist() == [0, 0, 0]


def test_nbytes_is_the_allocation_and_bounded_by_capacity():
    s = RetrievalStore(4, 1000, 128, 64, item_shape=(8,), item_dtype=torch.uint8)
    per_entry = 128 * 4 + 64 * 4 + 8 + 8 + 4 + 1  # key, value, item, step, surprise, filled
    assert s.nbytes == 4 * 1000 * per_entry


def test_bad_arguments_name_what_is_allowed():
    with pytest.raises(ValueError, match="write='top' is not valid; allowed values: always, surprise"):
        store(write="top")
    with pytest.raises(ValueError, match="capacity=0 must be a positive integer"):
        store(capacity=0)
    s = store()
    with pytest.raises(ValueError, match=r"key must have shape \(2, 16\), got \(2, 15\)"):
        s.write(torch.zeros(2, 15), torch.zeros(2, 4), torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="k=0 must be a positive integer"):
        s.read(torch.zeros(2, 16), k=0)
    with pytest.raises(ValueError, match="mask must be torch.bool"):
        s.reset(torch.zeros(2))


def test_clone_is_independent():
    s = store(num_envs=2, capacity=4)
    write_one(s, 0)
    twin = s.clone()
    write_one(s, 1)
    s.reset(torch.tensor([True, False]))
    assert twin.size.tolist() == [1, 1] and stored_steps(twin, 0) == {0}
    assert s.size.tolist() == [0, 2] and twin.nbytes == s.nbytes



def test_a_selection_of_sub_envs_holds_their_stores_only():
    """``select``: the stores of the chosen sub-envs, in the chosen order, independent of the original."""
    s = store(num_envs=3, capacity=8)
    for t in range(5):
        write_one(s, t, active=torch.tensor([True, t < 2, False]))
    query = torch.randn(3, 16, generator=torch.Generator().manual_seed(5))
    got = s.read(query, k=4)
    twin = s.select(torch.tensor([1, 0]))
    assert twin.num_envs == 2 and twin.size.tolist() == [2, 5]
    picked = twin.read(query[[1, 0]], k=4)
    assert torch.equal(picked.steps, got.steps[[1, 0]]) and torch.equal(picked.values, got.values[[1, 0]])
    twin.reset()
    assert s.size.tolist() == [5, 2, 0]  # the original is untouched


def test_reads_score_only_the_slots_in_use_and_return_what_a_full_scan_would():
    """A store of 1,024 slots holding a short episode scores its ``span`` slots only, with the full scan's result."""
    s = store(num_envs=3, capacity=1024)
    assert s.span() == 1  # empty: one (masked) slot, so a read still has a slot to look at
    for t in range(6):
        write_one(s, t, active=torch.tensor([True, t < 2, False]))
    assert s.span() == 6 and s.size.tolist() == [6, 2, 0]
    query = torch.randn(3, 16, generator=torch.Generator().manual_seed(5))
    assert s.scores(query).shape == (3, 1, 6)
    got = s.read(query, k=8)  # more than the span: padded with invalid entries
    full = (query.unsqueeze(1) @ s.keys.transpose(1, 2)).masked_fill(~s.filled.unsqueeze(1), -torch.inf)
    top, slots = full.topk(8, dim=-1)
    assert torch.equal(got.valid, torch.isfinite(top))
    torch.testing.assert_close(got.scores, top, rtol=1e-6, atol=1e-6)  # -inf where an env holds fewer than 8
    assert torch.equal(got.slots[got.valid], slots[got.valid])
    s.reset(torch.tensor([True, False, False]))
    assert s.span() == 2  # env 1's two entries are the last in use
    twin = s.select(torch.tensor([1]))
    assert twin.num_envs == 1 and twin.span() == 2 and torch.equal(twin.read(query[1:2], 2).valid, got.valid[1:2, :, :2])
