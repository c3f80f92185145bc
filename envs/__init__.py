"""Bundled environments (installed as ``devlearn.envs``).

Every environment reports consequences separately from reward, in ``info["cost"]``
(float >= 0) and ``info["catastrophe"]`` (irreversible harm), and offers ``split="train"``
and ``split="heldout"`` layouts that are disjoint by construction.
"""
