"""``devlearn train``: train an agent, log to TensorBoard, and print a train/held-out table.

The whole run is visible here: build the batched env, build the agent (or restore it from the
run's checkpoint), let it learn while it reports episodes to the run log, then evaluate on the
train and held-out splits, record a rollout (video, or transcript for text envs) and write
``results.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter

from devlearn.agents import make_agent, observation_wrappers
from devlearn.agents.base import has_checkpoint
from devlearn.config import OBJECTIVES, ConfigError, validate
from devlearn.envs.vector.make import accepts_kwarg, make_vector_env
from devlearn.logging.media import record_episode
from devlearn.logging.runlog import RunLog
from devlearn.train.evaluate import evaluate_policies, format_table


def resolve_device(device: str) -> str:
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda, but no CUDA device is available. Allowed here: auto, cpu.")
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def find_resumable(cfg: DictConfig, run_dir: Path) -> Path:
    """The run to continue: ``run_dir`` itself if it has a checkpoint, else the newest sibling run
    of the same env, agent and seed that has one."""
    if has_checkpoint(run_dir):
        return run_dir
    prefix = f"{cfg.env.name}-{cfg.agent.name}-seed{cfg.seed}-"
    candidates = sorted(p for p in run_dir.parent.glob(prefix + "*") if p != run_dir and has_checkpoint(p))
    if not candidates:
        raise ConfigError(
            f"resume=true, but no checkpoint of {prefix}* was found under {run_dir.parent}. "
            "Start without resume, or point hydra.run.dir at the run to continue."
        )
    return candidates[-1]


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


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train ``cfg.agent`` on ``cfg.env``; write TensorBoard logs, checkpoints and ``results.json`` under ``run_dir``."""
    validate(cfg)
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
    if cfg.resume:
        run_dir = find_resumable(cfg, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    env_kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
    torch.manual_seed(cfg.seed)

    # env -> batched observations -> agent
    wrappers = observation_wrappers(cfg.agent.name, cfg.env.id, **env_kwargs)
    env = make_vector_env(cfg.env.id, cfg.env.num_envs, cfg.env.vectorization, wrappers, **env_kwargs)
    writer = SummaryWriter(str(run_dir / "tb"))
    agent = make_agent(cfg.agent, env, cfg.seed, device, writer, cfg.get("schedule"))
    if cfg.resume:
        agent.load(run_dir)
        print(f"devlearn: resuming {run_dir} at step {agent.num_timesteps:,}")
    else:
        writer.add_text("config", "```yaml\n" + OmegaConf.to_yaml(cfg) + "\n```")

    print(
        f"devlearn: training {cfg.agent.name} on {cfg.env.id} ({cfg.env.num_envs} envs, {device}) -> {run_dir}"
    )
    log = RunLog(writer, cfg.agent.total_timesteps, cfg.log.progress_bar)
    step0, t0 = agent.num_timesteps, time.time()
    log.restart_clock(step0)
    agent.learn(cfg.agent.total_timesteps, log, run_dir, cfg.checkpoint_every)
    train_seconds = time.time() - t0
    env.close()

    # held-out evaluation: the figures a paper would quote, by argmax and by sampling the policy
    splits = eval_splits(cfg)
    eval_kwargs = evaluation_kwargs(env_kwargs)
    table, sampled = {}, {}
    for split in splits:
        kwargs = {**eval_kwargs, "split": split} if split != "train" else eval_kwargs
        by_mode = evaluate_policies(
            agent, cfg.env.id, cfg.log.eval_episodes, seed=10_000 + cfg.seed, wrappers=wrappers, **kwargs
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
        "num_envs": env.num_envs,
        "total_timesteps": cfg.agent.total_timesteps,
        "learning_rate": cfg.agent.learning_rate,
        "schedule": cfg.get("schedule", {}).get("name", "constant"),
        "world_model_coef": cfg.agent.get("world_model_coef", 0.0),
        "shield_tau": cfg.agent.get("shield_tau", 1.0),
    }
    final = {
        f"hparam/{split}/{k}": table[split][k]
        for split in table
        for k in ("return", "success", "catastrophe_rate")
    }
    final["hparam/training_catastrophes"] = log.catastrophes_total
    writer.add_hparams(hparams, final, run_name=".")
    writer.close()

    results = {
        "env": cfg.env.id,
        "agent": cfg.agent.name,
        "seed": cfg.seed,
        "device": device,
        "env_steps": agent.num_timesteps,
        "train_seconds": round(train_seconds, 2),
        "env_steps_per_second": round((agent.num_timesteps - step0) / max(train_seconds, 1e-9), 1),
        "training": {
            "episodes": log.episodes_total,
            "catastrophes": log.catastrophes_total,
            **{f"last{log.window}_{k}": v for k, v in log.headline().items()},
        },
        "eval": table,  # argmax: the policy's most likely action
        "eval_sampled": sampled,  # actions sampled from the policy
    }
    tmp = run_dir / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, run_dir / "results.json")
    print()
    print(
        format_table(
            {
                f"{split} {mode}": rows[split]
                for split in table
                for mode, rows in (("argmax", table), ("sampled", sampled))
            }
        )
    )
    print(
        f"\n{results['env_steps']:,} env steps in {train_seconds:.0f} s ({results['env_steps_per_second']:,.0f} steps/s); "
        f"{log.catastrophes_total} catastrophes in {log.episodes_total} training episodes."
    )
    print(f"TensorBoard: tensorboard --logdir {run_dir.parent}")
    return results
