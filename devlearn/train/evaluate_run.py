"""``devlearn eval``: reload a finished run and evaluate it on a split."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from devlearn.agents.base import has_checkpoint
from devlearn.config import SPLITS, ConfigError
from devlearn.envs.vector.make import accepts_kwarg
from devlearn.train.evaluate import format_table, run_episodes, summarize


def evaluate_run(
    run_dir: Path, split: str = "heldout", episodes: int = 100, seed: int = 12345
) -> dict[str, Any]:
    """Evaluate the model saved in ``run_dir`` for ``episodes`` episodes on ``split``; write ``eval-<split>.json``."""
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.is_file() or not has_checkpoint(run_dir):
        raise ConfigError(
            f"run_dir={str(run_dir)!r} is not a devlearn run with a checkpoint (needs .hydra/config.yaml and checkpoint.*)."
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

    from devlearn.agents import make_agent, observation_wrappers
    from devlearn.envs.vector.make import make_vector_env
    from devlearn.train.resume import check_checkpoint
    from devlearn.train.run import load_checkpoint

    wrappers = observation_wrappers(cfg.agent.name, cfg.env.id, **kwargs)
    # The agent is rebuilt from the run's own config and restored from its checkpoint.
    spaces_env = make_vector_env(cfg.env.id, 1, "auto", wrappers, **kwargs)
    check_checkpoint(run_dir)  # before building anything: a truncated file is answered at once
    with warnings.catch_warnings():
        # one env stands in for the run's num_envs: SB3's "mini-batch size" advice is about training, not this
        warnings.filterwarnings("ignore", message="You have specified a mini-batch size")
        agent = make_agent(cfg.agent, spaces_env, int(cfg.seed), "cpu", writer=None)
    spaces_env.close()
    load_checkpoint(agent, run_dir)  # a truncated or corrupt checkpoint is answered in one line
    policy = agent.policy()

    summary = summarize(run_episodes(policy, cfg.env.id, episodes, seed=seed, wrappers=wrappers, **kwargs))
    results = {"run_dir": str(run_dir), "env": cfg.env.id, "agent": cfg.agent.name, "split": split, **summary}
    out = run_dir / f"eval-{split}.json"
    out.with_suffix(".tmp").write_text(json.dumps(results, indent=2))
    os.replace(out.with_suffix(".tmp"), out)
    return {**results, "table": format_table({split: summary})}
