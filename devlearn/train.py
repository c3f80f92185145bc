"""``devlearn train``: train an agent, log to TensorBoard, and print a train/held-out table.

The whole run is visible here: build the batched env, build the learner, learn while a
callback logs consequences (catastrophe rate, cost, success) next to return, then record a
rollout video (or a transcript, for text envs) and evaluate on the train and held-out splits.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import TensorBoardOutputFormat, configure

from devlearn.agents.sb3_vec import SB3VecEnv, sb3_observation_wrappers
from devlearn.config import ConfigError, validate
from devlearn.evaluate import format_table, run_episodes, summarize
from devlearn.registry import make
from devlearn.tensorboard import record_episode
from devlearn.vector import accepts_kwarg, make_vector_env


def wrap(env: Any, wrappers: list) -> Any:
    for wrapper in wrappers:
        env = wrapper(env)
    return env


def resolve_device(device: str) -> str:
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda, but no CUDA device is available. Allowed here: auto, cpu.")
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


class ConsequenceLogger(BaseCallback):
    """Logs what PPO's own logger leaves out: catastrophe rate, cost and success, plus a console progress line."""

    def __init__(self, total_timesteps: int, progress: bool, window: int = 100):
        super().__init__()
        self.total = total_timesteps
        self.progress = progress
        self.window = window
        self.recent: list[dict[str, Any]] = []
        self.catastrophes_total = 0
        self.episodes_total = 0
        self.t0 = time.time()
        self.next_print = 0.0

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.recent.append(info)
                self.episodes_total += 1
                self.catastrophes_total += int(info["catastrophe"])
        self.recent = self.recent[-self.window :]
        return True

    def headline(self) -> dict[str, float]:
        if not self.recent:
            return {}
        return {
            "return": float(np.mean([i["episode"]["r"] for i in self.recent])),
            "catastrophe_rate": float(np.mean([i["catastrophe"] for i in self.recent])),
            "cost": float(np.mean([i["cost"] for i in self.recent])),
            "success_rate": float(np.mean([i["success"] for i in self.recent])),
        }

    def _on_rollout_end(self) -> None:
        figures = self.headline()
        for key, value in figures.items():
            if key != "return":  # PPO already logs rollout/ep_rew_mean
                self.logger.record(f"rollout/{key}", value)
        self.logger.record("rollout/catastrophes_total", self.catastrophes_total)
        self.logger.record("rollout/episodes_total", self.episodes_total)
        if self.progress and (time.time() >= self.next_print or self.num_timesteps >= self.total):
            self.next_print = time.time() + 2.0
            done = min(self.num_timesteps / self.total, 1.0)
            bar = "#" * int(30 * done) + "." * (30 - int(30 * done))
            fps = self.num_timesteps / max(time.time() - self.t0, 1e-9)
            tail = (
                f" | return {figures['return']:.3f} | catastrophe {figures['catastrophe_rate']:.0%}"
                if figures
                else ""
            )
            end = "\r" if sys.stdout.isatty() else "\n"
            print(
                f"[{bar}] {self.num_timesteps:,}/{self.total:,} steps | {fps:,.0f} steps/s{tail}",
                end=end,
                flush=True,
            )


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train ``cfg.agent`` on ``cfg.env``; write TensorBoard logs, the model and ``results.json`` under ``run_dir``."""
    validate(cfg)
    device = resolve_device(cfg.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    env_kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
    torch.manual_seed(cfg.seed)

    # env -> batched observations -> learner
    probe = make(cfg.env.id, **env_kwargs)
    wrappers = sb3_observation_wrappers(probe.observation_space)
    probe.close()
    vec = make_vector_env(cfg.env.id, cfg.env.num_envs, cfg.env.vectorization, wrappers, **env_kwargs)
    venv = SB3VecEnv(vec)
    venv.seed(cfg.seed)
    agent = cfg.agent
    model = PPO(
        "MlpPolicy",
        venv,
        learning_rate=agent.learning_rate,
        n_steps=agent.n_steps,
        batch_size=agent.batch_size,
        n_epochs=agent.n_epochs,
        gamma=agent.gamma,
        gae_lambda=agent.gae_lambda,
        clip_range=agent.clip_range,
        ent_coef=agent.ent_coef,
        policy_kwargs={"net_arch": list(agent.hidden_sizes)},
        seed=cfg.seed,
        device=device,
        verbose=0,
    )
    model.set_logger(configure(str(run_dir / "tb"), ["tensorboard"]))
    writer = next(f.writer for f in model.logger.output_formats if isinstance(f, TensorBoardOutputFormat))
    writer.add_text("config", "```yaml\n" + OmegaConf.to_yaml(cfg) + "\n```")

    print(f"devlearn: training {agent.name} on {cfg.env.id} ({cfg.env.num_envs} envs, {device}) -> {run_dir}")
    callback = ConsequenceLogger(agent.total_timesteps, cfg.log.progress_bar)
    t0 = time.time()
    model.learn(total_timesteps=agent.total_timesteps, callback=callback)
    train_seconds = time.time() - t0
    model.save(run_dir / "model.zip")

    def policy(obs: Any) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    splits = ["train"]
    if cfg.env.eval_split != "train" and accepts_kwarg(cfg.env.id, "split"):
        splits.append(cfg.env.eval_split)
    table = {}
    for split in splits:
        kwargs = {**env_kwargs, "split": split} if split != "train" else env_kwargs
        episodes = run_episodes(
            policy, cfg.env.id, cfg.log.eval_episodes, seed=10_000 + cfg.seed, wrappers=wrappers, **kwargs
        )
        table[split] = summarize(episodes)
        for key, value in table[split].items():
            writer.add_scalar(f"eval/{split}/{key}", value, model.num_timesteps)

    if cfg.log.video:
        kwargs = {**env_kwargs, "split": splits[-1]} if len(splits) > 1 else env_kwargs
        record_episode(
            writer,
            cfg.env.id,
            lambda **render: wrap(make(cfg.env.id, **kwargs, **render), wrappers),
            policy,
            "rollout",
            model.num_timesteps,
            cfg.log.video_max_steps,
        )
    writer.flush()

    results = {
        "env": cfg.env.id,
        "agent": agent.name,
        "seed": cfg.seed,
        "device": device,
        "env_steps": int(model.num_timesteps),
        "train_seconds": round(train_seconds, 2),
        "env_steps_per_second": round(model.num_timesteps / train_seconds, 1),
        "training": {
            "episodes": callback.episodes_total,
            "catastrophes": callback.catastrophes_total,
            **{f"last{callback.window}_{k}": v for k, v in callback.headline().items()},
        },
        "eval": table,
    }
    tmp = run_dir / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, run_dir / "results.json")
    print()
    print(format_table(table))
    print(
        f"\n{results['env_steps']:,} env steps in {train_seconds:.0f} s ({results['env_steps_per_second']:,.0f} steps/s); "
        f"{callback.catastrophes_total} catastrophes in {callback.episodes_total} training episodes."
    )
    print(f"TensorBoard: tensorboard --logdir {run_dir.parent}")
    return results
