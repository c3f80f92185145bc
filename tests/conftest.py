"""Shared fixtures."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """The CI machine has 2 shared cores: more intra-op threads than free cores slows torch ~50x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def sb3_learns():
    """Train SB3 PPO briefly on an env and check that it learned from real, finished episodes."""
    import numpy as np

    def run(env, steps: int = 2000):
        from stable_baselines3 import PPO

        model = PPO("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=1, seed=0, device="cpu")
        before = [p.detach().clone() for p in model.policy.parameters()]
        model.learn(steps)
        # SB3's Monitor recorded finished episodes: the env ends episodes and reports finite returns ...
        assert len(model.ep_info_buffer) > 0
        assert all(np.isfinite(ep["r"]) and ep["l"] > 0 for ep in model.ep_info_buffer)
        # ... and the updates moved the policy: observations and rewards reached the gradients
        assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))
        return model

    return run
