"""Environments as registered parts: ``env.kind`` names an ``Environment`` (``evoagent.envs.base``).

Callers ask the part (``environment(c)``, ``policy_part(c)``), never branch on a kind's name.
"""
from __future__ import annotations

from typing import Any

from evoagent.envs.base import Env, Environment
from evoagent.errors import UserError
from evoagent.registry import environment, policy_names, policy_part


class _Settings:
    """An environment's keys with their defaults, some given: settings outside a campaign."""

    def __init__(self, env: Environment, given: dict[str, Any]):
        self.values = {**{p: k.default for p, k in env.keys.items()}, **given}

    def get(self, path: str, default: Any = None) -> Any:
        return self.values.get(path, default)


def make_env(c: Any, **env_keys: Any) -> Env:
    """One environment: of a campaign (or any ``get``-able settings), or by name with its ``env.*``
    keys as keyword arguments (``make_env(name, dialect="duckdb")``; the others default)."""
    if isinstance(c, str):
        from evoagent import registry

        try:
            env = registry.get("environment", c)
        except KeyError:
            raise UserError(f"unknown environment {c!r}; known: {', '.join(registry.names('environment'))}") from None
        c = _Settings(env, {"env.kind": c, **{f"env.{k}": v for k, v in env_keys.items()}})
    return environment(c).make_env(c)()


__all__ = ["Env", "Environment", "environment", "make_env", "policy_names", "policy_part"]
