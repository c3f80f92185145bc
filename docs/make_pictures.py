"""Render one frame of each bundled grid world (and an inbox transcript) into docs/.

python docs/make_pictures.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import devlearn

HERE = Path(__file__).parent
GRID_WORLDS = {
    "cliff_edge": "devlearn/CliffEdge-v0",
    "car_wash": "devlearn/CarWash-v0",
    "bystanders": "devlearn/BystandersSolo-v0",
}


def main() -> None:
    for name, env_id in GRID_WORLDS.items():
        for split in ("train", "heldout"):
            env = devlearn.make(env_id, split=split, render_mode="rgb_array")
            env.reset(seed=3)
            frame = np.asarray(env.render(), dtype=np.uint8)
            env.close()
            path = HERE / f"{name}_{split}.png"
            Image.fromarray(frame).save(path)
            print(f"wrote {path} {frame.shape}")
    env = devlearn.make("devlearn/Inbox-v0", num_emails=10, render_mode="ansi")
    env.reset(seed=3)
    for action in (0, 1, 2, 3, 0, 1):
        env.step(action)
    (HERE / "inbox_transcript.txt").write_text(env.render())
    env.close()
    print(f"wrote {HERE / 'inbox_transcript.txt'}")


if __name__ == "__main__":
    main()
