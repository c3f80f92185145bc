"""Episodic novelty: 1 on a state's first visit in an episode, 0 on a revisit, per env; SimHash and byte keys."""

from __future__ import annotations

import numpy as np
import torch

from devlearn.model.novelty import EpisodicNovelty, SimHash, byte_keys


def test_first_visit_pays_once_per_episode_and_per_env() -> None:
    novelty = EpisodicNovelty(2)
    no, yes = np.zeros(2, dtype=bool), np.ones(2, dtype=bool)
    assert novelty.bonus([5, 5], yes).tolist() == [1.0, 1.0]  # each env's first state is new to it
    assert novelty.bonus([6, 5], no).tolist() == [1.0, 0.0]  # env 1 stayed: a revisit
    assert novelty.bonus([5, 6], no).tolist() == [0.0, 1.0]  # env 0 went back; env 1 meets 6, new to *its* episode
    assert novelty.bonus([6, 6], no).tolist() == [0.0, 0.0]
    # env 0's episode restarts: its states are new again; env 1's episode goes on
    assert novelty.bonus([6, 5], np.array([True, False])).tolist() == [1.0, 0.0]
    assert novelty.bonus([5, 7], no).tolist() == [1.0, 1.0]


def test_bonus_takes_tensors() -> None:
    novelty = EpisodicNovelty(3)
    out = novelty.bonus(torch.tensor([1, 2, 1]), torch.ones(3, dtype=torch.bool))
    assert out.dtype == np.float32 and out.tolist() == [1.0, 1.0, 1.0]
    assert novelty.bonus(torch.tensor([1, 2, 3]), torch.zeros(3, dtype=torch.bool)).tolist() == [0.0, 0.0, 1.0]


def test_simhash_keys_are_equal_for_equal_latents_and_differ_for_distant_ones() -> None:
    d, gen = 64, torch.Generator().manual_seed(0)
    z = torch.randn(100, d, generator=gen)
    hash32 = SimHash(d, bits=32, seed=1)
    keys = hash32(z)
    assert keys.dtype == torch.long and keys.shape == (100,) and (keys >= 0).all() and (keys < 2**32).all()
    assert torch.equal(hash32(z.clone()), keys) and torch.equal(SimHash(d, 32, seed=1)(z), keys)  # fixed by the seed
    assert len(set(keys.tolist())) == 100  # random (distant) latents: all different
    assert torch.equal(hash32(-z), (2**32 - 1) - keys)  # opposite latents flip every bit
    assert torch.equal(hash32(z * 3.0), keys)  # a key depends on the direction only
    assert not torch.equal(SimHash(d, 32, seed=2)(z), keys)
    assert (SimHash(d, bits=63, seed=1)(z) >= 0).all()  # the widest key still fits a non-negative int64


def test_byte_keys_hash_every_entry_of_a_dict_observation() -> None:
    obs = {"image": np.zeros((3, 2, 2), dtype=np.uint8), "direction": np.array([0, 0, 1])}
    keys = byte_keys(obs, 3)
    assert keys.dtype == np.int64 and (keys >= 0).all()
    assert keys[0] == keys[1] != keys[2]  # only the direction differs
    obs["image"][1, 0, 0] = 1
    assert len(set(byte_keys(obs, 3).tolist())) == 3
    flat = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert len(set(byte_keys(flat, 3).tolist())) == 3 and byte_keys(flat, 3)[0] == byte_keys(flat[:1], 1)[0]
