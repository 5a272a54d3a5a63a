"""Environments as registered parts: ``env.kind`` names an ``Environment`` (``evoagent.envs.base``).

Callers ask the part (``environment(c)``, ``policy_part(c)``), never branch on a kind's name.
"""
from __future__ import annotations

import random
from typing import Any

from evoagent.envs.base import Env, Environment
from evoagent.errors import UserError
from evoagent.registry import environment, policy_names, policy_part, settings_of
from evoagent.trajectory import Task


class _Settings:
    """An environment's keys with their defaults, some given: settings outside a campaign."""

    def __init__(self, env: Environment, given: dict[str, Any]):
        self.values = {**{p: k.default for p, k in env.keys.items()}, **given}

    def get(self, path: str, default: Any = None) -> Any:
        return self.values.get(path, default)


def _named(name: str) -> Environment:
    from evoagent import registry

    try:
        return registry.get("environment", name)
    except KeyError:
        raise UserError(f"unknown environment {name!r}; known: {', '.join(registry.names('environment'))}") from None


def default_tasks(name: str) -> list[Task]:
    """Environment ``name``'s bundled tasks (``bundled_tasks``, else those of its keys' defaults): the tasks of a
    store that holds no campaign (imported runs name their environment in ``tasks.env``)."""
    env = _named(name)
    if env.bundled_tasks is not None:
        return env.bundled_tasks()
    return env.load_tasks(_Settings(env, {"env.kind": name}))


def make_env(c: Any, **env_keys: Any) -> Env:
    """One environment: of a campaign (or any ``get``-able settings), or by name with its ``env.*``
    keys as keyword arguments (``make_env(name, dialect="duckdb")``; the others default)."""
    if isinstance(c, str):
        env = _named(c)
        c = _Settings(env, {"env.kind": c, **{f"env.{k}": v for k, v in env_keys.items()}})
    return environment(c).make_env(c)()


def select_tasks(c: Any) -> list[Task]:
    """The campaign's tasks: its environment's (with that environment's filters), then ``tasks.ids``
    and a seeded ``tasks.sample``."""
    env = environment(c)
    tasks = env.load_tasks(settings_of(c, env))
    if c.get("tasks.ids"):
        by_id = {t.task_id: t for t in tasks}
        missing = [i for i in c.get("tasks.ids") if i not in by_id]
        if missing:
            raise UserError(f"key 'tasks.ids': unknown task {missing[0]!r}")
        tasks = [by_id[i] for i in dict.fromkeys(c.get("tasks.ids"))]
    n = c.get("tasks.sample")
    if n and n < len(tasks):
        tasks = sorted(random.Random(c.get("seed")).sample(tasks, n), key=lambda t: t.task_id)
    if not tasks:
        raise UserError("key 'tasks': the filters select no task")
    return tasks


__all__ = ["Env", "Environment", "environment", "make_env", "policy_names", "policy_part", "select_tasks",
           "default_tasks"]
