"""A task's gold SQL, normalised: tasks with the same key are one gold-equivalence class.

InterCode-SQL (Spider) asks many questions twice in other words: 966 of the
1,034 bundled tasks share their normalised gold query with another task of
the same database. A model trained on one of a pair has learned the other's
answer, so leakage guards (the ``prm`` kind's "trained on these tasks"
refusal) and ``evoagent rm train``'s split work on these classes, not on task
ids. The key is the database and the gold query parsed by sqlglot (MySQL
dialect) and printed back with identifiers and keywords in one case, quotes
and whitespace normalised; a query sqlglot cannot parse keeps its lower-cased,
whitespace-collapsed text.
"""
from __future__ import annotations

import functools

from evoagent.trajectory import Task

__all__ = ["gold_key", "normalise_sql"]


@functools.lru_cache(maxsize=8192)
def normalise_sql(sql: str) -> str:
    """One spelling for queries that differ only in case, quoting, whitespace or a trailing semicolon."""
    import sqlglot
    from sqlglot.errors import SqlglotError
    from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

    text = sql.strip().rstrip(";").strip()
    try:
        trees = [t for t in sqlglot.parse(text, read="mysql") if t is not None]
        if len(trees) == 1:
            tree = normalize_identifiers(trees[0], dialect="mysql")
            return tree.sql(dialect="mysql", normalize=True, identify=False).lower()
    except (SqlglotError, RecursionError, ValueError):
        pass
    return " ".join(text.lower().split())


def gold_key(task: Task) -> str:
    """The task's gold-equivalence class: its database and normalised gold query."""
    meta = getattr(task, "meta", None) or {}
    db = meta.get("db") if isinstance(meta, dict) and "db" in meta else getattr(task, "db", "")
    return f"{db}\x1f{normalise_sql(task.gold)}"
