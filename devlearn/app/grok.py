"""``devlearn grok``: grokking on modular arithmetic, the task where a schedule's effect is published.

A small transformer reads ``a b =`` and predicts ``(a op b) mod p`` (Power et al. 2021). Trained
full-batch with AdamW and weight decay 1.0 at a constant LR, it memorises the training pairs within a
few hundred steps and generalises to the held-out pairs only thousands of steps later (Nanda et al.
2023). That delay is what the schedules of ``devlearn/schedules.py`` are measured on before
they are trusted on the environments.

The model is the agent's own core, ``devlearn.model.core.CausalTransformer``, with token embeddings
and an output head; the optimizer is ``devlearn.optim.build_optimizer`` (AdamW, decay groups)
and the schedule sets its LR and weight decay at every step. Everything a run needs is in
``GrokConfig`` (``configs/grok.yaml``); ``train_seed`` trains one seed and returns its curves,
``run_grok`` trains ``n_seeds`` seeds and, with more than one, scores their ensemble.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter

from devlearn.device import resolve_device
from devlearn.errors import ConfigError, check_choice
from devlearn.model.core import CausalTransformer
from devlearn.optim import build_optimizer
from devlearn.schedules import apply_schedule, validate_schedule

OPS = ("add", "mul")
SPLITS = ("random", "operand")
DEVICES = ("auto", "cpu", "cuda")


def validate_grok(cfg: Any) -> None:
    """Check a composed ``GrokConfig``; raise ``ConfigError`` naming the key and what is allowed."""
    check_choice("op", cfg.op, OPS)
    check_choice("split", cfg.split, SPLITS)
    check_choice("device", cfg.device, DEVICES)
    if cfg.p < 3:
        raise ConfigError(f"p={cfg.p!r} must be >= 3.")
    if not 0 < cfg.train_fraction < 1:
        raise ConfigError(f"train_fraction={cfg.train_fraction!r} must be in (0, 1).")
    for key in ("steps", "lr", "init_scale", "d_model", "n_layers", "n_heads", "n_seeds", "eval_every"):
        if not getattr(cfg, key) > 0:
            raise ConfigError(f"{key}={getattr(cfg, key)!r} must be > 0.")
    if cfg.weight_decay < 0:
        raise ConfigError(f"weight_decay={cfg.weight_decay!r} must be >= 0.")
    if cfg.d_model % cfg.n_heads:
        raise ConfigError(f"d_model={cfg.d_model} must be divisible by n_heads={cfg.n_heads}.")
    if not 0 < cfg.target_accuracy <= 1:
        raise ConfigError(f"target_accuracy={cfg.target_accuracy!r} must be in (0, 1].")
    validate_schedule(cfg.schedule)
    if cfg.schedule.name in ("sleep", "catapult_sleep") and cfg.weight_decay == 0:
        raise ConfigError(
            f"schedule={cfg.schedule.name} multiplies the weight decay, and weight_decay=0: set weight_decay > 0."
        )


# --- data -------------------------------------------------------------------------------------
def dataset(op: str, p: int, train_fraction: float, split: str, seed: int) -> dict[str, torch.Tensor]:
    """Every pair ``(a, b)`` as tokens ``[a, b, =]`` with its answer, split into train and validation.

    ``split=random``: a random ``train_fraction`` of the pairs (drawn with ``seed``), as in the
    grokking papers. ``split=operand``: the pairs with ``a < round(train_fraction * p)`` train and the
    rest validate, so the numbers above the bound are seen only as the second operand in training: a
    harder test, answerable only by a solution that treats both operands alike.
    """

    a, b = torch.cartesian_prod(torch.arange(p), torch.arange(p)).T
    answer = (a + b) % p if op == "add" else (a * b) % p
    tokens = torch.stack([a, b, torch.full_like(a, p)], dim=1)  # token p is "="
    if split == "random":
        order = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
        n_train = round(train_fraction * p * p)
        train, val = order[:n_train], order[n_train:]
    else:
        bound = round(train_fraction * p)
        train, val = (a < bound).nonzero().squeeze(1), (a >= bound).nonzero().squeeze(1)
    return {"x_train": tokens[train], "y_train": answer[train], "x_val": tokens[val], "y_val": answer[val]}


# --- model ------------------------------------------------------------------------------------
def build_model(cfg: Any) -> torch.nn.Module:
    """Token embeddings -> ``CausalTransformer`` (the agent's core) -> a linear head read at ``=``."""


    class GrokNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(cfg.p + 1, cfg.d_model)  # 0 .. p-1 and "="
            nn.init.normal_(self.embed.weight, std=0.02)
            self.core = CausalTransformer(cfg.d_model, cfg.n_layers, cfg.n_heads, max_len=3)
            self.head = nn.Linear(cfg.d_model, cfg.p, bias=False)
            nn.init.normal_(self.head.weight, std=0.02)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """``(N, 3)`` tokens -> ``(N, p)`` logits of the answer."""
            return self.head(self.core(self.embed(x))[:, -1])

    model = GrokNet()
    if cfg.init_scale != 1.0:

        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    p.mul_(cfg.init_scale)
    return model


# --- training ---------------------------------------------------------------------------------
def train_seed(
    cfg: Any, seed: int, writer: Any = None, progress: bool = False, device: str | None = None
) -> dict[str, Any]:
    """Train one seed full-batch for ``cfg.steps`` steps; return its curves and headline figures.

    Returns a dict: ``seed``, ``steps_to_target`` (None if not reached), ``final_val_acc``,
    ``final_train_acc``, ``steps`` (trained), ``seconds``, ``curve`` (lists per evaluation: step,
    train/val loss and accuracy, lr, weight decay) and ``val_probs`` (the final softmax on the
    validation pairs, a tensor, for the ensemble).
    """
    device = device or resolve_device(cfg.device)
    data = {
        k: v.to(device)
        for k, v in dataset(cfg.op, cfg.p, cfg.train_fraction, cfg.split, cfg.data_seed).items()
    }
    torch.manual_seed(seed)
    model = build_model(cfg).to(device)
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, eps=1e-8, betas=(cfg.beta1, cfg.beta2))
    keys = ("step", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "weight_decay")
    curve: dict[str, list[float]] = {k: [] for k in keys}
    reached: int | None = None
    t0, next_print, step = time.time(), 0.0, 0
    for step in range(1, cfg.steps + 1):
        lr, wd = apply_schedule(optimizer, cfg.schedule, step - 1, cfg.steps)
        logits = model(data["x_train"])
        loss = F.cross_entropy(logits, data["y_train"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % cfg.eval_every and step != cfg.steps:
            continue
        row = dict(zip(keys, [step, *_figures(model, data, logits, loss), lr, wd], strict=True))
        _record(row, curve, writer)
        if reached is None and row["val_acc"] >= cfg.target_accuracy:
            reached = step
        if progress and (time.time() >= next_print or step == cfg.steps):
            next_print = time.time() + 2.0
            _print_progress(seed, step, cfg.steps, row, time.time() - t0)
        if reached is not None and cfg.stop_at_target:
            break
    with torch.no_grad():
        val_probs = F.softmax(model(data["x_val"]), dim=-1).cpu()
    if progress:
        print()
    return {
        "seed": seed,
        "steps_to_target": reached,
        "final_val_acc": curve["val_acc"][-1],
        "final_train_acc": curve["train_acc"][-1],
        "steps": step,
        "seconds": round(time.time() - t0, 2),
        "curve": curve,
        "val_probs": val_probs,
        "y_val": data["y_val"].cpu(),
    }


@torch.no_grad()
def _figures(model: Any, data: dict[str, Any], logits: Any, loss: Any) -> list[float]:
    """Train loss and accuracy, validation loss and accuracy, in one device sync.

    The train figures are those of the batch just stepped on (before its update): no extra pass.
    """
    train_acc = (logits.argmax(-1) == data["y_train"]).float().mean()
    val_logits = model(data["x_val"])
    val_loss = F.cross_entropy(val_logits, data["y_val"])
    val_acc = (val_logits.argmax(-1) == data["y_val"]).float().mean()
    return torch.stack([loss.detach(), train_acc, val_loss, val_acc]).tolist()


def _record(row: dict[str, float], curve: dict[str, list[float]], writer: Any) -> None:
    """Append one evaluation's figures to the curves, and to TensorBoard when a writer is given."""
    for k, v in row.items():
        curve[k].append(v)
    if writer is not None:
        step = row["step"]
        for k in ("loss", "acc"):
            writer.add_scalar(f"train/{k}", row[f"train_{k}"], step)
            writer.add_scalar(f"val/{k}", row[f"val_{k}"], step)
        writer.add_scalar("train/lr", row["lr"], step)
        writer.add_scalar("train/weight_decay", row["weight_decay"], step)


def _print_progress(seed: int, step: int, total: int, row: dict[str, float], seconds: float) -> None:
    done = step / total
    bar = "#" * int(30 * done) + "." * (30 - int(30 * done))
    end = "\r" if sys.stdout.isatty() else "\n"
    print(
        f"seed {seed} [{bar}] {step:,}/{total:,} steps | train acc {row['train_acc']:.3f} | "
        f"val acc {row['val_acc']:.3f} | lr {row['lr']:.2e} | wd {row['weight_decay']:.2g} | "
        f"{step / max(seconds, 1e-9):,.0f} steps/s",
        end=end,
        flush=True,
    )


def ensemble_accuracy(members: list[dict[str, Any]]) -> dict[str, float]:
    """Validation accuracy of the members' mean softmax, against the mean member's accuracy."""

    probs = torch.stack([m["val_probs"] for m in members]).mean(0)
    y = members[0]["y_val"]
    ensemble = float((probs.argmax(-1) == y).float().mean())
    mean_member = sum(float((m["val_probs"].argmax(-1) == y).float().mean()) for m in members) / len(members)
    return {"ensemble_val_acc": ensemble, "mean_member_val_acc": mean_member, "gain": ensemble - mean_member}


def summary(cfg: Any, members: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of a run of several seeds: per seed, the median steps to target, and the ensemble."""
    steps = sorted(m["steps_to_target"] if m["steps_to_target"] is not None else math.inf for m in members)
    median = (
        steps[len(steps) // 2]
        if len(steps) % 2
        else (steps[len(steps) // 2 - 1] + steps[len(steps) // 2]) / 2
    )
    out: dict[str, Any] = {
        "op": cfg.op,
        "p": cfg.p,
        "train_fraction": cfg.train_fraction,
        "split": cfg.split,
        "schedule": cfg.schedule.name,
        "budget_steps": cfg.steps,
        "median_steps_to_target": None if math.isinf(median) else median,
        "seeds": [
            {
                k: m[k]
                for k in ("seed", "steps_to_target", "final_val_acc", "final_train_acc", "steps", "seconds")
            }
            for m in members
        ],
    }
    if len(members) > 1:
        out["ensemble"] = ensemble_accuracy(members)
    return out


def run_grok(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """Train ``cfg.n_seeds`` seeds, log each to ``run_dir/tb/seed<k>`` and write ``run_dir/results.json``."""
    validate_grok(cfg)
    device = resolve_device(cfg.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"devlearn: grokking ({cfg.op}) mod {cfg.p}, train fraction {cfg.train_fraction} ({cfg.split} split), "
        f"schedule={cfg.schedule.name}, {cfg.n_seeds} seed(s), {cfg.steps:,} steps on {device} -> {run_dir}"
    )
    members = []
    for seed in range(cfg.seed, cfg.seed + cfg.n_seeds):
        writer = None
        if cfg.tensorboard:
            writer = SummaryWriter(str(run_dir / "tb" / f"seed{seed}"))
        members.append(train_seed(cfg, seed, writer, cfg.progress_bar, device))
        if writer is not None:
            writer.close()
    result = summary(cfg, members)
    result["device"] = device
    tmp = run_dir / ".results.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, run_dir / "results.json")
    print(format_summary(result))
    return result


def format_summary(result: dict[str, Any]) -> str:
    """A console table: one row per seed, then the median and (several seeds) the ensemble."""
    target = "steps to target"
    lines = [f"{'seed':>6}{target:>18}{'final val acc':>16}{'final train acc':>18}", "-" * 58]
    for s in result["seeds"]:
        reached = s["steps_to_target"] if s["steps_to_target"] is not None else "not within budget"
        lines.append(f"{s['seed']:>6}{reached!s:>18}{s['final_val_acc']:>16.3f}{s['final_train_acc']:>18.3f}")
    median = result["median_steps_to_target"]
    lines.append(f"median steps to target: {median if median is not None else 'not within budget'}")
    if "ensemble" in result:
        e = result["ensemble"]
        lines.append(
            f"ensemble val acc {e['ensemble_val_acc']:.3f} vs mean member {e['mean_member_val_acc']:.3f} "
            f"(gain {e['gain']:+.3f})"
        )
    return "\n".join(lines)
