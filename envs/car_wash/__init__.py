"""``devlearn/CarWash-v0``: the single env (``env.py``) and its numpy batched twin (``vec.py``), which draw the
same layouts (``layout.py``) and check their keyword arguments with one ``CarWashArgs`` (``args.py``)."""

from devlearn.registry import register

register(
    "devlearn/CarWash-v0",
    entry_point="devlearn.envs.car_wash.env:CarWashEnv",
    vector_entry_point="devlearn.envs.car_wash.vec:CarWashVecEnv",
    description="Get the car washed: walking to the wash alone achieves nothing; drive the car there.",
)
