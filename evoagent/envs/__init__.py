"""Registry of environments, so callers name an environment instead of importing it."""
from __future__ import annotations

from typing import Any

from evoagent.envs.base import Env
from evoagent.errors import UserError

ENVIRONMENTS: tuple[str, ...] = ("intercode_sql", "game24")


def make_env(name: str, **kwargs: Any) -> Env:
    """A new environment instance by registry name."""
    if name == "intercode_sql":
        from evoagent.envs.intercode_sql.env import InterCodeSQLEnv

        return InterCodeSQLEnv(**kwargs)
    if name == "game24":
        from evoagent.envs.game24.env import Game24Env

        return Game24Env()
    raise UserError(f"unknown environment {name!r}; known: {', '.join(ENVIRONMENTS)}")


def env_hooks(name: str) -> Any:
    """The campaign hooks of an environment other than InterCode-SQL (whose own live in
    ``evoagent.launch``): a module with ``load_tasks(campaign) -> list[Task]``, ``make(campaign) ->
    Callable[[], Env]`` and ``make_policy(campaign, store) -> (policy, advisor, budget, closers)``."""
    if name == "game24":
        import evoagent.envs.game24 as hooks

        return hooks
    raise UserError(f"unknown environment {name!r}; known: {', '.join(ENVIRONMENTS)}")


__all__ = ["ENVIRONMENTS", "Env", "env_hooks", "make_env"]
