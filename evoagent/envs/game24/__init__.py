"""Game of 24 (Tree of Thoughts, Yao et al., NeurIPS 2023): exact rules, oracle, offline policies,
GPT-4's recorded runs and values.

The campaign hooks ``launch`` calls for ``env.kind = "game24"``: ``load_tasks(c)``
(the puzzles of ``tasks.ranks``), ``make(c)`` (an environment factory) and
``make_policy(c, store)``. Modules load on first use.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evoagent.errors import UserError

__all__ = ["gold_key", "load_tasks", "make", "make_policy"]

# Keys of the InterCode-SQL environment that mean nothing here: refused when set, not ignored.
_FOREIGN = ("env.tasks", "env.dump", "tasks.hardness", "tasks.dbs")


def load_tasks(c: Any) -> list[Any]:
    """The campaign's puzzles: ``tasks.ranks = [first, last]`` (inclusive), all 1,362 without."""
    from evoagent.envs.game24 import data

    for key in _FOREIGN:
        if c.get(key):
            raise UserError(f"key {key!r} is for env.kind = \"intercode_sql\"; game24 selects puzzles "
                            "with tasks.ranks, tasks.ids and tasks.sample")
    return data.load_tasks(c.get("tasks.ranks") or None)


def make(c: Any) -> Callable[[], Any]:
    """A factory of environments (one per thread)."""
    from evoagent.envs.game24.env import Game24Env

    return Game24Env


def make_policy(c: Any, store: Any) -> tuple[Any, Any, Any, list[Any]]:
    """(policy, advisor, budget, closers): see ``policies.make_policy``."""
    from evoagent.envs.game24.policies import make_policy as build

    return build(c, store)


def gold_key(task: Any) -> str:
    """A puzzle's equivalence class for leakage guards and ``rm train``'s split: its numbers (sorted).

    Every Game of 24 task has the same goal (24) and no stored gold text, so a
    class per goal would put all puzzles in one; the 1,362 puzzles are distinct multisets.
    """
    return "game24\x1f" + " ".join(sorted(task.question.split(), key=lambda x: (len(x), x)))
