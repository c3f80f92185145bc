"""The optimizer builder: AdamW with decay / no-decay parameter groups, nanoGPT-style.

Weight matrices and embeddings (parameters with 2 or more dimensions) are decayed; biases and
LayerNorm gains are not (decaying them only fights the normalisation). Each group carries a
``name`` and its ``base_lr`` / ``base_weight_decay``, so a schedule can set ``lr`` and
``weight_decay`` per step from these without knowing the model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """``model``'s trainable parameters split into a ``decay`` and a ``no_decay`` group (empty groups dropped)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float = 0.0, eps: float = 1e-5, betas: Iterable[float] = (0.9, 0.999)
) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters (``weight_decay`` on the decay group only).

    With ``weight_decay=0`` this is Adam exactly (AdamW decouples the decay from the gradient).
    """
    groups = parameter_groups(model, weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=lr, eps=eps, betas=tuple(betas))
    for group in optimizer.param_groups:
        group["base_lr"] = lr
        group["base_weight_decay"] = group["weight_decay"]
    return optimizer


def trainable(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every parameter the optimizer updates (for gradient clipping)."""
    return [p for group in optimizer.param_groups for p in group["params"]]
