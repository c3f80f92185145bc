"""devlearn: agents that learn the consequences of their actions.

``import devlearn`` registers the bundled environments with devlearn's registry and with
Gymnasium (each env's folder under ``envs/`` registers itself), so
``gymnasium.make("devlearn/CliffEdge-v0")`` works afterwards.
"""

import minigrid  # noqa: F401  (registers MiniGrid's ids with Gymnasium: our grid worlds build on it)

from devlearn.registry import RegistryError, make, register, registered, spec

__version__ = "0.1.0"
__all__ = ["RegistryError", "make", "register", "registered", "spec", "testing", "train", "__version__"]

import devlearn.envs  # noqa: E402, F401  (registers the bundled environments)
import devlearn.testing  # noqa: E402, F401  (``devlearn.testing.check_batched_twin`` after ``import devlearn``)
import devlearn.train  # noqa: E402, F401  (``devlearn.train(env=..., agent=..., **overrides)``: the Python API)
