"""What an InterCode-SQL episode answered: its last query's result, for the vote (``selection.pick``).

Read from what the agent saw, never gold: the observation of the episode's last executed action.
No answer (None): an error, an empty result (a query that found nothing rarely answers a question,
and every wrong filter finds it), or a query about the schema rather than the data (``SHOW``,
``DESCRIBE``/``DESC``, ``EXPLAIN``, ``USE``, ``information_schema``): exploration, not an answer.
Two answers are the same when their printed results are the same text, whitespace aside.
"""
from __future__ import annotations

import re

from evoagent.envs.intercode_sql.executor import ERROR_PREFIX

__all__ = ["answer_key"]

_SCHEMA = re.compile(r"^\s*(show|describe|desc|explain|use)\b|\binformation_schema\b", re.IGNORECASE)
_EMPTY = ("", "[]", "()")


def answer_key(action: str, observation: str | None) -> str | None:
    """The normalised result an episode ended on, or None where it is no answer (see the module docstring)."""
    text = (observation or "").strip()
    if text in _EMPTY or text.startswith(ERROR_PREFIX.rstrip()) or _SCHEMA.search(action or ""):
        return None
    return " ".join(text.split())
