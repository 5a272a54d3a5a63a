"""Registry of environments, so callers name an environment instead of importing it."""
from __future__ import annotations

from typing import Any

from evoagent.envs.base import Env
from evoagent.errors import UserError

ENVIRONMENTS: tuple[str, ...] = ("intercode_sql",)


def make_env(name: str, **kwargs: Any) -> Env:
    """A new environment instance by registry name."""
    if name == "intercode_sql":
        from evoagent.envs.intercode_sql.env import InterCodeSQLEnv

        return InterCodeSQLEnv(**kwargs)
    raise UserError(f"unknown environment {name!r}; known: {', '.join(ENVIRONMENTS)}")


__all__ = ["ENVIRONMENTS", "Env", "make_env"]
