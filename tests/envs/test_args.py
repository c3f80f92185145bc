"""Each bundled env and its batched twin take the same arguments, checked once by one ``*Args`` object.

The messages are pinned word for word: they are the contract users (and the README) see, and pinning
them is what makes a broken shared check fail here rather than pass identically on both sides.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

from devlearn.envs.car_wash.args import CarWashArgs
from devlearn.envs.car_wash.env import CarWashEnv
from devlearn.envs.car_wash.vec import CarWashVecEnv
from devlearn.envs.cliff_edge.args import CliffEdgeArgs
from devlearn.envs.cliff_edge.env import CliffEdgeEnv
from devlearn.envs.cliff_edge.vec import CliffEdgeVecEnv
from devlearn.envs.inbox.args import InboxArgs
from devlearn.envs.inbox.env import InboxEnv
from devlearn.envs.inbox.vec import InboxVecEnv
from devlearn.envs.recall.args import RecallArgs
from devlearn.envs.recall.env import RecallEnv
from devlearn.envs.recall.vec import RecallVecEnv

# (single env, batched twin, the arguments object both build)
PAIRS = {
    "cliff_edge": (CliffEdgeEnv, CliffEdgeVecEnv, CliffEdgeArgs),
    "car_wash": (CarWashEnv, CarWashVecEnv, CarWashArgs),
    "inbox": (InboxEnv, InboxVecEnv, InboxArgs),
    "recall": (RecallEnv, RecallVecEnv, RecallArgs),
}

BAD = [
    ("cliff_edge", {"split": "test"}, "split must be one of 'train', 'heldout'; got 'test'."),
    ("cliff_edge", {"view": "map"}, "view must be one of 'egocentric', 'full'; got 'map'."),
    ("cliff_edge", {"slip": 1.0}, "slip must be a probability in [0, 1); got 1.0."),
    ("cliff_edge", {"max_steps": 0}, "max_steps must be an integer >= 1; got 0."),
    (
        "cliff_edge",
        {"render_mode": "human"},
        "render_mode must be None or one of ['rgb_array']; got 'human'.",
    ),
    # The first bad argument in checking order is the one reported.
    ("cliff_edge", {"split": "test", "max_steps": 0}, "split must be one of 'train', 'heldout'; got 'test'."),
    ("car_wash", {"split": "test"}, "split must be one of ('train', 'heldout'), got 'test'."),
    ("car_wash", {"view": "map"}, "view must be one of 'egocentric', 'full'; got 'map'."),
    (
        "car_wash",
        {"curriculum": -1},
        "curriculum must be an integer >= 0 (episodes to ramp over; 0 = off); got -1.",
    ),
    (
        "car_wash",
        {"split": "heldout", "curriculum": 10},
        "curriculum applies to split='train' only (evaluation runs the full task); got split='heldout'.",
    ),
    ("car_wash", {"max_steps": True}, "max_steps must be an integer >= 1, got True."),
    ("car_wash", {"render_mode": "human"}, "render_mode must be None or 'rgb_array', got 'human'."),
    ("inbox", {"split": "test"}, "split='test' is not valid; allowed values: 'train', 'heldout'."),
    ("inbox", {"num_emails": 9}, "num_emails=9 is not valid; it must be an integer in [10, 1000000]."),
    ("inbox", {"obs_bytes": 8}, "obs_bytes=8 is not valid; it must be an integer in [64, 4096]."),
    ("inbox", {"injection_rate": 1.5}, "injection_rate=1.5 is not valid; it must be a number in [0, 1]."),
    (
        "inbox",
        {"render_mode": "rgb_array"},
        "render_mode='rgb_array' is not valid; allowed values: None, 'ansi'.",
    ),
    ("recall", {"split": "test"}, "split='test' is not valid; allowed values: 'train', 'heldout'."),
    ("recall", {"delay": 0}, "delay=0 is not valid; it must be an integer in [1, 1000000]."),
    ("recall", {"num_facts": 1}, "num_facts=1 is not valid; it must be an integer in [2, 256]."),
    (
        "recall",
        {"num_distractors": 4097},
        "num_distractors=4097 is not valid; it must be an integer in [1, 4096].",
    ),
    ("recall", {"render_mode": "human"}, "render_mode='human' is not valid; allowed values: None, 'ansi'."),
]


@pytest.mark.parametrize("name, kwargs, message", BAD, ids=[f"{n}-{'-'.join(kw)}" for n, kw, _ in BAD])
def test_env_and_twin_reject_a_bad_argument_with_the_same_message(name, kwargs, message):
    env_cls, twin_cls, _ = PAIRS[name]
    with pytest.raises(ValueError) as from_env:
        env_cls(**kwargs)
    with pytest.raises(ValueError) as from_twin:
        twin_cls(2, **kwargs)
    assert str(from_env.value) == str(from_twin.value) == message


@pytest.mark.parametrize("name", PAIRS)
def test_env_twin_and_args_list_the_same_arguments_and_defaults(name):
    """The public signatures stay in step with the one object that checks them (positional order too)."""
    env_cls, twin_cls, args_cls = PAIRS[name]
    env_params = list(inspect.signature(env_cls).parameters.values())
    twin_params = list(inspect.signature(twin_cls).parameters.values())
    assert twin_params[0].name == "num_envs"
    fields = [(f.name, f.default) for f in dataclasses.fields(args_cls)]
    assert [(p.name, p.default) for p in env_params] == fields
    assert [(p.name, p.default) for p in twin_params[1:]] == fields


@pytest.mark.parametrize(
    "name, kwargs",
    [
        (
            "cliff_edge",
            {"split": "heldout", "slip": np.float32(0.25), "max_steps": np.int64(30), "view": "full"},
        ),
        ("car_wash", {"max_steps": np.int32(40), "curriculum": np.int64(5), "view": "full"}),
        ("inbox", {"num_emails": np.int64(12), "obs_bytes": np.int16(64), "injection_rate": 1}),
        ("recall", {"split": "heldout", "delay": np.int64(7), "num_facts": np.uint8(3)}),
    ],
)
def test_env_and_twin_read_the_same_normalised_arguments(name, kwargs):
    env_cls, twin_cls, args_cls = PAIRS[name]
    env, twin = env_cls(**kwargs), twin_cls(2, **kwargs)
    assert env.args == twin.args == args_cls(**kwargs)
    for field in dataclasses.fields(args_cls):  # numpy scalars become plain Python numbers
        value = getattr(env.args, field.name)
        assert value is None or type(value) in (str, int, float), (field.name, type(value))
    with pytest.raises(dataclasses.FrozenInstanceError):  # one shared, read-only set of settings
        env.args.split = "heldout"
    env.close()
    twin.close()
