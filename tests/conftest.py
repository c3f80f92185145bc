"""Shared fixtures."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """The CI machine has 2 shared cores: more intra-op threads than free cores slows torch ~50x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def sb3_learns():
    """Train SB3 PPO briefly on an env and check that it learned from real, finished episodes."""
    import numpy as np

    def run(env, steps: int = 2000):
        from stable_baselines3 import PPO

        model = PPO("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=1, seed=0, device="cpu")
        before = [p.detach().clone() for p in model.policy.parameters()]
        model.learn(steps)
        # SB3's Monitor recorded finished episodes: the env ends episodes and reports finite returns ...
        assert len(model.ep_info_buffer) > 0
        assert all(np.isfinite(ep["r"]) and ep["l"] > 0 for ep in model.ep_info_buffer)
        # ... and the updates moved the policy: observations and rewards reached the gradients
        assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))
        return model

    return run


def _mount(*args: str) -> bool:
    import subprocess

    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(megabytes)``: a folder on a tmpfs of that size, a real disk that fills up (root only).

    Skips where mounting is not allowed (not root, or a container without CAP_SYS_ADMIN).
    """
    import os
    import subprocess

    mounted = []

    def make(megabytes: float):
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", f"size={int(megabytes * 1024)}k", "tmpfs", str(folder)):
            pytest.skip("a small real disk needs `mount -t tmpfs` (root with CAP_SYS_ADMIN)")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def read_only():
    """``read_only(folder)``: make ``folder`` read-only for real. chmod does not stop root, so as root it becomes a
    read-only bind mount of itself; otherwise its write bits go. Skips where neither is possible."""
    import os
    import stat
    import subprocess

    undo = []

    def make(folder):
        if os.geteuid() != 0:
            for path in [folder, *folder.rglob("*")]:
                mode = path.stat().st_mode
                path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
                undo.append(lambda p=path, m=mode: p.chmod(m))
            return folder
        if not (_mount("--bind", str(folder), str(folder)) and _mount("-o", "remount,bind,ro", str(folder))):
            subprocess.run(["umount", str(folder)], capture_output=True)
            pytest.skip("a read-only folder as root needs `mount --bind` (CAP_SYS_ADMIN)")
        undo.append(lambda: subprocess.run(["umount", "-l", str(folder)], capture_output=True))
        return folder

    yield make
    for step in reversed(undo):
        step()
