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
  (10 equal-width bins), beside ``shield/probed_pairs``, how many (state, action) pairs it rests on;
- ``shield/auroc``: how well the imagined risk ranks the catastrophe actions above the safe ones, over
  the last ``AUROC_PAIRS`` probed pairs (0.5: chance; a calibrated head that never fires can still rank);
- ``shield/silent``: 1 for a rollout in which the world had a catastrophe action on a probed step and the
  shield masked nothing: the failure "calibrated but never firing", reported, never a quiet success.

With multi-step imagination (``agent.imagine.horizon`` H > 1) each candidate's imagined action sequence is
also stepped in the copy (the candidate, then the policy's imagined actions), and ``shield/h_recall``,
``shield/h_precision`` and ``shield/h_auroc`` score the risk against a catastrophe anywhere in those H steps.

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

AUROC_PAIRS = 5000  # probed (state, action) pairs the run's AUROC is computed over (the latest)


def allowed_actions(danger: Tensor, tau: float) -> Tensor:
    """``(B, A)`` predicted catastrophe probabilities -> ``(B, A)`` bool: the actions the shield lets through."""
    allowed = danger <= tau
    # never leave a state without an action: keep the least dangerous one
    least = torch.zeros_like(allowed).scatter_(-1, danger.argmin(-1, keepdim=True), True)
    return allowed | (least & ~allowed.any(-1, keepdim=True))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for boolean ``labels`` (ties count half); None without both classes."""
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based average ranks
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def step_copies(env: Any, plans: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Ground truth by stepping copies of ``env``: for each candidate ``a`` of ``plans`` ``(E, A, H)``, one deep copy
    stepped along ``plans[:, a]``; returns ``(first, within)`` ``(E, A)`` bool: the first step was a catastrophe,
    a catastrophe came within the H steps (before the episode ended). None if the env cannot be copied."""
    n_envs, n_actions, horizon = plans.shape
    first = np.zeros((n_envs, n_actions), dtype=bool)
    within = np.zeros((n_envs, n_actions), dtype=bool)
    for a in range(n_actions):
        try:
            twin = copy.deepcopy(env)
        except Exception:  # e.g. subprocess envs: the shield is then not measured, never guessed
            return None
        try:
            alive = np.ones(n_envs, dtype=bool)
            for k in range(horizon):
                _, _, terminated, truncated, info = twin.step(plans[:, a, k].astype(np.int64))
                fell = info_array(info, "catastrophe", False, n_envs).astype(bool) & alive
                if k == 0:
                    first[:, a] = fell
                within[:, a] |= fell
                alive &= ~(terminated | truncated)
                if not alive.any():
                    break
        finally:
            twin.close()
    return first, within


class ShieldMonitor:
    """Per-rollout shield statistics against ground truth (see the module docstring)."""

    def __init__(self, probes: int = 4, bins: int = 10) -> None:
        self.probes = probes
        self.can_copy = True  # becomes False the first time the env refuses to be copied
        self._counts = np.zeros(4)  # true positives, false positives, false negatives, probed pairs
        self._h_counts = np.zeros(3)  # the same against the H-step truth: true and false positives, false negatives
        self._bin_n = np.zeros(bins)  # calibration over the whole run: pairs, predicted and true per bin
        self._bin_p = np.zeros(bins)
        self._bin_y = np.zeros(bins)
        self._pairs: list[np.ndarray] = []  # (danger, first-step truth, H-step truth) rows, the latest AUROC_PAIRS
        self._truth_had_catastrophe = False  # in this rollout's probes

    def wants_probe(self, t: int, n_steps: int) -> bool:
        """Whether rollout step ``t`` of ``n_steps`` is one of the evenly spaced probe steps."""
        return self.can_copy and t % max(1, n_steps // self.probes) == 0

    def probe(self, env: Any, danger: np.ndarray, allowed: np.ndarray, real: np.ndarray, plans: np.ndarray) -> None:
        """Step copies of ``env`` along each candidate's ``plans`` ``(E, A, H)``; compare with ``allowed`` ``(E, A)``."""
        truth = step_copies(env, plans)
        if truth is None:
            self.can_copy = False
            return
        first, within = truth[0][real], truth[1][real]
        masked, danger = ~allowed[real], danger[real]
        self._counts += [(masked & first).sum(), (masked & ~first).sum(), (~masked & first).sum(), first.size]
        self._h_counts += [(masked & within).sum(), (masked & ~within).sum(), (~masked & within).sum()]
        self._truth_had_catastrophe |= bool(first.any())
        ok = np.isfinite(danger)  # a diverged model (rolled back after this rollout) has no calibration
        bins = np.clip((danger[ok] * len(self._bin_n)).astype(int), 0, len(self._bin_n) - 1)
        np.add.at(self._bin_n, bins, 1)
        np.add.at(self._bin_p, bins, danger[ok])
        np.add.at(self._bin_y, bins, first[ok])
        self._pairs.append(np.stack([danger[ok], first[ok], within[ok]], axis=-1).reshape(-1, 3))
        rows = np.concatenate(self._pairs)[-AUROC_PAIRS:]
        self._pairs = [rows]

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
        values.update(self._truth_figures())
        if self._truth_had_catastrophe:
            values["shield/silent"] = float(values["shield/fire_rate"] == 0.0)
        self._counts[:] = 0
        self._h_counts[:] = 0
        self._truth_had_catastrophe = False
        return values

    def _truth_figures(self) -> dict[str, float]:
        """Precision, recall, calibration and AUROC against the world's answers (only what was probed)."""
        values: dict[str, float] = {}
        tp, fp, fn, pairs = self._counts
        if not pairs:
            return values
        values["shield/probed_pairs"] = float(pairs)
        if tp + fp:
            values["shield/precision"] = tp / (tp + fp)
            values["shield/false_mask_rate"] = fp / (tp + fp)
        if tp + fn:
            values["shield/recall"] = tp / (tp + fn)
        h_tp, h_fp, h_fn = self._h_counts
        if h_tp + h_fp:
            values["shield/h_precision"] = h_tp / (h_tp + h_fp)
        if h_tp + h_fn:
            values["shield/h_recall"] = h_tp / (h_tp + h_fn)
        n = self._bin_n.sum()
        if n:
            gap = np.abs(self._bin_p - self._bin_y).sum()  # sum over bins of n_b * |mean p - mean y|
            values["shield/ece"] = float(gap / n)
        rows = self._pairs[0] if self._pairs else np.zeros((0, 3))
        for name, column in (("shield/auroc", 1), ("shield/h_auroc", 2)):
            area = auroc(rows[:, 0], rows[:, column] > 0)
            if area is not None:
                values[name] = area
        return values
