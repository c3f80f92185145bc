"""What devlearn writes to TensorBoard beyond scalars: rollout videos and text transcripts."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from devlearn.envs.vector.make import make_vector_env
from devlearn.registry import spec


def render_modes(env_id: str) -> list[str]:
    """The render modes ``env_id``'s entry point declares (empty if it declares none)."""
    try:
        return list(getattr(spec(env_id).load(), "metadata", {}).get("render_modes", []))
    except Exception:  # an entry point we cannot introspect renders nothing, it does not break training
        return []


@contextmanager
def offscreen_display() -> Iterator[None]:
    """Render without a display: SDL's ``dummy`` video driver while the block runs (unless the user chose one).

    Pygame-drawn envs (Gymnasium's classic control) call ``pygame.display.init()`` even for
    ``render_mode="rgb_array"``; on a machine without a display SDL then probes Wayland, whose
    client library prints ``error: XDG_RUNTIME_DIR is invalid or not set in the environment.`` to
    stderr before SDL falls back to an off-screen driver. Frames drawn on a ``pygame.Surface`` need
    no display, so the probe is skipped; the previous setting is restored afterwards.
    """
    chosen = os.environ.get("SDL_VIDEODRIVER")
    if chosen is None:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
    try:
        yield
    finally:
        if chosen is None:
            os.environ.pop("SDL_VIDEODRIVER", None)


def record_episode(
    writer: SummaryWriter,
    env_id: str,
    wrappers: Sequence[Callable[[Any], Any]],
    env_kwargs: dict[str, Any],
    policy: Callable[[Any, np.ndarray], np.ndarray],
    tag: str,
    step: int,
    max_steps: int = 200,
) -> str | None:
    """Play one episode and log it: ``{tag}/video`` for frame-rendering envs, ``{tag}/transcript`` for text envs.

    The episode runs in a one-copy vector env (a Gymnasium env, or all learners of a PettingZoo env),
    so ``policy(obs_batch, episode_start)`` acts exactly as in training and evaluation. Returns the
    kind logged ("video", "transcript") or None when the env renders neither.
    """
    modes = render_modes(env_id)
    mode = "rgb_array" if "rgb_array" in modes else "ansi" if "ansi" in modes else None
    if mode is None:
        return None
    with offscreen_display():  # pygame's display is initialized by the first render, closed by env.close()
        env = make_vector_env(env_id, 1, "sync", wrappers, render_mode=mode, **env_kwargs)
        try:
            obs, _ = env.reset(seed=step)
            frames = [env.envs[0].render()]
            seen = [first_observation(obs)]  # what the agent saw at each step, for the memory section
            reads: list[tuple[int, list[int]]] = []  # (acting step, the steps memory retrieved for it)
            start = np.ones(env.num_envs, dtype=bool)
            finished = np.zeros(env.num_envs, dtype=bool)
            for t in range(max_steps):
                action = policy(obs, start)
                retrieved = getattr(policy, "retrieved_steps", lambda: None)()
                if retrieved is not None:
                    reads.append((t, [int(s) for s in retrieved[0] if s >= 0]))
                obs, _, terminated, truncated, _ = env.step(action)
                start[:] = False
                finished |= terminated | truncated
                frames.append(env.envs[0].render())
                seen.append(first_observation(obs))
                if finished.all():  # the next step would autoreset: the episode is over
                    break
        finally:
            env.close()
    if mode == "ansi":
        text = str(frames[-1]) + (memory_section(reads, seen) if reads else "")
        writer.add_text(f"{tag}/transcript", "```\n" + text + "\n```", step)
        return "transcript"
    fps = int(getattr(env.envs[0], "metadata", {}).get("render_fps", 4) or 4)
    add_gif(writer, f"{tag}/video", frames, step, fps)
    return "video"


MEMORY_LINES = 10  # the transcript's memory section: the last this many actions


def first_observation(obs: Any) -> str:
    """Sub-env 0's observation as one line of text: bytes (Inbox's e-mail) decoded, anything else printed."""
    x = obs[0] if not isinstance(obs, dict) else {k: v[0] for k, v in obs.items()}
    if isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 1:
        text = bytes(x).rstrip(b"\0").decode("utf-8", "replace")
    else:
        text = str(x)
    return " ".join(text.split())


def memory_section(reads: list[tuple[int, list[int]]], seen: list[str], width: int = 100) -> str:
    """What the agent's retrieval store returned for its last ``MEMORY_LINES`` actions, with what it saw then."""
    lines = ["", "", f"MEMORY: the steps retrieved for each of the last {min(len(reads), MEMORY_LINES)} actions"]
    for t, steps in reads[-MEMORY_LINES:]:
        lines.append(f"step {t}: " + ("nothing stored yet" if not steps else ""))
        lines += [f"    <- step {s}: {seen[s][:width]}" for s in steps if s < len(seen)]
    return "\n".join(lines)


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
