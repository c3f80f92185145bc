"""The ``devlearn`` command: ``train`` (Hydra), ``eval`` and ``envs``.

``devlearn train`` hands its arguments to Hydra, so everything Hydra offers works
(``env=carwash``, ``agent.total_timesteps=5000``, ``-m seed=0,1,2``, ``--cfg job``). Before Hydra
sees them, overrides are checked against the typed schema so a misspelt key is answered with
the allowed keys instead of a traceback.
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from devlearn.config import AGENTS, agent_keys, register_configs, schema_keys
from devlearn.errors import ConfigError
from devlearn.registry import RegistryError
from devlearn.train.launch import debug, fail, resume_command

USAGE = """usage: devlearn <command> [arguments]

commands:
  train [overrides]      train an agent (Hydra): devlearn train env=cliff agent=ppo seed=0
  eval run_dir=PATH [split=heldout] [episodes=100]
                         evaluate a trained run: return, success, catastrophe rate, cost
  envs [--all]           list registered environments (--all adds every Gymnasium id)
"""

GROUPS = ("env", "agent", "hydra")
FREE_FORM = ("env.kwargs.",)  # dict-valued nodes: any sub-key is the user's to choose
DEFAULT_AGENT = "developmental"  # configs/train.yaml's default

EVAL_USAGE = """usage: devlearn eval run_dir=PATH [split=train|heldout] [episodes=N] [seed=S] [--json]

Evaluate a trained run on many episodes: return, success, catastrophe rate, cost, length.
Prints a table (or JSON with --json) and writes eval-<split>.json beside the run's checkpoint.
"""
ENVS_USAGE = """usage: devlearn envs [--all]

List the registered environments with their spaces (--all adds every Gymnasium id).
"""


def _chosen_agents(overrides: list) -> list[str]:
    """The agent(s) an override list selects (several in a multirun sweep ``agent=a,b``)."""
    for override in overrides:
        if override.key_or_group == "agent":
            if override.is_sweep_override():
                return list(override.sweep_string_iterator())
            return [str(override.value())]
    return [DEFAULT_AGENT]


def _unknown(key: str, known: list[str], scope: str) -> ConfigError:
    parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
    siblings: list[str] = []
    while not siblings:  # the keys beside the unknown one, or one level up if it has no such parent
        siblings = sorted(k for k in known if k.startswith(parent) and "." not in k[len(parent) :])
        if not parent:
            break
        parent = parent[:-1].rsplit(".", 1)[0] + "." if "." in parent[:-1] else ""
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"Unknown config key {key!r}{scope}.{hint} Allowed keys here: {', '.join(siblings)}.")


def check_overrides(args: list[str]) -> None:
    """Raise ``ConfigError`` for an override whose key the schema does not have, naming the allowed keys.

    ``agent.*`` keys are checked against the chosen agent's own schema: a key of another agent
    (``agent=ppo agent.shield_tau=0.1``) is an error, not silently ignored.
    """
    known = schema_keys()
    # Flags (-m, --cfg job, ...) and their values are Hydra's to check; overrides are key=value.
    overrides = OverridesParser.create().parse_overrides(
        [a for a in args if "=" in a and not a.startswith("-")]
    )
    agents = _chosen_agents(overrides)
    for name in agents:
        if name not in AGENTS:
            close = difflib.get_close_matches(name, AGENTS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"agent={name!r} is not allowed.{hint} Allowed values: {', '.join(AGENTS)}.")
    for override in overrides:
        key = override.key_or_group
        if override.is_add() or override.is_delete() or key in GROUPS:
            continue
        if key.startswith("hydra.") or key.startswith(FREE_FORM) or key in known:
            continue
        if key.startswith("agent."):
            for name in agents:
                own = agent_keys(name)
                if key not in own:
                    owners = [a for a in AGENTS if key in agent_keys(a)]
                    belongs = f" (it belongs to agent={' / agent='.join(owners)})" if owners else ""
                    raise _unknown(key, list(own), f" for agent={name}{belongs}")
            continue
        raise _unknown(key, [k for k in known if k != "agent"], "")


@hydra.main(config_path="pkg://devlearn.configs", config_name="train", version_base="1.3")
def _train_main(cfg: DictConfig) -> None:
    # Errors are answered here: Hydra would print its own traceback for anything that leaves this function.
    from devlearn.logging.runlog import Diverged
    from devlearn.train.run import Interrupted, train  # torch and SB3 load only when a run starts

    try:
        train(cfg, Path(HydraConfig.get().runtime.output_dir))
    except (ConfigError, RegistryError) as err:
        if debug():
            raise
        fail(str(err))
    except Diverged as err:
        if debug():
            raise
        fail(str(err), code=1)
    except Interrupted as err:
        print(f"\ndevlearn: {err}. Continue with:\n  {resume_command(sys.argv[1:], err.run_dir)}", file=sys.stderr)
        sys.exit(130)


SINGLE_RUN_FLAGS = ("-m", "--multirun", "-c", "--cfg", "--help", "-h", "--hydra-help", "--info", "-i", "-p", "--package")


def _prepare_train(args: list[str]) -> list[str]:
    """Check a single run before Hydra creates its folder; returns the arguments Hydra gets.

    A multirun (``-m``) or an inspection flag (``--cfg``) goes to Hydra as it is: each job of a
    sweep is checked again when it starts (``devlearn.train.run.train``).
    """
    from devlearn.train.launch import normalize_overrides, prepare

    args = normalize_overrides(args)
    if any(a in SINGLE_RUN_FLAGS for a in args):
        return args
    cfg, run_dir = prepare([a for a in args if "=" in a and not a.startswith("-")])
    if str(cfg.resume).lower() != "false":  # Hydra's job runs in the resumed folder, not a new one
        args = [a for a in args if not a.lstrip("+").startswith("hydra.run.dir=")] + [f"hydra.run.dir={run_dir}"]
    return args


def _eval(args: list[str]) -> None:
    from devlearn.train.evaluate_run import evaluate_run

    if any(a in ("-h", "--help") for a in args):
        print(EVAL_USAGE)
        return

    options = dict(a.split("=", 1) for a in args if "=" in a)
    unknown = sorted(set(options) - {"run_dir", "split", "episodes", "seed"}) + [
        a for a in args if "=" not in a and a != "--json"
    ]
    if unknown or "run_dir" not in options:
        raise ConfigError(
            f"devlearn eval takes run_dir=PATH [split=train|heldout] [episodes=N] [seed=S] [--json]; got {' '.join(args)!r}."
        )
    numbers = {}
    for key, default in (("episodes", 100), ("seed", 12345)):
        try:
            numbers[key] = int(options.get(key, default))
        except ValueError:
            raise ConfigError(f"{key}={options[key]!r} must be an integer.") from None
    results = evaluate_run(Path(options["run_dir"]), split=options.get("split", "heldout"), **numbers)
    print(json.dumps(results, indent=2) if "--json" in args else results["table"])


def _envs(args: list[str]) -> None:
    import devlearn
    from devlearn.logging.media import render_modes

    if any(a in ("-h", "--help") for a in args):
        print(ENVS_USAGE)
        return

    for entry in devlearn.registered(include_gymnasium="--all" in args):
        line = f"{entry.id:<36} {entry.api:<10}"
        if entry.id.startswith("devlearn/"):
            env = devlearn.make(entry.id)
            if entry.api == "gymnasium":
                obs, act = env.observation_space, env.action_space
            else:
                agent = env.possible_agents[0]
                obs, act = env.observation_space(agent), env.action_space(agent)
            env.close()
            twin = " batched twin" if entry.vector_entry_point else ""
            line += f" obs={obs} act={act} render={','.join(render_modes(entry.id))}{twin}\n{'':<48}{entry.description}"
        print(line)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``devlearn`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    try:
        if command == "train":
            check_overrides(rest)
            hydra_args = _prepare_train(rest)
            register_configs()
            sys.argv = ["devlearn train", *hydra_args]
            _train_main()
        elif command == "eval":
            _eval(rest)
        elif command == "envs":
            _envs(rest)
        else:
            close = difflib.get_close_matches(command, ["train", "eval", "envs"], n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Unknown command {command!r}.{hint}\n{USAGE}")
    except (ConfigError, RegistryError) as err:
        if debug():
            raise
        fail(str(err))
