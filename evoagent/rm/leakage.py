"""Gold-equivalence classes of tasks: what a model trained on some tasks has learned the answers of.

A task's class is its environment's ``gold_key`` (for the SQL environment the
database and the normalised gold query, its package's ``gold.py``): Spider
asks many questions twice in other words, so a model trained on one of a pair
knows the other's gold. ``rm train`` splits by class (or by database),
writes the classes it trained on into the model's ``config.json`` (hashed:
``training.gold_classes``), the ``prm`` kind refuses a campaign on any task of
those classes, and ``rm eval`` reports the AUC on tasks that have no twin.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping

from evoagent.trajectory import Task

__all__ = ["class_id", "classes", "twinless"]


def _gold_key(task: Task) -> str:
    """The task's environment part's ``gold_key`` (InterCode: database + sqlglot-normalised gold; Game of
    24: the sorted numbers); a task of no declared environment: its gold text, or its question without one."""
    from evoagent import registry

    try:
        part = registry.get("environment", task.env)
    except KeyError:
        part = None
    key = getattr(part, "gold_key", None)
    if key is not None:
        return key(task)
    return f"{task.env}\x1f{' '.join(task.gold.split()) if task.gold else 'question: ' + task.question}"


def class_id(task: Task) -> str:
    """A short, stable id of the task's gold-equivalence class (stored in model configs)."""
    return hashlib.blake2b(_gold_key(task).encode(), digest_size=8).hexdigest()


def classes(tasks: Iterable[Task]) -> dict[str, str]:
    """task id -> class id."""
    return {t.task_id: class_id(t) for t in tasks}


def twinless(tasks: Mapping[str, Task]) -> set[str]:
    """The ids of tasks whose gold no other task shares."""
    of = classes(tasks.values())
    count = Counter(of.values())
    return {i for i, c in of.items() if count[c] == 1}
