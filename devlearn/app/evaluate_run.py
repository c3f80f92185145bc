"""``devlearn eval``: reload a finished run and evaluate it on a split."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from omegaconf import OmegaConf

from devlearn.agents import make_agent, observation_wrappers
from devlearn.agents.base import has_checkpoint
from devlearn.agents.developmental.dynamic_eval import DynamicEvalPolicy
from devlearn.app.checkpoints import check_checkpoint, load_checkpoint
from devlearn.app.evaluate import evaluate_policies, format_table, run_episodes, summarize
from devlearn.app.resume import read_run_config
from devlearn.app.run import trained_on
from devlearn.config import SPLITS, ConfigError
from devlearn.envs.vector.make import accepts_kwarg, make_vector_env
from devlearn.errors import write_error
from devlearn.logging.progress import EpisodeProgress


def evaluate_run(
    run_dir: Path,
    split: str = "heldout",
    episodes: int = 100,
    seed: int = 12345,
    dynamic_eval: bool = False,
    dynamic: Any = None,
    progress: TextIO | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate the model saved in ``run_dir`` for ``episodes`` episodes on ``split``; write ``eval-<split>.json``.

    ``dynamic_eval``: the world model keeps learning within each episode (a copy; ``dynamic`` is its
    ``DynamicEvalConfig``, default settings when None), one env at a time; the results add the
    world-model loss per transition without and with it, on the same transitions, and go to
    ``eval-<split>-dynamic.json``. The checkpoint is only read. ``progress``: a stream for the
    progress lines (None: no progress). ``env_kwargs``: env constructor arguments that replace the run's
    (e.g. ``{"num_emails": 100_000}``: an Inbox agent trained on 200 e-mails, evaluated on longer inboxes).
    """
    cfg, kwargs = _stored_run(run_dir, split, episodes, env_kwargs)
    wrappers = observation_wrappers(cfg.agent.name, cfg.env.id, **kwargs)
    # The agent is rebuilt from the run's own config and restored from its checkpoint.
    spaces_env = make_vector_env(cfg.env.id, 1, "auto", wrappers, **kwargs)
    check_checkpoint(run_dir)  # before building anything: a truncated file is answered at once
    with warnings.catch_warnings():
        # one env stands in for the run's num_envs: SB3's "mini-batch size" advice is about training, not this
        warnings.filterwarnings("ignore", message="You have specified a mini-batch size")
        agent = make_agent(cfg.agent, spaces_env, int(cfg.seed), "cpu", writer=None)
    expected = trained_on(cfg, spaces_env)
    spaces_env.close()
    load_checkpoint(agent, run_dir, expected)  # a corrupt checkpoint, or one of another env: one line
    if dynamic_eval:
        if not hasattr(agent, "wm") or agent.wm is None:
            raise ConfigError(
                f"dynamic_eval=true needs the developmental agent's world model; this run's agent is {cfg.agent.name}."
            )
        policy = DynamicEvalPolicy(agent, dynamic)  # one episode at a time, one copy of the weights
        bar = None if progress is None else EpisodeProgress(f"eval {split} dynamic", episodes, progress)
        return _dynamic(policy, run_dir, cfg, split, episodes, seed, wrappers, kwargs, bar)

    label = None if progress is None else f"eval {split}"
    by_mode = evaluate_policies(
        agent, cfg.env.id, episodes, seed=seed, wrappers=wrappers, label=label, stream=progress, **kwargs
    )
    summary, sampled = by_mode["argmax"], by_mode["sampled"]
    # The argmax figures stay at the top level (as before); the sampled policy's sit under "sampled".
    results = {
        "run_dir": str(run_dir),
        "env": cfg.env.id,
        "agent": cfg.agent.name,
        "split": split,
        **summary,
        "sampled": sampled,
    }
    table = format_table({f"{split} argmax": summary, f"{split} sampled": sampled})
    return {**results, "table": table, **_write(run_dir / f"eval-{split}.json", results)}


def _write(out: Path, results: dict[str, Any]) -> dict[str, str]:
    """Write ``results`` to ``out`` atomically; ``{"not_written": why}`` if the folder takes no file (read-only,
    full): the evaluation's figures are still returned and printed, only their file is missing."""
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(json.dumps(results, indent=2))
        os.replace(tmp, out)
    except OSError as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # nothing to remove from a read-only folder
            pass
        return {"not_written": str(write_error(err, out, kept="the table above has every figure"))}
    return {}


def _stored_run(
    run_dir: Path, split: str, episodes: int, env_kwargs: dict[str, Any] | None
) -> tuple[Any, dict[str, Any]]:
    """The run's config (upgraded to today's schema) and the env kwargs to evaluate ``split`` with."""
    config_file = run_dir / ".hydra" / "config.yaml"
    if not run_dir.is_dir():
        raise ConfigError(f"run_dir={str(run_dir)!r} does not exist (a run folder is what devlearn train writes under runs/).")
    if not config_file.is_file() or not has_checkpoint(run_dir):
        raise ConfigError(
            f"run_dir={str(run_dir)!r} is not a devlearn run with a checkpoint (needs .hydra/config.yaml and checkpoint.*)."
        )
    if split not in SPLITS:
        raise ConfigError(f"split={split!r} is not allowed. Allowed values: {', '.join(SPLITS)}.")
    if episodes < 1:
        raise ConfigError(f"episodes={episodes} must be >= 1.")
    cfg = read_run_config(run_dir)  # an old run's keys in today's schema, in one step; a corrupt file in one line
    kwargs = {**OmegaConf.to_container(cfg.env.kwargs, resolve=True), **(env_kwargs or {})}
    if kwargs.get("curriculum"):
        kwargs["curriculum"] = 0  # a training curriculum eases the task; evaluation runs the full one
    if accepts_kwarg(cfg.env.id, "split"):
        kwargs["split"] = split
    elif split != "train":
        raise ConfigError(f"{cfg.env.id} has no held-out split; use split=train.")
    return cfg, kwargs


def _dynamic(
    policy: Any,
    run_dir: Path,
    cfg: Any,
    split: str,
    episodes: int,
    seed: int,
    wrappers: Any,
    kwargs: dict,
    progress: EpisodeProgress | None = None,
) -> dict[str, Any]:
    """``evaluate_run`` with dynamic evaluation: the policy's table and the world-model loss without and with it."""
    episodes_run = run_episodes(
        policy, cfg.env.id, episodes, num_envs=1, seed=seed, wrappers=wrappers, progress=progress, **kwargs
    )
    summary = summarize(episodes_run)
    results = {"run_dir": str(run_dir), "env": cfg.env.id, "agent": cfg.agent.name, "split": split, **summary}
    results["dynamic_eval"] = {**asdict(policy.cfg), **policy.summary()}
    table = format_table({split: summary}) + "\n\n" + format_world_model_table(split, policy.summary())
    return {**results, "table": table, **_write(run_dir / f"eval-{split}-dynamic.json", results)}


def format_world_model_table(split: str, losses: dict[str, float]) -> str:
    """World-model loss per transition over the evaluated episodes, without and with dynamic evaluation."""
    static, dynamic = losses["wm_loss_static"], losses["wm_loss_dynamic"]
    change = (dynamic - static) / static if static else float("nan")
    header = f"{'split':<10}{'world-model loss':>22}{'with dynamic eval':>22}{'change':>10}{'transitions':>13}"
    row = f"{split:<10}{static:>22.4f}{dynamic:>22.4f}{change:>10.1%}{losses['wm_transitions']:>13d}"
    return "\n".join([header, "-" * len(header), row])
