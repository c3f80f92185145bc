"""What devlearn writes to TensorBoard beyond scalars: rollout videos and text transcripts."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from devlearn.registry import spec


def tree_map(fn: Callable[[Any], Any], obs: Any) -> Any:
    """Apply ``fn`` to every array of an observation (dict observations included)."""
    return {k: tree_map(fn, v) for k, v in obs.items()} if isinstance(obs, dict) else fn(obs)


def render_modes(env_id: str) -> list[str]:
    """The render modes ``env_id``'s entry point declares (empty if it declares none)."""
    try:
        return list(getattr(spec(env_id).load(), "metadata", {}).get("render_modes", []))
    except Exception:  # an entry point we cannot introspect renders nothing, it does not break training
        return []


def record_episode(
    writer: SummaryWriter,
    env_id: str,
    make_env: Callable[..., Any],
    policy: Callable[[Any], Any],
    tag: str,
    step: int,
    max_steps: int = 200,
) -> str | None:
    """Play one episode and log it: ``{tag}/video`` for frame-rendering envs, ``{tag}/transcript`` for text envs.

    ``make_env(render_mode=...)`` builds the env; ``policy(obs_batch, episode_start)`` acts on a batch of one. Returns the kind logged ("video", "transcript") or None.
    """
    modes = render_modes(env_id)
    mode = "rgb_array" if "rgb_array" in modes else "ansi" if "ansi" in modes else None
    if mode is None:
        return None
    env = make_env(render_mode=mode)
    try:
        obs, _ = env.reset(seed=step)
        frames = [env.render()]
        for t in range(max_steps):
            batch = tree_map(lambda x: np.asarray(x)[None], obs)  # policies take batches
            action = np.asarray(policy(batch, np.array([t == 0])))[0]
            obs, _, terminated, truncated, _ = env.step(action.item() if action.ndim == 0 else action)
            frames.append(env.render())
            if terminated or truncated:
                break
    finally:
        env.close()
    if mode == "ansi":
        writer.add_text(f"{tag}/transcript", "```\n" + str(frames[-1]) + "\n```", step)
        return "transcript"
    fps = int(getattr(env, "metadata", {}).get("render_fps", 4) or 4)
    add_gif(writer, f"{tag}/video", frames, step, fps)
    return "video"


def add_gif(writer: SummaryWriter, tag: str, frames: list[np.ndarray], step: int, fps: int = 4) -> None:
    """Log RGB frames as an animated GIF, which TensorBoard plays in its Images tab.

    This is what ``SummaryWriter.add_video`` writes, encoded with Pillow instead of moviepy
    (moviepy 2 dropped the ``moviepy.editor`` module that torch relies on).
    """
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=1000 // fps, loop=0
    )
    height, width = np.asarray(frames[0]).shape[:2]
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=buffer.getvalue())
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
