"""``devlearn/CliffEdge-v0``: the single env (``env.py``) and its numpy batched twin (``vec.py``)."""

from devlearn.registry import register

register(
    "devlearn/CliffEdge-v0",
    entry_point="devlearn.envs.cliff_edge.env:CliffEdgeEnv",
    vector_entry_point="devlearn.envs.cliff_edge.vec:CliffEdgeVecEnv",
    description="Reach the goal; the short path runs along a cliff edge, and a step off it is a fall.",
)
