"""Data-parallel training inside one rank: who am I, and the collectives that keep the ranks in step.

``devlearn train distributed.nproc=N`` starts N processes (``devlearn/app/spawn.py``); each one runs
the usual training loop on its share of the envs, and these helpers make the ranks one learner:

* ``broadcast_module``: every rank starts from rank 0's parameters (as ``DistributedDataParallel`` does).
* ``equalize``: every rank runs the same number of minibatches per update. Ranks see different numbers
  of real transitions (episodes end at different times), so a rank with fewer resamples some of its
  own until it has as many as the rank with most; if any rank has none, every rank skips the update.
  Unequal counts would leave one rank waiting forever in a collective the others never enter.
* ``allreduce_grads``: after the agent wrote its (per-loss clipped) gradients into ``p.grad``, they are
  averaged over the ranks in one flat all-reduce, together with a flag for a non-finite loss or norm,
  so that either every rank rolls back or none does.
* ``GatheredRunLog``: every rank's finished episodes reach every rank's run log, so the counters
  (episodes, catastrophes, the last 100 episodes) are the whole run's, and identical on all ranks.

Outside a process group (one process) every helper is a no-op, so the agent calls them unconditionally.
Env steps are counted for all ranks together: ``num_timesteps`` advances by ``num_envs x world_size``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from devlearn.logging.runlog import RunLog

# Rank r's seed is seed + r x RANK_SEED_STRIDE: its own stream for env resets and action sampling, far
# from the seeds of neighbouring runs (seed 0's rank 1 is not seed 1's rank 0).
RANK_SEED_STRIDE = 100_003


def active() -> bool:
    """Whether this process is one rank of several."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes checkpoints, TensorBoard and results.json."""
    return rank() == 0


def rank_seed(seed: int) -> int:
    """This rank's seed: ``seed`` on rank 0 (and alone), a stream of its own on the others."""
    return seed + rank() * RANK_SEED_STRIDE


def broadcast_module(module: torch.nn.Module) -> None:
    """Overwrite every parameter and buffer of ``module`` with rank 0's."""
    if not active():
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def equalize(index: Tensor, gen: torch.Generator) -> Tensor:
    """``index`` (this rank's real transitions), padded to the largest count of any rank by resampling.

    Returns an empty tensor on every rank if any rank has none: then every rank skips the update.
    """
    if not active():
        return index
    counts = torch.tensor([len(index), -len(index)], dtype=torch.long, device=_comm_device())
    dist.all_reduce(counts, op=dist.ReduceOp.MAX)
    most, fewest = int(counts[0]), -int(counts[1])
    if fewest == 0:
        return index[:0]
    extra = most - len(index)
    if extra == 0:
        return index
    pick = torch.randint(len(index), (extra,), generator=gen, device=gen.device).to(index.device)
    return torch.cat([index, index[pick]])


def allreduce_grads(params: list[Tensor], losses: dict[str, Tensor], norms: dict[str, Tensor]) -> dict[str, Tensor]:
    """Average ``p.grad`` over the ranks; returns ``norms``, all NaN on every rank if any rank's were not finite.

    The agent rolls back when a loss or norm is not finite: the NaN norms make every rank take the
    same decision. One flat all-reduce per optimizer step carries the gradients and the flag.
    """
    if not active():
        return norms
    local_bad = ~torch.stack([torch.isfinite(v).all() for v in (*losses.values(), *norms.values())]).all()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads] + [local_bad.to(grads[0].dtype).reshape(1)])
    dist.all_reduce(flat)
    flat[:-1] /= dist.get_world_size()
    offset = 0
    for p, g in zip(params, grads, strict=True):
        p.grad = flat[offset : offset + g.numel()].view_as(g)
        offset += g.numel()
    if bool(flat[-1] > 0):  # some rank's loss or norm was not finite
        return {name: torch.full_like(norm, float("nan")) for name, norm in norms.items()}
    return norms


def _comm_device() -> torch.device:
    """Where small tensors for collectives live: NCCL needs them on this rank's GPU, gloo on the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class GatheredRunLog(RunLog):
    """A ``RunLog`` fed with the finished episodes of every rank (all ranks hold the same counters).

    Only rank 0's has a writer and a progress line; the agent calls ``episodes`` once per rollout on
    every rank, so the gather is entered by all of them.
    """

    def episodes(self, finished: list[dict[str, Any]]) -> None:
        if not active():
            return super().episodes(finished)
        gathered: list[list[dict[str, Any]] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, finished)
        super().episodes([ep for part in gathered for ep in part or []])
