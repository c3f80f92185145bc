"""One registry for Gymnasium and PettingZoo environments.

``register`` records an id with the API it speaks; Gymnasium ids are also registered with
Gymnasium itself, so ``gymnasium.make`` and ``gymnasium.make_vec`` work on them after
``import devlearn``. ``make`` builds any devlearn id, and any id Gymnasium already knows.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium

Api = Literal["gymnasium", "pettingzoo"]
APIS: tuple[str, ...] = ("gymnasium", "pettingzoo")


class RegistryError(ValueError):
    """A registry call named an id, API or keyword argument that does not exist."""


@dataclass(frozen=True)
class EnvEntry:
    """What the registry knows of one environment id."""

    id: str
    entry_point: str | Callable[..., Any]
    api: Api
    defaults: dict[str, Any] = field(default_factory=dict)
    vector_entry_point: str | Callable[..., Any] | None = None
    description: str = ""

    def load(self) -> Callable[..., Any]:
        """Import and return the callable behind ``entry_point``."""
        return _load(self.entry_point)


_REGISTRY: dict[str, EnvEntry] = {}


def _load(entry_point: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(entry_point):
        return entry_point
    module, _, attr = entry_point.partition(":")
    if not attr:
        raise RegistryError(f"entry_point {entry_point!r} must look like 'package.module:ClassName'.")
    return getattr(importlib.import_module(module), attr)


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def register(
    id: str,
    entry_point: str | Callable[..., Any],
    api: Api = "gymnasium",
    *,
    vector_entry_point: str | Callable[..., Any] | None = None,
    description: str = "",
    **defaults: Any,
) -> EnvEntry:
    """Register an environment under ``id``.

    Args:
        id: e.g. ``"myorg/Maze-v0"``.
        entry_point: a class or factory, or its import path ``"pkg.module:Class"``.
        api: ``"gymnasium"`` (a ``gymnasium.Env``) or ``"pettingzoo"`` (a ``ParallelEnv``).
        vector_entry_point: Gymnasium only: a batched ``VectorEnv`` class taking ``num_envs``,
            used by ``gymnasium.make_vec(id, vectorization_mode="vector_entry_point")``.
        description: one line for ``devlearn envs``.
        **defaults: keyword arguments passed to the entry point unless overridden in ``make``.
    """
    if api not in APIS:
        raise RegistryError(f"api={api!r} is not supported for {id!r}; allowed values: {', '.join(APIS)}.")
    if id in _REGISTRY:
        raise RegistryError(
            f"Environment {id!r} is already registered (entry point {_REGISTRY[id].entry_point!r}). "
            "Pick a new id or bump its version, e.g. '-v1'."
        )
    if api == "gymnasium" and id in gymnasium.registry:
        raise RegistryError(f"Environment {id!r} is already registered with Gymnasium. Pick a new id.")
    if vector_entry_point is not None and api != "gymnasium":
        raise RegistryError(
            f"vector_entry_point is only for Gymnasium environments, not {id!r} (api={api!r})."
        )
    entry = EnvEntry(id, entry_point, api, dict(defaults), vector_entry_point, description)
    if api == "gymnasium":
        gymnasium.register(
            id=id, entry_point=entry_point, vector_entry_point=vector_entry_point, kwargs=defaults
        )
    _REGISTRY[id] = entry
    return entry


def spec(id: str) -> EnvEntry:
    """Return the entry for ``id``: a devlearn id, or any id Gymnasium knows.

    As in Gymnasium, ``"module:EnvName-v0"`` imports ``module`` first (which registers its ids).
    """
    if ":" in id:
        module, _, id = id.partition(":")
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is None or not module.startswith(err.name):
                raise  # the module exists; something it imports does not: the user's traceback to read
            raise RegistryError(
                f"Cannot import module {module!r} (named before ':' in '{module}:{id}'), which should register {id!r}: "
                f"{err}. Install it, or run from the folder that holds it (see README: Custom environments on the CLI)."
            ) from None
    if id in _REGISTRY:
        return _REGISTRY[id]
    if id in gymnasium.registry:
        gym_spec = gymnasium.registry[id]
        return EnvEntry(
            id, gym_spec.entry_point, "gymnasium", dict(gym_spec.kwargs), gym_spec.vector_entry_point
        )
    known = sorted(_REGISTRY) + sorted(set(gymnasium.registry) - set(_REGISTRY))  # ours are in both: list once
    raise RegistryError(
        f"Unknown environment id {id!r}.{_suggest(id, known)} "
        f"devlearn environments: {', '.join(sorted(_REGISTRY))}. Run `devlearn envs` to list them all."
    )


def _check_kwargs(entry: EnvEntry, kwargs: dict[str, Any]) -> None:
    try:
        params = inspect.signature(entry.load()).parameters
    except (TypeError, ValueError):  # builtins or C callables: nothing to check against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in kwargs:
        if key not in allowed:
            raise RegistryError(
                f"{entry.id!r} has no keyword argument {key!r}.{_suggest(key, allowed)} "
                f"Allowed: {', '.join(allowed)}."
            )


def make(id: str, **kwargs: Any) -> Any:
    """Build the environment registered as ``id`` (Gymnasium ``Env`` or PettingZoo ``ParallelEnv``).

    Gymnasium ids go through ``gymnasium.make`` (so its wrappers and checks apply).
    """
    entry = spec(id)
    _check_kwargs(entry, kwargs)
    if entry.api == "gymnasium":
        return gymnasium.make(id, **kwargs)
    return entry.load()(**{**entry.defaults, **kwargs})


def registered(api: Api | None = None, *, include_gymnasium: bool = False) -> list[EnvEntry]:
    """Registered entries, sorted by id: devlearn's own, plus every Gymnasium id if asked."""
    entries = dict(_REGISTRY)
    if include_gymnasium:
        for gym_id in gymnasium.registry:
            entries.setdefault(gym_id, spec(gym_id))
    return [e for _, e in sorted(entries.items()) if api is None or e.api == api]
