"""From overrides to a checked run: compose the config as ``devlearn train`` would, refuse it early, or run it.

``devlearn train`` composes the config here *before* Hydra's job starts, so a refused run leaves
no folder behind; the Python API ``devlearn.train(...)`` composes the same way and runs in-process.
"""

from __future__ import annotations

import errno
import os
import shlex
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

from devlearn.app.checks import check_run, one_line
from devlearn.app.overrides import check_overrides
from devlearn.app.resume import find_resumable, refuse_overwrite
from devlearn.config import register_configs
from devlearn.errors import ConfigError

FREE_FORM_ADD = "env.kwargs."  # any key of an env's constructor: added, not only overridden (no "+" needed)


def normalize_overrides(args: list[str]) -> list[str]:
    """``env.kwargs.max_steps=50`` -> ``++env.kwargs.max_steps=50``: env kwargs are the env's to name."""
    return [f"++{a}" if a.startswith(FREE_FORM_ADD) and "=" in a else a for a in args]


def compose_config(config_name: str, overrides: list[str], hydra: bool = False) -> DictConfig:
    """``configs/<config_name>.yaml`` composed with ``overrides`` (``hydra``: with Hydra's own node).

    Composition errors (a wrong type, an unknown group option) become a one-line ``ConfigError``.
    """
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="devlearn.configs", version_base="1.3"):
            return compose(config_name, overrides=overrides, return_hydra_config=hydra)
    except Exception as err:  # Hydra's and OmegaConf's errors: the message names the key
        message = one_line(err).split(" Config search path:")[0]
        cause = err.__cause__
        if cause is not None:  # "Error merging override agent.n_steps=many" + why: the wrong type
            message += ": " + str(cause).splitlines()[0]
        raise ConfigError(message) from None
    finally:
        GlobalHydra.instance().clear()


def compose_run(overrides: list[str]) -> tuple[DictConfig, Path]:
    """The composed ``train`` config for ``overrides`` and the run folder Hydra would create for it."""
    cfg = compose_config("train", overrides, hydra=True)
    try:
        run_dir = Path(str(cfg.hydra.run.dir))
    except Exception:  # hydra.run.dir interpolates env.id: a missing id is reported by check_run
        run_dir = Path("runs") / "unnamed"
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, run_dir


def prepare(overrides: list[str]) -> tuple[DictConfig, Path]:
    """Compose, check every value, and pick the run folder (the resumed run's, when resuming).

    Nothing is created on disk: a refused run leaves no folder. ``hydra.run.dir=PATH`` names one run: resumed, it
    is that run or a refusal; new, it must not hold a run already (its checkpoint would be overwritten).
    """
    cfg, run_dir = compose_run(overrides)
    check_run(cfg)
    if str(cfg.resume).lower() != "false":
        explicit = any(o.lstrip("+").startswith("hydra.run.dir=") for o in overrides)
        run_dir = find_resumable(cfg, run_dir.parent, run_dir if explicit else None)
    else:
        refuse_overwrite(run_dir)
    check_writable(run_dir)
    return cfg, run_dir


def check_writable(run_dir: Path) -> None:
    """Refuse a run folder that cannot be created or written, in one line, before Hydra tries (and fails in a traceback).

    Probed by creating (and removing) an empty folder in ``run_dir``'s nearest existing ancestor: that is the
    question the filesystem answers truly, root or not (a read-only mount, /proc, a file where a folder should be).
    """
    existing = run_dir
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"hydra.run.dir={run_dir} cannot be created: {existing} is a file, not a folder. Choose another hydra.run.dir."
        )
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".devlearn-probe-", dir=existing))
    except OSError as err:
        why = "is on a read-only filesystem" if err.errno == errno.EROFS else f"takes no new folder ({err.strerror})"
        raise ConfigError(
            f"hydra.run.dir={run_dir} cannot be created: {existing} {why}. Choose a writable hydra.run.dir."
        ) from None


HELP_GROUPS = ("agent", "env", "memory", "schedule", "hydra/launcher", "hydra/sweeper")


def prepare_grok(overrides: list[str]) -> None:
    """Check ``devlearn grok``'s composed config before Hydra creates its folder (a refusal leaves none)."""
    from devlearn.app.grok import validate_grok  # deferred: the grokking module loads torch

    validate_grok(compose_config("grok", overrides))


def help_text(config_name: str, overrides: list[str], usage: str, groups: tuple[str, ...]) -> str:
    """``devlearn train --help``: the usage, the config groups (only the files of ``configs/``: the schemas that
    back them are not choices) and the composed config, with ``overrides`` applied."""
    cfg = compose_config(config_name, overrides)
    root = resources.files("devlearn.configs")
    lines = [usage.rstrip(), "", "== Configuration groups (group=option) =="]
    for group in groups:
        options = sorted(p.name.removesuffix(".yaml") for p in root.joinpath(group).iterdir() if p.name.endswith(".yaml"))
        lines.append(f"{group}: {', '.join(options)}" + (" (and Hydra's own: --hydra-help)" if group.startswith("hydra/") else ""))
    return "\n".join([*lines, "", "== Config ==", OmegaConf.to_yaml(cfg, resolve=False).rstrip()])


def train(
    env: str | None = None,
    agent: str | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Train an agent from Python, composed exactly as ``devlearn train`` composes it; returns ``results.json``'s dict.

    Args:
        env: a config of ``configs/env/`` (``"cliff"``, ``"gym"``...).
        agent: a config of ``configs/agent/`` (``"ppo"``, ``"developmental"``...).
        overrides: dotted keys, as on the command line: ``{"agent.total_timesteps": 5000}``.
        **kwargs: top-level keys (``seed=1``), or dotted keys written with ``__``
            (``agent__total_timesteps=5000``, ``env__kwargs__slip=0.1``).

    Example::

        import devlearn
        results = devlearn.train(env="cliff", agent="ppo", seed=1, agent__total_timesteps=5000)
        print(results["eval"]["heldout"]["catastrophe_rate"])
    """
    from devlearn.app.run import train as run_train  # deferred: torch and SB3 load only when a run starts

    args = [f"env={env}"] if env is not None else []
    args += [f"agent={agent}"] if agent is not None else []
    items = {**{k.replace("__", "."): v for k, v in kwargs.items()}, **(overrides or {})}
    for key, value in items.items():
        if isinstance(value, (list, dict)):
            value = OmegaConf.to_yaml(OmegaConf.create({"v": value})).split(":", 1)[1].strip()
        elif isinstance(value, bool):
            value = str(value).lower()
        args.append(f"{key}={value}")
    check_overrides(args)
    cfg, run_dir = prepare(normalize_overrides(args))
    run_dir.mkdir(parents=True, exist_ok=True)
    # what `devlearn eval` and `resume` read, as Hydra writes it for a CLI run
    (run_dir / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return run_train(cfg, run_dir)


def resume_command(argv: list[str], run_dir: Path) -> str:
    """The command that continues ``run_dir``: the same overrides, its folder, and ``resume=true``."""
    keep = [a.removeprefix("++") if a.startswith("++env.kwargs.") else a for a in argv]
    keep = [a for a in keep if not a.lstrip("+").startswith(("resume=", "hydra.run.dir="))]
    return shlex.join(["devlearn", "train", *keep, f"hydra.run.dir={run_dir}", "resume=true"])


def debug() -> bool:
    """``DEVLEARN_DEBUG=1``: let errors raise with their traceback instead of one line."""
    return os.environ.get("DEVLEARN_DEBUG", "") not in ("", "0")


def fail(message: str, code: int = 2) -> None:
    print(f"devlearn: error: {message}", file=sys.stderr)
    sys.exit(code)
