"""``devlearn/Recall-v0``: the single env (``env.py``) and its numpy batched twin (``vec.py``)."""

from devlearn.registry import register

register(
    "devlearn/Recall-v0",
    entry_point="devlearn.envs.recall.env:RecallEnv",
    vector_entry_point="devlearn.envs.recall.vec:RecallVecEnv",
    description="Name the fact shown at step 0 when asked at step `delay`, after that many distractors.",
)
