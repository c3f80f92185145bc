"""The run: ``run`` (``devlearn train``), ``evaluate`` (episodes and tables), ``checkpoint`` (atomic, weights-only),
``optim`` (the optimizer builder), ``launch`` (compose and check a run; the Python API), ``resume``, ``checks``.

``devlearn.train(env="cliff", agent="ppo", seed=1, agent__total_timesteps=5000)`` trains from Python
(``devlearn.train.launch.train``). This package is itself callable so that the name works however
it is reached: importing any ``devlearn.train.*`` module rebinds the attribute ``devlearn.train`` to
this package, which would silently replace a plain function of that name.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, env: str | None = None, agent: str | None = None, **kwargs: Any) -> dict[str, Any]:
        from devlearn.train.launch import train

        return train(env, agent, **kwargs)

    __call__.__doc__ = "Train an agent from Python and return ``results.json``'s dict (``devlearn.train.launch.train``)."


sys.modules[__name__].__class__ = _CallablePackage
