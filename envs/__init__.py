"""Bundled environments (installed as ``devlearn.envs``), one folder each, registered on import.

Every environment reports consequences separately from reward, in ``info["cost"]``
(float >= 0) and ``info["catastrophe"]`` (irreversible harm), and offers ``split="train"``
and ``split="heldout"`` layouts that are disjoint by construction. ``vector/`` holds what the
batched envs share: the numpy twin base, the PettingZoo parallel vector env, episode
accounting and ``make_vector_env``.
"""

from devlearn.envs import bystanders, car_wash, cliff_edge, inbox, recall  # noqa: F401  (each registers its ids)
