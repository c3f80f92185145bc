"""Check command-line overrides against the typed schema before Hydra sees them.

A misspelt key is answered with the keys allowed beside it ("Did you mean ..."), and an ``agent.*`` key
is checked against the chosen agent's own schema, so a key of another agent is refused, not ignored.
"""

from __future__ import annotations

import difflib

from hydra.core.override_parser.overrides_parser import OverridesParser

from devlearn.config import AGENTS, GrokConfig, agent_keys, schema_keys
from devlearn.errors import ConfigError, check_choice
from devlearn.model.memory import VARIANTS
from devlearn.schedules import SCHEDULES

GROUPS = ("env", "agent", "schedule", "memory", "hydra")
FREE_FORM = ("env.kwargs.",)  # dict-valued nodes: any sub-key is the user's to choose
DEFAULT_AGENT = "developmental"  # configs/train.yaml's default


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
        if override.is_add() or override.is_delete() or key in GROUPS:
            continue
        # hydra.* keys and Hydra's own groups (hydra/launcher=joblib, hydra/sweeper=...) are Hydra's to check
        if key.startswith(("hydra.", "hydra/")) or key.startswith(FREE_FORM) or key in known:
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


def check_grok_overrides(args: list[str]) -> None:
    """``check_overrides`` for ``devlearn grok``: every key must be one of ``GrokConfig``'s."""
    known = schema_keys(GrokConfig)
    overrides = OverridesParser.create().parse_overrides(
        [a for a in args if "=" in a and not a.startswith("-")]
    )
    _check_group_choice(overrides, "schedule", SCHEDULES)
    for override in overrides:
        key = override.key_or_group
        if override.is_add() or override.is_delete() or key == "schedule" or key.startswith("hydra"):
            continue
        if key not in known:
            raise _unknown(key, list(known), " for devlearn grok")
