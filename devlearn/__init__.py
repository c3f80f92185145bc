"""devlearn: agents that learn the consequences of their actions.

``import devlearn`` registers the bundled environments with devlearn's registry and with
Gymnasium, so ``gymnasium.make("devlearn/CliffEdge-v0")`` works afterwards.
"""

import minigrid  # noqa: F401  (registers MiniGrid's ids with Gymnasium: our grid worlds build on it)

from devlearn.registry import RegistryError, make, register, registered, spec

__version__ = "0.1.0"
__all__ = ["RegistryError", "make", "register", "registered", "spec", "__version__"]

_BUNDLED = [
    dict(
        id="devlearn/CliffEdge-v0",
        entry_point="devlearn.envs.cliff_edge:CliffEdgeEnv",
        vector_entry_point="devlearn.envs.cliff_edge_vec:CliffEdgeVecEnv",
        description="Reach the goal; the short path runs along a cliff edge, and a step off it is a fall.",
    ),
    dict(
        id="devlearn/CarWash-v0",
        entry_point="devlearn.envs.car_wash:CarWashEnv",
        vector_entry_point="devlearn.envs.car_wash_vec:CarWashVecEnv",
        description="Get the car washed: walking to the wash alone achieves nothing; drive the car there.",
    ),
    dict(
        id="devlearn/Inbox-v0",
        entry_point="devlearn.envs.inbox:InboxEnv",
        vector_entry_point="devlearn.envs.inbox_vec:InboxVecEnv",
        description="Triage e-mail under an instruction shown once at step 0; delete is irreversible.",
    ),
    dict(
        id="devlearn/BystandersSolo-v0",
        entry_point="devlearn.envs.bystanders_solo:BystandersSoloEnv",
        description="Single-agent view of Bystanders: robbing pays now, scripted bystanders retaliate later.",
    ),
    dict(
        id="devlearn/Bystanders-v0",
        entry_point="devlearn.envs.bystanders:BystandersParallelEnv",
        api="pettingzoo",
        description="Learners among bystanders who remember and retaliate (PettingZoo Parallel).",
    ),
]
for _entry in _BUNDLED:
    register(**_entry)
