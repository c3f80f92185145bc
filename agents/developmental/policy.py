"""The developmental agent's evaluation policy: it acts as training's collector does, on a context of its own."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from devlearn.model.context import SequenceContext, to_device, tree_map

EVAL_SEGMENT = 64  # steps an evaluation policy's context holds before it carries over


class DevelopmentalPolicy:
    """``Policy`` for evaluation: its own ``SequenceContext`` (batch size set by the first call), read as in training.

    ``agent``: the ``DevelopmentalAgent`` whose network acts (read only).
    """

    def __init__(self, agent: Any, deterministic: bool) -> None:
        self.agent, self.deterministic = agent, deterministic
        self.gen = torch.Generator(device=agent.device)
        self.gen.manual_seed(agent.seed + 1)  # its own draws: evaluating never moves the training RNG
        self.context: SequenceContext | None = None
        self.j = 0  # the position of the latest observation

    def __call__(self, obs: Any, episode_start: np.ndarray) -> np.ndarray:
        agent = self.agent
        encoder = agent.net.core.encoder
        with torch.inference_mode():
            obs = to_device(obs, agent.device)
            if self.context is None:
                n = len(episode_start)
                self.context = agent.new_context(n, EVAL_SEGMENT)
                self.context.begin(obs, encoder)
                self.j = self.context.first
            else:
                C = self.context
                if self.j == C.length - 1:
                    C.carry_over()
                    self.j = C.first
                start = torch.as_tensor(np.asarray(episode_start, dtype=bool), device=agent.device)
                if agent.surprise_writes:  # store what the world model failed to predict, as in training
                    C.surprise[:, self.j + 1] = agent.acting_surprise(C, self.j, obs, ~start)
                C.put(self.j + 1, obs, start, encoder)
                self.j += 1
            C = self.context
            last_obs = tree_map(lambda b: b[:, self.j], C.obs)
            action = agent.net.decide(C.acting_window(self.j), self.deterministic, self.gen, last_obs).action
            C.act[:, self.j] = action
            return action.cpu().numpy()

    def retrieved_steps(self) -> np.ndarray | None:
        """``(E, k)``: the episode steps memory read for the latest action, best first (-1: empty slot).

        None without a retrieval store (``memory=none|window|ssm``) or before the first call.
        """
        C = self.context
        if C is None or C.memory is None or C.memory_state.last_read is None:
            return None
        return C.memory_state.last_read.cpu().numpy()
