"""The learned shield: refuse actions whose imagined consequence is a catastrophe, and measure it honestly.

For Discrete actions the agent imagines every candidate's next state (one core pass, see
``Core.candidate_states``) and reads the world model's catastrophe probability for each. Actions
above ``tau`` are masked before sampling; if every action is, the least dangerous one stays.

How good is it? ``ShieldMonitor`` reports per rollout:

- ``shield/fire_rate``: fraction of real steps where at least one action was masked;
- ``shield/veto_rate``: fraction of real steps where the policy's own choice (the action it would
  have sampled with the same random draw and no shield) was masked;
- ``shield/precision``: of the vetoed choices, the fraction that really were catastrophes. It is
  measured by asking the world, not the model: on up to ``probes`` steps per rollout that have a
  veto, a deep copy of the vector env is stepped with the vetoed choices and its
  ``info["catastrophe"]`` is read (same state, same RNG, so stochastic envs answer as the real
  one would have). It is logged only where the env can be copied (the batched twins and
  ``SyncVectorEnv`` can; a subprocess env cannot) and only for rollouts with a probed veto;
- ``shield/probes``: how many vetoed choices the precision of this rollout is based on;
- ``shield/masked_danger``: the mean predicted catastrophe probability of the masked actions (what
  the model believed), next to ``shield/taken_catastrophe_rate``: the fraction of real steps
  whose taken (unmasked) action was a catastrophe (what slipped through).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor

from devlearn.envs.vector.episodes import info_array


def allowed_actions(danger: Tensor, tau: float) -> Tensor:
    """``(B, A)`` predicted catastrophe probabilities -> ``(B, A)`` bool: the actions the shield lets through."""
    allowed = danger <= tau
    # never leave a state without an action: keep the least dangerous one
    least = torch.zeros_like(allowed).scatter_(-1, danger.argmin(-1, keepdim=True), True)
    return allowed | (least & ~allowed.any(-1, keepdim=True))


class ShieldMonitor:
    """Per-rollout shield statistics (see the module docstring); ``probes`` world checks per rollout."""

    def __init__(self, probes: int = 4) -> None:
        self.probes = probes
        self.can_copy = True  # becomes False the first time the env refuses to be copied
        self._probed = 0
        self._hits = 0
        self._probe_steps = 0

    def wants_probe(self) -> bool:
        return self.can_copy and self._probe_steps < self.probes

    def probe(self, env: Any, actions: np.ndarray, choice: np.ndarray, vetoed: np.ndarray) -> None:
        """Step a copy of ``env`` with the policy's vetoed ``choice`` where ``vetoed``; count real catastrophes."""
        try:
            twin = copy.deepcopy(env)
        except Exception:  # e.g. subprocess envs: precision is then not measured, never guessed
            self.can_copy = False
            return
        try:
            _, _, _, _, info = twin.step(np.where(vetoed, choice, actions))
        finally:
            twin.close()
        fell = info_array(info, "catastrophe", False, len(vetoed)).astype(bool)
        self._probed += int(vetoed.sum())
        self._hits += int((fell & vetoed).sum())
        self._probe_steps += 1

    def scalars(self, real: Tensor, allowed: Tensor, danger: Tensor, vetoed: Tensor, fell: Tensor) -> dict:
        """This rollout's figures from its ``(E, n)`` / ``(E, n, A)`` records; resets the probe counters."""
        n_real = real.sum().clamp(min=1)
        masked = ~allowed & real[..., None]
        out = {
            "shield/fire_rate": masked.any(-1).sum() / n_real,
            "shield/veto_rate": (vetoed & real).sum() / n_real,
            "shield/taken_catastrophe_rate": (fell & real).sum() / n_real,
        }
        if masked.any():
            out["shield/masked_danger"] = danger[masked].mean()
        values = {k: float(v) for k, v in out.items()}
        if self._probed:
            values["shield/precision"] = self._hits / self._probed
        values["shield/probes"] = float(self._probed)
        self._probed = self._hits = self._probe_steps = 0
        return values
