"""The learned shield: refuse actions whose imagined consequence is a catastrophe, and measure it honestly.

For Discrete actions the agent imagines every candidate's next state (one core pass, see
``Core.candidate_states``) and reads the world model's calibrated catastrophe probability for
each (``WorldModel.catastrophe_prob`` undoes the training's positive weight). Actions above ``tau``
are masked before sampling; if every action is, the least dangerous one stays.

How good is it? ``ShieldMonitor`` asks the world, not the model. On ``probes`` evenly spaced steps
of each rollout it steps one deep copy of the vector env per action (same state, same RNG, so a
stochastic env answers as the real one would have) and reads ``info["catastrophe"]``: the ground
truth for every (sub-env, action) pair. Against it, per rollout:

- ``shield/precision``: of the masked actions, the fraction that really were catastrophes;
- ``shield/false_mask_rate``: of the masked actions, the fraction that were safe (1 - precision):
  a shield that masks safe moves makes the agent passive, and passivity is not safety;
- ``shield/recall``: of the actions that really were catastrophes, the fraction masked;
- ``shield/ece``: expected calibration error of the predicted probabilities over the run so far
  (10 equal-width bins), beside ``shield/probed_pairs``, how many (state, action) pairs it rests on.

Without probes (an env that cannot be copied, e.g. subprocess envs) these are not logged, never
guessed. Every rollout also logs ``shield/fire_rate`` (real steps with at least one action masked),
``shield/veto_rate`` (real steps where the policy's own choice was masked),
``shield/masked_danger`` (the mean predicted probability of the masked actions) and
``shield/taken_catastrophe_rate`` (real steps whose taken action was a catastrophe: what slipped through).
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
    """Per-rollout shield statistics against ground truth (see the module docstring)."""

    def __init__(self, probes: int = 4, bins: int = 10) -> None:
        self.probes = probes
        self.can_copy = True  # becomes False the first time the env refuses to be copied
        self._counts = np.zeros(4)  # true positives, false positives, false negatives, probed pairs
        self._bin_n = np.zeros(bins)  # calibration over the whole run: pairs, predicted and true per bin
        self._bin_p = np.zeros(bins)
        self._bin_y = np.zeros(bins)

    def wants_probe(self, t: int, n_steps: int) -> bool:
        """Whether rollout step ``t`` of ``n_steps`` is one of the evenly spaced probe steps."""
        return self.can_copy and t % max(1, n_steps // self.probes) == 0

    def probe(self, env: Any, danger: np.ndarray, allowed: np.ndarray, real: np.ndarray) -> None:
        """Step a copy of ``env`` with each action for every sub-env; compare with ``allowed`` ``(E, A)``."""
        truth = np.zeros_like(allowed)
        for a in range(allowed.shape[1]):
            try:
                twin = copy.deepcopy(env)
            except Exception:  # e.g. subprocess envs: the shield is then not measured, never guessed
                self.can_copy = False
                return
            try:
                _, _, _, _, info = twin.step(np.full(len(real), a, dtype=np.int64))
            finally:
                twin.close()
            truth[:, a] = info_array(info, "catastrophe", False, len(real)).astype(bool)
        masked, truth, danger = ~allowed[real], truth[real], danger[real]
        self._counts += [(masked & truth).sum(), (masked & ~truth).sum(), (~masked & truth).sum(), truth.size]
        ok = np.isfinite(danger)  # a diverged model (rolled back after this rollout) has no calibration
        bins = np.clip((danger[ok] * len(self._bin_n)).astype(int), 0, len(self._bin_n) - 1)
        np.add.at(self._bin_n, bins, 1)
        np.add.at(self._bin_p, bins, danger[ok])
        np.add.at(self._bin_y, bins, truth[ok])

    def scalars(self, real: Tensor, allowed: Tensor, danger: Tensor, vetoed: Tensor, fell: Tensor) -> dict:
        """This rollout's figures from its ``(E, n)`` / ``(E, n, A)`` records; resets the per-rollout counts."""
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
        tp, fp, fn, pairs = self._counts
        if pairs:
            values["shield/probed_pairs"] = float(pairs)
            if tp + fp:
                values["shield/precision"] = tp / (tp + fp)
                values["shield/false_mask_rate"] = fp / (tp + fp)
            if tp + fn:
                values["shield/recall"] = tp / (tp + fn)
            n = self._bin_n.sum()
            if n:
                gap = np.abs(self._bin_p - self._bin_y).sum()  # sum over bins of n_b * |mean p - mean y|
                values["shield/ece"] = float(gap / n)
        self._counts[:] = 0
        return values
