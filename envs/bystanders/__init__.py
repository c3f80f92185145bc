"""``devlearn/Bystanders-v0`` (PettingZoo Parallel, ``parallel.py``) and ``devlearn/BystandersSolo-v0``
(its Gymnasium single-agent view, ``solo.py``); both run the same rules (``rules.py``) on the same layouts
(``layout.py``) and observe them the same way (``view.py``)."""

from devlearn.registry import register

register(
    "devlearn/BystandersSolo-v0",
    entry_point="devlearn.envs.bystanders.solo:BystandersSoloEnv",
    description="Single-agent view of Bystanders: robbing pays now, scripted bystanders retaliate later.",
)
register(
    "devlearn/Bystanders-v0",
    entry_point="devlearn.envs.bystanders.parallel:BystandersParallelEnv",
    api="pettingzoo",
    description="Learners among bystanders who remember and retaliate (PettingZoo Parallel).",
)
