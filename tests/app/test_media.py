"""Rollout videos: recorded off-screen, with nothing on stderr."""

import os
import subprocess
import sys

from devlearn.app.media import offscreen_display

RECORD = """
import numpy as np
from torch.utils.tensorboard import SummaryWriter
from devlearn.app.media import record_episode
writer = SummaryWriter({logdir!r})
policy = lambda obs, start: np.zeros(len(start), dtype=np.int64)
print(record_episode(writer, "CartPole-v1", [], {{}}, policy, "rollout", 0, max_steps=3))
"""


def test_a_pygame_video_prints_nothing_on_stderr(tmp_path):
    """CartPole draws with pygame, whose display init probes Wayland: without a display that printed
    'error: XDG_RUNTIME_DIR is invalid or not set in the environment.' on every recorded video."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("XDG_RUNTIME_DIR", "SDL_VIDEODRIVER", "WAYLAND_DISPLAY")
    }
    out = subprocess.run(
        [sys.executable, "-c", RECORD.format(logdir=str(tmp_path))],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "video"
    assert out.stderr == ""


def test_offscreen_display_restores_the_users_choice(monkeypatch):
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    with offscreen_display():
        assert os.environ["SDL_VIDEODRIVER"] == "dummy"
    assert "SDL_VIDEODRIVER" not in os.environ
    monkeypatch.setenv("SDL_VIDEODRIVER", "x11")
    with offscreen_display():
        assert os.environ["SDL_VIDEODRIVER"] == "x11"  # a user's own driver is left alone
    assert os.environ["SDL_VIDEODRIVER"] == "x11"
