"""Reproducible runs: two runs of one seed on CPU give bit-identical figures and checkpoints; what the
``deterministic=true`` switch adds (deterministic kernels, one thread) is checked on its own, since at this size
the agent's own seeding already makes the two runs equal."""

import json
import subprocess
import sys
from pathlib import Path

import torch

DEVLEARN = str(Path(sys.executable).parent / "devlearn")
TINY = [
    "agent.total_timesteps=256",
    "agent.n_steps=32",
    "agent.batch_size=64",
    "env.num_envs=4",
    "log.eval_episodes=2",
    "log.video=false",
    "deterministic=true",
]
TIMING = ("train_seconds", "env_steps_per_second")  # wall-clock figures: the only ones allowed to differ


def test_two_deterministic_runs_are_bit_identical(tmp_path):
    runs = []
    for name in ("a", "b"):
        run_dir = tmp_path / "runs" / name
        cmd = [DEVLEARN, "train", *TINY, "agent.intrinsic_coef=0.1", f"hydra.run.dir={run_dir}"]
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=600)
        results = json.loads((run_dir / "results.json").read_text())
        runs.append(({k: v for k, v in results.items() if k not in TIMING}, run_dir))
    (a, dir_a), (b, dir_b) = runs
    assert a == b and a["deterministic"] is True and a["training"]["episodes"] > 0
    state_a = torch.load(dir_a / "checkpoint.pt", weights_only=True)
    state_b = torch.load(dir_b / "checkpoint.pt", weights_only=True)
    for group in ("model", "optimizer"):
        flat_a, flat_b = _tensors(state_a[group]), _tensors(state_b[group])
        assert flat_a.keys() == flat_b.keys() and flat_a
        assert all(torch.equal(flat_a[k], flat_b[k]) for k in flat_a), group


def test_two_runs_on_two_threads_are_bit_identical(tmp_path):
    """Without the switch, on torch's threads (2 on the CI machine): the default agent's first updates agree bit for bit.

    Overlapping windows once summed their gradients in an order that changed run to run (``gather_rows``): two
    16,384-step runs of one commit gave 184 and 162 training falls.
    """
    from omegaconf import OmegaConf

    from devlearn.agents import make_agent
    from devlearn.config import DevelopmentalConfig
    from devlearn.envs.vector.make import make_vector_env

    class NoLog:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        params = []
        for run in range(2):
            torch.manual_seed(0)
            cfg = OmegaConf.structured(DevelopmentalConfig())
            env = make_vector_env("devlearn/CliffEdge-v0", 8, split="train", view="egocentric", slip=0.0)
            agent = make_agent(cfg, env, seed=0, device="cpu", writer=None)
            agent.learn(2 * 8 * cfg.n_steps, NoLog(), tmp_path / str(run), checkpoint_every=10**9)
            params.append([p.detach().clone() for p in agent.net.parameters()])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*params, strict=True))


def _tensors(tree, prefix=""):
    """Every tensor of a nested dict/list, by path."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    out = {}
    for key, value in items:
        out.update(_tensors(value, f"{prefix}/{key}"))
    return out


def test_the_switch_pins_deterministic_kernels_and_one_thread():
    """What ``deterministic=true`` adds to the agent's own seeding: deterministic kernels, one intra-op thread."""
    import numpy as np

    from devlearn.app.run import seed_everything

    threads, was = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        seed_everything(7, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
        first = (np.random.rand(), torch.rand(1).item())
        seed_everything(7, deterministic=True)
        assert (np.random.rand(), torch.rand(1).item()) == first
    finally:
        torch.use_deterministic_algorithms(was)
        torch.set_num_threads(threads)
