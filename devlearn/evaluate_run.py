"""``devlearn eval``: reload a finished run and evaluate it on a split."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from devlearn.config import SPLITS, ConfigError
from devlearn.evaluate import format_table, run_episodes, summarize
from devlearn.vector import accepts_kwarg


def evaluate_run(
    run_dir: Path, split: str = "heldout", episodes: int = 100, seed: int = 12345
) -> dict[str, Any]:
    """Evaluate the model saved in ``run_dir`` for ``episodes`` episodes on ``split``; write ``eval-<split>.json``."""
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.is_file() or not (run_dir / "model.zip").is_file():
        raise ConfigError(
            f"run_dir={str(run_dir)!r} is not a finished devlearn run (needs .hydra/config.yaml and model.zip)."
        )
    if split not in SPLITS:
        raise ConfigError(f"split={split!r} is not allowed. Allowed values: {', '.join(SPLITS)}.")
    if episodes < 1:
        raise ConfigError(f"episodes={episodes} must be >= 1.")
    cfg = OmegaConf.load(config_file)
    kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
    if accepts_kwarg(cfg.env.id, "split"):
        kwargs["split"] = split
    elif split != "train":
        raise ConfigError(f"{cfg.env.id} has no held-out split; use split=train.")

    from stable_baselines3 import PPO

    model = PPO.load(run_dir / "model.zip", device="cpu")
    summary = summarize(
        run_episodes(
            lambda obs: model.predict(obs, deterministic=True)[0], cfg.env.id, episodes, seed=seed, **kwargs
        )
    )
    results = {"run_dir": str(run_dir), "env": cfg.env.id, "agent": cfg.agent.name, "split": split, **summary}
    out = run_dir / f"eval-{split}.json"
    out.with_suffix(".tmp").write_text(json.dumps(results, indent=2))
    os.replace(out.with_suffix(".tmp"), out)
    return {**results, "table": format_table({split: summary})}
