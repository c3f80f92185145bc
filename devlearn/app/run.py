"""``devlearn train``: train an agent, log to TensorBoard, and print a train/held-out table.

The whole run is visible here: build the batched env, build the agent (or restore it from the
run's checkpoint), let it learn while it reports episodes to the run log, then evaluate on the
train and held-out splits, record a rollout (video, or transcript for text envs) and write
``results.json``. With ``distributed.nproc=N`` the same loop runs in N processes, each on its share
of the envs, with gradients averaged (``devlearn/app/spawn.py`` starts them,
``devlearn/distributed.py`` keeps them in step); rank 0 writes, evaluates and reports.
"""

from __future__ import annotations

import copy
import json
import os
import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter

from devlearn import distributed
from devlearn.agents import make_agent, observation_wrappers
from devlearn.app import signals
from devlearn.app.checkpoints import checkpoint_file, checkpoint_step, load_checkpoint
from devlearn.app.checks import check_run
from devlearn.app.evaluate import evaluate_policies, format_table
from devlearn.app.media import record_episode
from devlearn.app.resume import find_resumable, link_job_folder, refuse_overwrite
from devlearn.app.spawn import start
from devlearn.config import OBJECTIVES, ConfigError
from devlearn.device import choose_backend, resolve_device
from devlearn.envs.vector.make import accepts_kwarg, make_vector_env
from devlearn.errors import EvaluationInterrupted, Interrupted, Stopped
from devlearn.logging.layout import HPARAM_METRICS, write_hparams, write_layout
from devlearn.logging.runlog import Diverged, RunLog


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, numpy and torch; with ``deterministic``, also pin torch to deterministic CPU kernels.

    Deterministic mode runs torch single-threaded: intra-op parallel reductions may sum in a
    different order from run to run, and that alone makes two runs drift apart. On a multi-core
    machine this costs throughput (docs/benchmarks.md); on 1-2 free cores it costs little.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # harmless on CPU; required by CUDA


def _write_results(run_dir: Path, results: dict[str, Any]) -> None:
    tmp = run_dir / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, run_dir / "results.json")


def _identity(cfg: DictConfig, device: str, agent: Any, log: RunLog, seconds: float) -> dict[str, Any]:
    """results.json's figures of the whole run: ``seconds`` of training over every session of a resumed run."""
    return {
        "env": cfg.env.id,
        "agent": cfg.agent.name,
        "seed": cfg.seed,
        "device": device,
        "deterministic": bool(cfg.deterministic),
        "processes": distributed.world_size(),
        "env_steps": agent.num_timesteps,
        "train_seconds": round(seconds, 2),
        "env_steps_per_second": round(agent.num_timesteps / max(seconds, 1e-9), 1),
        "resumes": log.resumes,
        "training": {
            "episodes": log.episodes_total,
            "catastrophes": log.catastrophes_total,
            "cost": round(log.cost_total, 6),
            "rollbacks": log.rollbacks_total,
            **{f"last{log.window}_{k}": v for k, v in log.headline().items()},
        },
        # world_model/, shield/, memory/: the mean of each tag's last 10 logged values (this session's)
        "monitors": log.monitors(),
    }


def eval_splits(cfg: DictConfig) -> list[str]:
    """The splits the final table reports: train, and ``env.eval_split`` if the env takes a split."""
    splits = ["train"]
    if cfg.env.eval_split != "train" and accepts_kwarg(cfg.env.id, "split"):
        splits.append(cfg.env.eval_split)
    return splits


def evaluation_kwargs(env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The env's constructor arguments for evaluation: the full task, so a training ``curriculum`` is switched off.

    Only a curriculum the config asked for is touched: an env that takes ``**kwargs`` (MiniGrid's) may not know one.
    """
    return {**env_kwargs, "curriculum": 0} if env_kwargs.get("curriculum") else dict(env_kwargs)


def _evaluate(
    cfg: DictConfig,
    agent: Any,
    log: RunLog,
    writer: SummaryWriter,
    num_envs: int,
    wrappers: Any,
    env_kwargs: dict[str, Any],
    splits: list[str],
) -> dict[str, Any]:
    """The final table on ``splits`` (argmax and sampled), the rollout video and the HParams entry."""
    eval_kwargs = evaluation_kwargs(env_kwargs)
    table, sampled = {}, {}
    for split in splits:
        kwargs = {**eval_kwargs, "split": split} if split != "train" else eval_kwargs
        by_mode = evaluate_policies(
            agent,
            cfg.env.id,
            cfg.log.eval_episodes,
            seed=10_000 + cfg.seed,
            wrappers=wrappers,
            label=f"eval {split}" if cfg.log.progress_bar else None,
            **kwargs,
        )
        table[split], sampled[split] = by_mode["argmax"], by_mode["sampled"]
        for prefix, summary in (("eval", table[split]), ("eval_sampled", sampled[split])):
            numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
            log.scalars({f"{prefix}/{split}/{k}": v for k, v in numbers.items()}, agent.num_timesteps)
    if cfg.log.video:
        kwargs = {**eval_kwargs, "split": splits[-1]} if len(splits) > 1 else eval_kwargs
        record_episode(
            writer,
            cfg.env.id,
            wrappers,
            kwargs,
            agent.policy(),
            "rollout",
            agent.num_timesteps,
            cfg.log.video_max_steps,
        )
    hparams = {
        "env": cfg.env.id,
        "agent": cfg.agent.name,
        "seed": cfg.seed,
        "num_envs": num_envs,
        "total_timesteps": cfg.agent.total_timesteps,
        "learning_rate": cfg.agent.learning_rate,
        "schedule": cfg.get("schedule", {}).get("name", "constant"),
        "world_model_coef": cfg.agent.get("world_model_coef", 0.0),
        "shield_tau": cfg.agent.get("shield_tau", 1.0),
    }
    metrics = [f"eval/{split}/{k}" for split in table for k in HPARAM_METRICS] + ["rollout/catastrophes_total"]
    write_hparams(writer, hparams, metrics)
    writer.close()
    return {
        "eval": table,  # argmax: the policy's most likely action
        "eval_sampled": sampled,  # actions sampled from the policy
    }


def train(cfg: DictConfig, run_dir: Path, runs_root: Path | None = None) -> dict[str, Any]:
    """Train ``cfg.agent`` on ``cfg.env``; write TensorBoard logs, checkpoints and ``results.json`` under ``run_dir``.

    ``runs_root``: where ``resume`` looks for the run to continue (default: ``run_dir``'s parent). A sweep's
    job passes the folder above its sweep (``runs/``): it resumes its own run, found by its config, in
    that run's folder, and its fresh job folder becomes a link to it (``link_job_folder``).

    Raises ``ConfigError`` (nothing trained), ``Diverged`` (``max_rollbacks`` rollbacks in a row;
    ``results.json`` says so), ``Interrupted`` (Ctrl-C in training; the checkpoint was saved first) or
    ``EvaluationInterrupted`` (Ctrl-C in the final evaluation; the trained checkpoint stays, ``results.json``
    holds the training figures).
    """
    check_run(cfg)
    if cfg.get("objective") is not None:  # checked now, not after training: the env may have no such split
        allowed = [
            o for o in OBJECTIVES if "/" not in o or o.split("/")[0] in [*eval_splits(cfg), "training"]
        ]
        if cfg.objective not in allowed:
            raise ConfigError(
                f"objective={cfg.objective!r}: {cfg.env.id} is evaluated on {' and '.join(eval_splits(cfg))} only. "
                f"Allowed values here: {', '.join(allowed)}."
            )
    device = resolve_device(cfg.device)
    resume = str(cfg.resume).lower() != "false" or (runs_root is not None and _requeued(run_dir))
    if resume:
        if runs_root is None:  # a single run: the folder named (or found and named by devlearn train), no other
            found = find_resumable(cfg, run_dir.parent, run_dir, announce=False)
        else:  # a sweep's job: its own folder if it holds the run (requeued), else its run by config
            found = find_resumable(cfg, runs_root, own=run_dir)
        if runs_root is not None and found.resolve() != run_dir.resolve():
            link_job_folder(run_dir, found)
        run_dir = found
    else:
        refuse_overwrite(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    nproc = cfg.distributed.nproc
    if nproc > 1:  # N ranks in N processes, each running _train_rank; rank 0 writes results.json
        backend = choose_backend(cfg.distributed.backend, device, nproc)
        start(_train_rank, (cfg, run_dir, device, resume), nproc, backend)
        return json.loads((run_dir / "results.json").read_text())
    return _train_rank(cfg, run_dir, device, resume)


def _requeued(job_dir: Path) -> bool:
    """A sweep job SLURM requeued (preempted, its node lost, ``scontrol requeue``) with its first arguments: its
    folder holds the run it began, which it continues (submitit's own requeue adds resume=true itself)."""
    restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    if restarts and checkpoint_file(job_dir) is not None:
        print(f"devlearn: requeued (SLURM_RESTART_COUNT={restarts}): continuing the run in {job_dir}")
        return True
    return False


def _train_rank(cfg: DictConfig, run_dir: Path, device: str, resume: bool) -> dict[str, Any] | None:
    """The run in this process: all of it alone, or one rank's share of the envs (``devlearn/distributed.py``).

    Every rank trains; rank 0 alone writes TensorBoard, checkpoints and ``results.json``, evaluates and
    returns the results (the other ranks return None once training is over).
    """
    world, main = distributed.world_size(), distributed.is_main()
    if world > 1:
        device = f"cuda:{distributed.rank()}" if device == "cuda" else device
        cfg = copy.deepcopy(cfg)
        if cfg.agent.batch_size is not None:  # per rank: batch_size over all ranks together
            cfg.agent.batch_size = -(-cfg.agent.batch_size // world)
    env_kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
    seed = distributed.rank_seed(cfg.seed)
    seed_everything(seed, cfg.deterministic)

    # env -> batched observations -> agent
    wrappers = observation_wrappers(cfg.agent.name, cfg.env.id, **env_kwargs)
    num_envs = cfg.env.num_envs // world  # this rank's share (devlearn/validate.py checked that it divides)
    env = make_vector_env(cfg.env.id, num_envs, cfg.env.vectorization, wrappers, **env_kwargs)
    writer = _writer(run_dir, resume) if main else None
    agent = make_agent(cfg.agent, env, seed, device, writer, cfg.get("schedule"))
    if world > 1:
        distributed.broadcast_module(agent.net)  # every rank starts from rank 0's parameters
    runlog = distributed.GatheredRunLog if world > 1 else RunLog
    log = runlog(
        writer, cfg.agent.total_timesteps, cfg.log.progress_bar and main, max_rollbacks=cfg.max_rollbacks,
        checkpoint_every_s=cfg.checkpoint_every_s,
    )  # fmt: skip
    log.trained_on = trained_on(cfg, env)
    agent.runlog = log  # its checkpoints carry the run's counters
    if resume:
        _restore(agent, log, run_dir, cfg, seed)
    elif main:
        writer.add_text("config", "```yaml\n" + OmegaConf.to_yaml(cfg) + "\n```")
        write_layout(writer)  # TensorBoard's Custom Scalars tab: the learning curves first
    _learn(agent, env, log, writer, cfg, run_dir, device)
    if not main:
        return None
    train_seconds = log.train_seconds()

    # held-out evaluation: the figures a paper would quote, by argmax and by sampling the policy.
    # learn() saved the final checkpoint: Ctrl-C (or a stop signal) from here on loses only the table.
    splits = eval_splits(cfg)
    try:
        if log.stop_requested:  # it came during the last update: training is done, the evaluation is not begun
            raise Stopped(log.stop_signal)
        results = _evaluate(cfg, agent, log, writer, env.num_envs * world, wrappers, env_kwargs, splits)
    except KeyboardInterrupt as err:
        writer.close()
        stopped = "interrupted during the final evaluation (devlearn eval evaluates the saved checkpoint)"
        _write_results(run_dir, {**_identity(cfg, device, agent, log, train_seconds), "stopped": stopped})
        raise EvaluationInterrupted(run_dir, agent.num_timesteps, splits[-1], getattr(err, "signum", None)) from None
    results = {**_identity(cfg, device, agent, log, train_seconds), **results}
    _write_results(run_dir, results)
    _print_summary(results, log, train_seconds, run_dir)
    return results


def _quiet_writer_thread(hook: Any) -> Any:
    """``threading.excepthook`` that stays quiet about an OSError in TensorBoard's writer thread (a full or read-only
    disk): the writer raises it again in the training loop at its next write, where it is answered in one line."""

    def excepthook(args: Any) -> None:
        if not (type(args.thread).__name__ == "_AsyncWriterThread" and issubclass(args.exc_type, OSError)):
            hook(args)

    excepthook.quiet_writer = True
    return hook if getattr(hook, "quiet_writer", False) else excepthook


def _writer(run_dir: Path, resume: bool) -> SummaryWriter:
    """The run's TensorBoard writer; a resumed run's drops the killed session's points past its checkpoint.

    Those steps are trained again from the checkpoint: without the purge, TensorBoard would draw both sessions'
    points for them, one curve doubling back over the other.
    """
    step = checkpoint_step(run_dir) if resume else None
    threading.excepthook = _quiet_writer_thread(threading.excepthook)
    return SummaryWriter(str(run_dir / "tb"), purge_step=None if step is None else step + 1)


def trained_on(cfg: DictConfig, env: Any) -> dict[str, str]:
    """What a checkpoint is of (stored in it): the env id, its observation and action spaces, the agent."""
    return {
        "env": str(cfg.env.id),
        "observation_space": str(env.single_observation_space),
        "action_space": str(env.single_action_space),
        "agent": str(cfg.agent.name),
    }


def _restore(agent: Any, log: RunLog, run_dir: Path, cfg: DictConfig, seed: int) -> None:
    """Continue ``run_dir``: its checkpoint (every rank loads rank 0's) and the run's counters."""
    load_checkpoint(agent, run_dir, expected=log.trained_on)
    if agent.restored_log is not None:
        log.load_state_dict(agent.restored_log)
    log.resumes += 1
    if not distributed.is_main():  # the checkpoint carried rank 0's random streams: this rank continues its own
        seed_everything(seed + agent.num_timesteps, cfg.deterministic)
        agent.gen.manual_seed(seed + agent.num_timesteps)
    else:
        print(f"devlearn: resuming {run_dir} at step {agent.num_timesteps:,}")


def _learn(agent: Any, env: Any, log: RunLog, writer: Any, cfg: DictConfig, run_dir: Path, device: str) -> None:
    """``agent.learn`` to ``agent.total_timesteps``; Ctrl-C saves first, a divergence writes why into ``results.json``."""
    world, main = distributed.world_size(), distributed.is_main()
    where = f"{device.split(':')[0]}, {world} processes, {dist.get_backend()}" if world > 1 else device
    if main:
        print(f"devlearn: training {cfg.agent.name} on {cfg.env.id} ({cfg.env.num_envs} envs, {where}) -> {run_dir}")
    log.restart_clock(agent.num_timesteps)
    try:
        with signals.training(log):  # a stop signal ends learn() at its next safe point, checkpoint saved
            agent.learn(cfg.agent.total_timesteps, log, run_dir, cfg.checkpoint_every)
    except KeyboardInterrupt as err:  # Ctrl-C, or a second stop signal: save from wherever training is
        agent.save(run_dir)  # the counters go with it: the resumed run continues them
        stop = Interrupted(run_dir, agent.num_timesteps, getattr(err, "signum", None))
        _stopped(cfg, agent, log, writer, run_dir, device, stop)
    except Diverged as err:
        if main:
            writer.close()
            results = {**_identity(cfg, device, agent, log, log.train_seconds()), "stopped": str(err)}
            _write_results(run_dir, results)
        raise
    finally:
        env.close()
    if log.stop_requested and agent.num_timesteps < cfg.agent.total_timesteps:  # learn() saved where it stopped
        stop = Interrupted(run_dir, agent.num_timesteps, log.stop_signal)
        _stopped(cfg, agent, log, writer, run_dir, device, stop)


def _stopped(
    cfg: DictConfig, agent: Any, log: RunLog, writer: Any, run_dir: Path, device: str, err: Interrupted
) -> None:
    """Training stopped with its checkpoint saved: ``results.json`` gets the figures so far and why; raise ``err``."""
    if writer is not None:  # rank 0
        writer.close()
        _write_results(run_dir, {**_identity(cfg, device, agent, log, log.train_seconds()), "stopped": str(err)})
    raise err


def _print_summary(results: dict[str, Any], log: RunLog, train_seconds: float, run_dir: Path) -> None:
    """The final table (every split, by argmax and sampled) and the run's training figures, on the console."""
    table, sampled = results["eval"], results["eval_sampled"]
    rows = {f"{split} {mode}": by[split] for split in table for mode, by in (("argmax", table), ("sampled", sampled))}
    print()
    print(format_table(rows))
    print(
        f"\n{results['env_steps']:,} env steps in {train_seconds:.0f} s ({results['env_steps_per_second']:,.0f} steps/s); "
        f"{log.catastrophes_total} catastrophes in {log.episodes_total} training episodes; "
        f"{log.rollbacks_total} rollbacks."
    )
    print(f"TensorBoard: tensorboard --logdir {run_dir.parent}")
