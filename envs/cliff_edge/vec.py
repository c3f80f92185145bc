"""The numpy batched twin of CliffEdge: ``num_envs`` cliff worlds stepped as arrays.

Each sub-env's layout comes from the single env's own ``generate_layout`` with that sub-env's
generator, and is kept as its encoded grid, so moving is a vectorized lookup of the target
cell's object index, and the observation is the base grid with the agent written in. It equals
``SyncVectorEnv`` over ``CliffEdgeEnv`` step for step (``devlearn.testing.check_batched_twin``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from minigrid.core.constants import TILE_PIXELS

from devlearn.envs.cliff_edge.args import RENDER_MODES, CliffEdgeArgs
from devlearn.envs.cliff_edge.env import (
    ACTION_NAMES,
    AGENT,
    AGENT_COLOR,
    DIR_VEC,
    ENV_ID,
    FORWARD,
    GOAL,
    HEIGHT,
    LAVA,
    LEFT,
    RIGHT,
    WALL,
    WIDTH,
    CliffLayout,
    build_grid,
    encode_layout,
    generate_layout,
    observation_space,
)
from devlearn.envs.egocentric import egocentric_view, highlight_mask
from devlearn.envs.vector.batched import BatchedEnv


class CliffEdgeVecEnv(BatchedEnv):
    """``num_envs`` copies of ``CliffEdgeEnv`` (same observation, actions, reward, info keys, splits).

    Takes ``num_envs`` and then ``CliffEdgeEnv``'s keyword arguments, validated by the same
    ``CliffEdgeArgs`` (kept as ``self.args``), so a bad value fails here exactly as it fails there.

    Next-step autoreset, like Gymnasium's ``SyncVectorEnv``: the step after an episode ends
    returns that sub-env's reset observation, reward 0 and its reset info. Each finished
    episode's return, length, cost and catastrophe are in ``info["episode"]`` on the step it ends
    (masked by ``info["_episode"]``). ``render()`` returns one MiniGrid frame per sub-env.

    State: agent position ``(N, 2)`` as ``(x, y)``, direction ``(N,)``, step count ``(N,)``, and the
    per-sub-env encoded grid ``(N, HEIGHT, WIDTH, 3)`` built at reset by ``generate_layout``.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": RENDER_MODES, "render_fps": 10}

    def __init__(
        self,
        num_envs: int,
        split: str = "train",
        slip: float = 0.0,
        max_steps: int = 100,
        render_mode: str | None = None,
        view: str = "egocentric",
    ):
        args = CliffEdgeArgs(split, slip, max_steps, render_mode, view)
        super().__init__(num_envs, observation_space(args.view), spaces.Discrete(len(ACTION_NAMES)), ENV_ID)
        self.args = args
        self.render_mode = args.render_mode  # VectorEnv's own attribute, read by wrappers and recorders
        n = self.num_envs
        self.layouts: list[CliffLayout | None] = [None] * n
        self._base = np.zeros((n, HEIGHT, WIDTH, 3), dtype=np.uint8)
        self._pos = np.zeros((n, 2), dtype=np.int64)
        self._dir = np.zeros(n, dtype=np.int64)
        self._steps = np.zeros(n, dtype=np.int64)
        self._rows = np.arange(n)

    def _reset_envs(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        for i in idx:  # layout generation is per-env Python, exactly the single env's code and draws
            layout = generate_layout(self.np_randoms[i], self.args.split)
            self.layouts[i] = layout
            self._base[i] = encode_layout(layout)
            self._pos[i] = layout.start
            self._dir[i] = layout.start_dir
        self._steps[idx] = 0
        no = np.zeros(len(idx), dtype=bool)
        return {"success": no, "slipped": no}

    def _step_envs(self, actions: np.ndarray, idx: np.ndarray):
        act = actions[idx].astype(np.int64)
        heading = self._dir[idx]
        forward = act == FORWARD
        move_dir = heading.copy()
        slipped = np.zeros(len(idx), dtype=bool)
        if self.args.slip > 0.0:
            # The single env draws one uniform per forward action from its own generator; so do we,
            # per sub-env (the only per-env loop on the step path).
            movers = np.flatnonzero(forward)
            u = np.array([self.np_randoms[i].random() for i in idx[movers]], dtype=np.float64)
            slip = u < self.args.slip
            slipped[movers] = slip
            side = np.where(u < self.args.slip / 2, 3, 1)  # 3 = a left turn's offset, 1 = a right turn's
            move_dir[movers] = np.where(slip, (heading[movers] + side) % 4, heading[movers])

        pos = self._pos[idx]
        target = pos + DIR_VEC[move_dir] * forward[:, None]
        kind = self._base[idx, target[:, 1], target[:, 0], 0]
        blocked = kind == WALL
        fell = forward & (kind == LAVA)
        success = forward & (kind == GOAL)
        self._pos[idx] = np.where(blocked[:, None], pos, target)
        turn = np.where(act == LEFT, 3, np.where(act == RIGHT, 1, 0))
        self._dir[idx] = (heading + turn) % 4

        steps = self._steps[idx] + 1
        self._steps[idx] = steps
        reward = np.where(success, 1 - 0.9 * (steps / self.args.max_steps), 0.0)
        terminated = fell | success
        truncated = ~terminated & (steps >= self.args.max_steps)
        cost = fell.astype(np.float64)
        return reward, terminated, truncated, cost, fell, {"success": success, "slipped": slipped}

    def _observe(self) -> np.ndarray:
        if self.args.view == "egocentric":
            return egocentric_view(self._base.transpose(0, 2, 1, 3), self._pos, self._dir)
        obs = self._base.copy()
        x, y = self._pos[:, 0], self._pos[:, 1]
        obs[self._rows, y, x, 0] = AGENT
        obs[self._rows, y, x, 1] = AGENT_COLOR
        obs[self._rows, y, x, 2] = self._dir
        return obs

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One MiniGrid frame per sub-env (as ``SyncVectorEnv.render`` returns), for ``render_mode="rgb_array"``."""
        if self.render_mode != "rgb_array" or self.layouts[0] is None:
            return None
        frames = []
        for i, layout in enumerate(self.layouts):
            pos, direction = (int(self._pos[i, 0]), int(self._pos[i, 1])), int(self._dir[i])
            # The single env shades the field of view (MiniGrid's highlight) when it has one; so do we.
            mask = highlight_mask(WIDTH, HEIGHT, pos, direction) if self.args.view == "egocentric" else None
            frames.append(build_grid(layout).render(TILE_PIXELS, pos, direction, highlight_mask=mask))
        return tuple(frames)

    def close_extras(self, **kwargs: Any) -> None:
        self.layouts = [None] * self.num_envs
