"""Remember the falls: the windows that ended in a catastrophe, which the world model keeps relearning.

A catastrophe is rare (1-4% of CliffEdge's transitions early on, fewer as the agent learns), and each real
one is read by the world-model loss a handful of times before its rollout is gone. The catastrophe head then
ranks the danger well (AUROC 0.93) but stays under-confident: a certain step into lava got a predicted
probability of median 0.057, so the shield never fired. ``CatastropheReplay`` keeps the last ``capacity``
windows (raw observations, actions, validity) whose last step was a catastrophe; every minibatch the world
model relearns a few of them, encoded by today's encoder. What is replayed is only what happened: no
counterfactual label is made up.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from devlearn.model.context import SequenceContext, Window, tree_map


class CatastropheReplay:
    """A ring of the last ``capacity`` catastrophe windows of ``context``'s shape, on its device."""

    def __init__(self, context: SequenceContext, capacity: int) -> None:
        self.context, self.capacity = context, capacity
        w, dev = context.window, context.act.device
        self.obs = tree_map(lambda buf: torch.zeros(capacity, w, *buf.shape[2:], dtype=buf.dtype, device=dev), context.obs)
        self.act = torch.zeros(capacity, w, dtype=torch.long, device=dev)
        self.valid = torch.zeros(capacity, w, dtype=torch.bool, device=dev)
        self.size = 0
        self._next = 0  # the slot the next window goes to (the oldest is overwritten)

    def add(self, pos: Tensor, valid: Tensor) -> None:
        """Store the windows at flat positions ``pos`` ``(N, W)`` (``SequenceContext.positions``) with ``valid`` ``(N, W)``."""
        n = min(len(pos), self.capacity)
        if n == 0:
            return
        pos, valid = pos[-n:], valid[-n:]
        slots = (self._next + torch.arange(n, device=pos.device)) % self.capacity
        obs = self.context.gather_obs(pos)
        tree_map(lambda buf, new: buf.index_copy_(0, slots, new), self.obs, obs)
        self.act[slots] = self.context.flat(self.context.act)[pos]
        self.valid[slots] = valid
        self._next = (self._next + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int, gen: torch.Generator, encoder: Any) -> Window | None:
        """``n`` stored windows drawn at random (with replacement), encoded by ``encoder``; None while empty."""
        if self.size == 0 or n == 0:
            return None
        rows = torch.randint(0, self.size, (n,), generator=gen, device=self.act.device)
        obs = tree_map(lambda buf: buf[rows], self.obs)
        return Window(encoder(obs), self.act[rows], self.valid[rows])

    def state_dict(self) -> dict[str, Any]:
        return {"obs": self.obs, "act": self.act, "valid": self.valid, "size": self.size, "next": self._next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        tree_map(lambda buf, saved: buf.copy_(saved), self.obs, state["obs"])
        self.act.copy_(state["act"])
        self.valid.copy_(state["valid"])
        self.size, self._next = int(state["size"]), int(state["next"])


def replay_loss(world_model: Any, h_act: Tensor) -> Tensor:
    """The catastrophe and termination heads' loss on replayed windows' last steps (each was a fall that ended its episode).

    Weighted as a real positive is (``catastrophe_pos_weight``), so a replayed fall counts as much as a new one.
    """
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    pos_weight = torch.tensor(world_model.cfg.catastrophe_pos_weight, device=h_act.device)
    ones = torch.ones(h_act.shape[:-1], device=h_act.device)
    cat = bce(world_model.catastrophe_head(h_act).squeeze(-1), ones, pos_weight=pos_weight)
    term = bce(world_model.termination_head(h_act).squeeze(-1), ones)
    return world_model.cfg.catastrophe_weight * cat + world_model.cfg.termination_weight * term
