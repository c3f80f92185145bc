"""Check command-line overrides against the typed schema before Hydra sees them.

A misspelt key is answered with the keys allowed beside it ("Did you mean ..."), and an ``agent.*`` key
is checked against the chosen agent's own schema, so a key of another agent is refused, not ignored.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import fields, is_dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser

from devlearn.config import AGENT_SCHEMAS, AGENTS, GrokConfig, TrainConfig, agent_keys, schema_keys
from devlearn.errors import ConfigError, check_choice
from devlearn.model.memory import VARIANTS
from devlearn.schedules import SCHEDULES

GROUPS = ("env", "agent", "schedule", "memory", "hydra")
FREE_FORM = ("env.kwargs.",)  # dict-valued nodes: any sub-key is the user's to choose
DEFAULT_AGENT = "developmental"  # configs/train.yaml's default


# Hydra's flags that take the next word as their value (--cfg job, -p agent); --info takes one optionally
VALUE_FLAGS = (
    "-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir",
    "--experimental-rerun", "-i", "--info",
)  # fmt: skip


MODES = {"-m": "-m", "--multirun": "-m", "-c": "--cfg", "--cfg": "--cfg", "-i": "--info", "--info": "--info",
         "-r": "--run", "--run": "--run", "-sc": "--shell-completion", "--shell-completion": "--shell-completion"}  # fmt: skip


def check_words(args: list[str]) -> None:
    """A word that is neither ``key=value``, ``~key`` nor a flag (``seed 1``, ``resume``) is refused in one line;
    so are two of Hydra's modes at once (``-m --cfg job``: Hydra's answer would be a traceback)."""
    modes = sorted({MODES[a] for a in args if a in MODES})
    if len(modes) > 1:
        raise ConfigError(f"{' and '.join(modes)} cannot be combined: use one of them.")
    previous = None
    for arg in args:
        if "=" not in arg and not arg.startswith(("-", "~")) and previous not in VALUE_FLAGS:
            raise ConfigError(
                f"{arg!r} is not an override: write key=value (e.g. {arg}=VALUE), or a flag such as -m or --cfg job."
            )
        previous = arg


def overrides_of(args: list[str]) -> list[str]:
    """The overrides among command-line arguments: ``key=value`` and ``~key`` (flags such as ``-m`` are Hydra's)."""
    return [a for a in args if ("=" in a or a.startswith("~")) and not a.startswith("-")]


def _chosen_agents(overrides: list) -> list[str]:
    """The agent(s) an override list selects (several in a multirun sweep ``agent=a,b``)."""
    for override in overrides:
        if override.key_or_group == "agent":
            if override.is_sweep_override():
                return list(override.sweep_string_iterator())
            return [str(override.value())]
    return [DEFAULT_AGENT]


def _group_choices(overrides: list, group: str) -> list[str]:
    """The option(s) an override list picks for config group ``group`` (several in a sweep)."""
    names: list[str] = []
    for override in overrides:
        if override.key_or_group == group:
            sweep = override.is_sweep_override()
            names += list(override.sweep_string_iterator()) if sweep else [str(override.value())]
    return names


def _check_group_choice(overrides: list, group: str, allowed: tuple[str, ...]) -> None:
    """``group=<name>`` must name a file of ``configs/<group>/`` (answered before Hydra's longer error)."""
    for name in _group_choices(overrides, group):
        check_choice(group, name, allowed)


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


def key_types(node: Any = TrainConfig, prefix: str = "") -> dict[str, Any]:
    """Every dotted key of a schema, mapped to its type (``bool``, ``int``, ``float``, ... resolved from the annotation)."""
    hints = typing.get_type_hints(node)
    types: dict[str, Any] = {}
    for f in fields(node):
        types[f"{prefix}{f.name}"] = hints[f.name]
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            types.update(key_types(type(default), f"{prefix}{f.name}."))
    return types


def _values(override: Any) -> list[Any]:
    """The value(s) an override sets: one, or each of a sweep's (an Optuna ``interval`` is the sweeper's to check)."""
    if not override.is_sweep_override():
        return [override.value()]
    try:
        return list(override.sweep_iterator())
    except Exception:  # interval(...) and tag(...) sweeps have no list of values
        return []


def check_type(override: Any, kind: Any) -> None:
    """``deterministic=2``, ``seed=1.5``, ``agent.learning_rate=fast``: refused in one line, before OmegaConf would
    quietly convert them (it reads 2 as true, and "5" as 5)."""
    name = {bool: "true or false", int: "an integer", float: "a number"}.get(kind)
    if name is None:
        return
    for value in _values(override):
        if value is None or (isinstance(value, str) and "${" in value):  # null and interpolations: OmegaConf's to check
            continue
        fits = isinstance(value, bool) if kind is bool else not isinstance(value, bool) and (
            isinstance(value, int) or (kind is float and isinstance(value, float))
        )
        if not fits:
            whole = kind is int and isinstance(value, float) and value.is_integer()
            hint = f" (write {override.key_or_group}={int(value)})" if whole else ""
            raise ConfigError(f"{override.input_line.lstrip('+~')} must be {name}{hint}.")


def _free(key: str) -> bool:
    """Keys that are not devlearn's to check: Hydra's own, and the env's constructor arguments."""
    return key.startswith(("hydra.", "hydra/")) or key == "hydra" or key.startswith(FREE_FORM)


def check_overrides(args: list[str]) -> None:
    """Raise ``ConfigError`` for an override whose key the schema does not have, naming the allowed keys.

    ``agent.*`` keys are checked against the chosen agent's own schema: a key of another agent
    (``agent=ppo agent.shield_tau=0.1``) is an error, not silently ignored. So is a key added with ``+`` or
    ``++`` (``+agent.total_timestep=5`` is a typo, not a new key); a devlearn key cannot be deleted (``~seed``).
    Booleans must be true or false and integers whole numbers (``check_type``).
    """
    check_words(args)
    known = schema_keys()
    types = key_types()
    # Flags (-m, --cfg job, ...) and their values are Hydra's to check; overrides are key=value.
    overrides = OverridesParser.create().parse_overrides(overrides_of(args))
    for override in overrides:
        if override.is_delete() and not _free(override.key_or_group):
            raise ConfigError(
                f"{override.input_line}: devlearn's keys and groups cannot be deleted, only set "
                f"(e.g. {override.key_or_group}=VALUE)."
            )
    agents = _chosen_agents(overrides)
    _check_group_choice(overrides, "schedule", SCHEDULES)
    _check_group_choice(overrides, "memory", VARIANTS)
    if _group_choices(overrides, "memory"):
        for name in agents:
            if "agent.memory" not in agent_keys(name):
                raise ConfigError(
                    f"memory= sets the developmental agent's memory; agent={name} has none. "
                    "Use agent=developmental (or agent=ablation), or agent=recurrent_ppo for an LSTM baseline."
                )
    for name in agents:
        check_choice("agent", name, AGENTS)
    for override in overrides:
        key = override.key_or_group
        # hydra.* keys and Hydra's own groups (hydra/launcher=joblib, hydra/sweeper=...) are Hydra's to check
        if _free(key) or key in GROUPS:
            continue
        if key.startswith("agent."):
            for name in agents:
                own = agent_keys(name)
                if key not in own:
                    owners = [a for a in AGENTS if key in agent_keys(a)]
                    belongs = f" (it belongs to agent={' / agent='.join(owners)})" if owners else ""
                    raise _unknown(key, list(own), f" for agent={name}{belongs}")
                check_type(override, key_types(AGENT_SCHEMAS[name], "agent.")[key])
            continue
        if key not in known:
            raise _unknown(key, [k for k in known if k != "agent"], "")
        check_type(override, types[key])


def check_grok_overrides(args: list[str]) -> None:
    """``check_overrides`` for ``devlearn grok``: every key must be one of ``GrokConfig``'s."""
    check_words(args)
    known, types = schema_keys(GrokConfig), key_types(GrokConfig)
    overrides = OverridesParser.create().parse_overrides(overrides_of(args))
    _check_group_choice(overrides, "schedule", SCHEDULES)
    for override in overrides:
        key = override.key_or_group
        if key == "schedule" or key.startswith("hydra"):
            continue
        if key not in known:
            raise _unknown(key, list(known), " for devlearn grok")
        check_type(override, types[key])
