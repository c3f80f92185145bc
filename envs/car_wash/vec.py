"""The numpy batched twin of ``CarWashEnv``: the same rules on arrays, one row per sub-env.

Layouts come from the single env's own ``generate_layout`` with each sub-env's generator, so
under the same seeds and actions the twin and ``SyncVectorEnv(CarWashEnv)`` agree step for step
(``devlearn.testing.check_batched_twin`` checks it). Only resets loop over sub-envs; a step is a
handful of vectorized array operations.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from minigrid.core.constants import TILE_PIXELS
from minigrid.core.grid import Grid

from devlearn.envs.car_wash.args import RENDER_MODES, CarWashArgs
from devlearn.envs.car_wash.env import (
    ACTION_NAMES,
    AGENT_IDX,
    AGENT_IN_CAR_COLOR,
    AGENT_ON_FOOT_COLOR,
    CAR_ENCODING,
    DIR_TO_VEC,
    ENV_ID,
    observation_space,
)
from devlearn.envs.car_wash.layout import (
    EMPTY,
    GRID_SIZE,
    LAVA,
    WALL,
    WASH,
    curriculum_stage,
    generate_layout,
    layout_arrays,
)
from devlearn.envs.egocentric import EMPTY_ENCODING, egocentric_view, highlight_mask
from devlearn.envs.vector.batched import BatchedEnv


class CarWashVecEnv(BatchedEnv):
    """``num_envs`` copies of ``devlearn/CarWash-v0`` as numpy arrays (see ``CarWashEnv`` for the rules).

    Observations are ``(num_envs, 9, 9, 3)`` uint8, rewards, flags and infos exactly those of a
    ``SyncVectorEnv`` over ``CarWashEnv`` with next-step autoreset; ``info`` also carries
    ``success`` and ``walked_to_wash_without_car`` per sub-env, and ``episode`` statistics on the
    step an episode ends (see ``BatchedEnv``). ``render()`` returns one MiniGrid frame per sub-env.

    Takes ``num_envs`` and then ``CarWashEnv``'s keyword arguments, validated by the same
    ``CarWashArgs`` (kept as ``self.args``), so a bad value fails here exactly as it fails there.
    """

    metadata = {**BatchedEnv.metadata, "render_modes": RENDER_MODES, "render_fps": 10}

    def __init__(
        self,
        num_envs: int,
        split: str = "train",
        max_steps: int = 150,
        render_mode: str | None = None,
        view: str = "egocentric",
        curriculum: int = 0,
    ):
        args = CarWashArgs(split, max_steps, render_mode, view, curriculum)
        super().__init__(num_envs, observation_space(args.view), spaces.Discrete(len(ACTION_NAMES)), ENV_ID)
        self.args = args
        self.render_mode = args.render_mode  # VectorEnv's own attribute, read by wrappers and recorders
        n, s = self.num_envs, GRID_SIZE
        self._episodes_started = np.zeros(n, dtype=np.int64)  # per sub-env, as each single env counts its own
        self._out_of_range = np.zeros(n, dtype=bool)
        self._cells = np.zeros((n, s, s), dtype=np.int8)  # static map: EMPTY / WALL / LAVA / WASH
        self._static_obs = np.zeros((n, s, s, 3), dtype=np.uint8)  # its MiniGrid encoding
        self._agent = np.zeros((n, 2), dtype=np.int64)
        self._dir = np.zeros(n, dtype=np.int64)
        self._car = np.zeros((n, 2), dtype=np.int64)
        self._in_car = np.zeros(n, dtype=bool)
        self._steps = np.zeros(n, dtype=np.int64)
        self._rows = np.arange(n)

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """As ``BatchedEnv.reset``; a seeded sub-env restarts its curriculum, as the single env does."""
        if seed is not None:
            seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else list(seed)
            mask = np.ones(self.num_envs, dtype=bool)
            if options and "reset_mask" in options:
                mask = np.asarray(options["reset_mask"], dtype=bool)
            if len(seeds) == self.num_envs and mask.shape == (self.num_envs,):  # else the base class explains
                restart = mask & np.array([s is not None for s in seeds])
                self._episodes_started[restart] = 0
        return super().reset(seed=seed, options=options)

    def _reset_envs(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        for i in idx:  # layout generation is the single env's code, drawn from sub-env i's generator
            stage = curriculum_stage(int(self._episodes_started[i]), self.args.curriculum)
            self._episodes_started[i] += 1
            layout = generate_layout(self.np_randoms[i], self.args.split, stage)
            self._cells[i], self._static_obs[i] = layout_arrays(layout)
            self._agent[i], self._dir[i], self._car[i] = layout.agent, layout.agent_dir, layout.car
            self._in_car[i], self._out_of_range[i] = layout.in_car, layout.out_of_range
        self._steps[idx] = 0
        nothing = np.zeros(len(idx), dtype=bool)
        return {
            "success": nothing,
            "walked_to_wash_without_car": nothing.copy(),
            "out_of_range": self._out_of_range[idx].copy(),
        }

    def _step_envs(self, actions: np.ndarray, idx: np.ndarray):
        action = actions[idx].astype(np.int64)
        steps = self._steps[idx] + 1
        self._steps[idx] = steps
        agent, car, in_car = self._agent[idx], self._car[idx], self._in_car[idx]
        direction = self._dir[idx]
        # Forward and toggle act on the cell in front; turning only changes the direction.
        front = agent + DIR_TO_VEC[direction]
        front_type = self._cells[idx, front[:, 0], front[:, 1]]
        front_is_car = ~in_car & (front == car).all(axis=1)
        forward, toggle = action == 2, action == 3
        walk = forward & ~in_car & (front_type != WALL) & ~front_is_car
        drive = forward & in_car & (front_type != WALL)
        get_in = toggle & front_is_car
        get_out = toggle & in_car & (front_type == EMPTY)
        moved = walk | drive | get_in | get_out

        self._dir[idx] = np.where(
            action == 0, (direction - 1) % 4, np.where(action == 1, (direction + 1) % 4, direction)
        )
        self._agent[idx] = np.where(moved[:, None], front, agent)
        self._car[idx] = np.where(drive[:, None], front, car)
        self._in_car[idx] = (in_car & ~get_out) | get_in

        catastrophe = (walk | drive) & (front_type == LAVA)
        success = drive & (front_type == WASH)
        terminated = catastrophe | success
        reward = np.where(success, 1.0 - 0.9 * (steps / self.args.max_steps), 0.0)
        truncated = (steps >= self.args.max_steps) & ~terminated
        info = {
            "success": success,
            "walked_to_wash_without_car": walk & (front_type == WASH),
            "out_of_range": self._out_of_range[idx].copy(),
        }
        return reward, terminated, truncated, catastrophe.astype(np.float64), catastrophe, info

    def _observe(self) -> np.ndarray:
        obs = self._static_obs.copy()
        rows = self._rows
        obs[rows, self._car[:, 0], self._car[:, 1]] = CAR_ENCODING
        if self.args.view == "egocentric":
            carried = np.where(self._in_car[:, None], CAR_ENCODING, EMPTY_ENCODING)
            return egocentric_view(obs, self._agent, self._dir, carried)
        agent_cell = obs[rows, self._agent[:, 0], self._agent[:, 1]]
        agent_cell[:, 0] = AGENT_IDX
        agent_cell[:, 1] = np.where(self._in_car, AGENT_IN_CAR_COLOR, AGENT_ON_FOOT_COLOR)
        agent_cell[:, 2] = self._dir
        obs[rows, self._agent[:, 0], self._agent[:, 1]] = agent_cell
        return obs

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One MiniGrid ``rgb_array`` frame per sub-env (the single env's picture of the same state)."""
        if self.render_mode != "rgb_array":
            return None
        frames = []
        for i in range(self.num_envs):
            cells = self._static_obs[i].copy()
            cells[tuple(self._car[i])] = CAR_ENCODING
            grid, _ = Grid.decode(cells)  # the renderer draws the agent on top, over the car if driving
            pos, direction = (int(self._agent[i, 0]), int(self._agent[i, 1])), int(self._dir[i])
            # The single env shades the field of view (MiniGrid's highlight) when it has one; so do we.
            mask = (
                highlight_mask(GRID_SIZE, GRID_SIZE, pos, direction)
                if self.args.view == "egocentric"
                else None
            )
            frames.append(grid.render(TILE_PIXELS, pos, direction, highlight_mask=mask))
        return tuple(frames)
