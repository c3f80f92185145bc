"""The registry: Gymnasium and PettingZoo ids, user registration, and errors that say what to fix."""

import gymnasium
import pytest
from gymnasium import spaces

import devlearn
from devlearn import RegistryError

BUNDLED = [
    "devlearn/CliffEdge-v0",
    "devlearn/CarWash-v0",
    "devlearn/Inbox-v0",
    "devlearn/BystandersSolo-v0",
    "devlearn/Bystanders-v0",
]


class Counter(gymnasium.Env):
    """A tiny user env: count up to `limit`."""

    observation_space = spaces.Discrete(10)
    action_space = spaces.Discrete(2)

    def __init__(self, limit: int = 3):
        self.limit = limit

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.n = 0
        return self.n, {}

    def step(self, action):
        self.n += 1
        return self.n, 1.0, self.n >= self.limit, False, {}


def test_bundled_ids_are_registered_with_their_api():
    apis = {e.id: e.api for e in devlearn.registered()}
    for env_id in BUNDLED:
        assert env_id in apis
    assert apis["devlearn/Bystanders-v0"] == "pettingzoo"
    assert apis["devlearn/CliffEdge-v0"] == "gymnasium"


def test_gymnasium_make_works_after_import():
    env = gymnasium.make("devlearn/CliffEdge-v0")
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert info["catastrophe"] is False or info["catastrophe"] == 0
    env.close()


def test_make_builds_pettingzoo_and_any_gymnasium_id():
    parallel = devlearn.make("devlearn/Bystanders-v0")
    assert len(parallel.possible_agents) >= 1
    cartpole = devlearn.make("CartPole-v1")
    assert cartpole.spec.id == "CartPole-v1"


def test_user_registration_with_defaults_and_override():
    devlearn.register("tests/Counter-v0", Counter, limit=2, description="count")
    env = devlearn.make("tests/Counter-v0")
    env.reset(seed=0)
    env.step(0)
    assert env.step(0)[2] is True  # default limit=2 ends the episode on the second step
    env = gymnasium.make("tests/Counter-v0", limit=5)  # Gymnasium sees the same id
    assert env.unwrapped.limit == 5


def test_duplicate_id_is_refused():
    with pytest.raises(RegistryError, match="already registered"):
        devlearn.register("devlearn/CliffEdge-v0", Counter)


def test_unknown_id_suggests_close_matches():
    with pytest.raises(
        RegistryError,
        match=r"Unknown environment id 'devlearn/CliffEdg-v0'.*Did you mean 'devlearn/CliffEdge-v0'",
    ):
        devlearn.make("devlearn/CliffEdg-v0")


def test_bad_kwarg_names_the_allowed_ones():
    with pytest.raises(
        RegistryError, match=r"has no keyword argument 'splt'.*Did you mean 'split'.*Allowed:"
    ):
        devlearn.make("devlearn/CliffEdge-v0", splt="heldout")


def test_bad_api_names_allowed_values():
    with pytest.raises(RegistryError, match="allowed values: gymnasium, pettingzoo"):
        devlearn.register("tests/Bad-v0", Counter, api="jax")


def test_vector_entry_point_gives_the_batched_twin():
    envs = gymnasium.make_vec("devlearn/CliffEdge-v0", num_envs=3, vectorization_mode="vector_entry_point")
    assert type(envs).__name__ == "CliffEdgeVecEnv"
    assert envs.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.NEXT_STEP
    obs, _ = envs.reset(seed=0)
    assert obs.shape[0] == 3
