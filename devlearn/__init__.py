"""devlearn: agents that learn the consequences of their actions.

``import devlearn`` registers the bundled environments with devlearn's registry and with
Gymnasium (each env's folder under ``envs/`` registers itself), so
``gymnasium.make("devlearn/CliffEdge-v0")`` works afterwards.
"""

from typing import Any

import minigrid  # noqa: F401  (registers MiniGrid's ids with Gymnasium: our grid worlds build on it)

from devlearn.registry import RegistryError, make, register, registered, spec

__version__ = "0.1.0"
__all__ = ["RegistryError", "make", "register", "registered", "spec", "testing", "train", "__version__"]

import devlearn.envs  # noqa: E402, F401  (registers the bundled environments)
import devlearn.testing  # noqa: E402, F401  (``devlearn.testing.check_batched_twin`` after ``import devlearn``)


def train(env: str | None = None, agent: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Train an agent from Python and return ``results.json``'s dict (``devlearn.app.launch.train``).

    ``devlearn.train(env="cliff", agent="ppo", seed=1, agent__total_timesteps=5000)``: the same config,
    checks and one-line errors as ``devlearn train env=cliff agent=ppo seed=1 agent.total_timesteps=5000``.
    """
    # deferred: the app (torch, SB3, Hydra's compose) loads only when a run starts; this package is its facade
    from devlearn.app.launch import train as launch_train

    return launch_train(env, agent, **kwargs)
