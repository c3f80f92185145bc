"""Validating actions, so a bad one says which space it violates instead of failing deep inside."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gymnasium import spaces


class InvalidActionError(ValueError):
    """An action outside the environment's action space."""


def check_action(env_id: str, space: spaces.Space, action: Any, names: Sequence[str] | None = None) -> None:
    """Raise ``InvalidActionError`` naming the env, the space and (if given) the action names."""
    if space.contains(action):
        return
    meaning = f" ({', '.join(f'{i}={n}' for i, n in enumerate(names))})" if names else ""
    raise InvalidActionError(f"{env_id}: action {action!r} is not in the action space {space}{meaning}.")
