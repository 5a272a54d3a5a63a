"""Environments as registered parts: ``env.kind`` names an ``Environment`` (``evoagent.envs.base``).

Callers ask the part (``environment(c)``, ``policy_part(c)``), never branch on a kind's name.
"""
from __future__ import annotations

from typing import Any

from evoagent.envs.base import Env, Environment
from evoagent.errors import UserError


def environment(c: Any) -> Environment:
    """The environment part a campaign (or any ``get``-able settings) names in ``env.kind``."""
    from evoagent import registry

    name = c.get("env.kind")
    try:
        return registry.get("environment", name)
    except KeyError:
        raise UserError(f"key 'env.kind': unknown environment {name!r} "
                        f"(have {', '.join(registry.names('environment'))})") from None


def policy_names(env: Environment) -> dict[str, str]:
    """``policy.kind`` name -> registry name of each policy that plays ``env`` (its own first)."""
    from evoagent import registry

    declared = set(registry.names("policy"))
    return {name: own if own in declared else name
            for name in env.policies for own in (f"{env.name}.{name}",)}


def policy_part(c: Any) -> Any:
    """The policy part ``policy.kind`` names for the campaign's environment."""
    from evoagent import registry

    env = environment(c)
    kind = c.get("policy.kind")
    found = policy_names(env).get(kind) or _fitting(env, kind)
    if found is None:
        raise UserError(f"key 'policy.kind': {kind!r} does not play env.kind = {env.name!r} "
                        f"(have {', '.join(env.policies)})")
    try:
        return registry.get("policy", found)
    except KeyError:
        raise UserError(f"key 'policy.kind': {env.name!r} lists policy {kind!r}, but no policy part "
                        f"{found!r} is declared") from None


def _fitting(env: Environment, kind: str) -> str | None:
    """A policy part ``env`` does not list that says it plays ``env`` or any environment (empty
    ``envs``): a plug-in's, or an object given to the Python API (``evoagent.make_campaign(policy=...)``)."""
    from evoagent import registry

    declared = registry.names("policy")
    for name in (f"{env.name}.{kind}", kind):
        if name in declared:
            envs = getattr(registry.get("policy", name), "envs", ())
            if not envs or env.name in envs:
                return name
    return None


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
