"""THE text a learned or remote process reward model sees for a (task, step prefix).

Every model trained by ``evoagent rm train``, served by ``evoagent rm serve`` or
asked over HTTP reads a prefix through :func:`prefix_text`, so training,
serving and scoring in a campaign agree byte for byte. The text holds the
question, the database and its tables when the task has them, and each
action with what the environment answered; never a reward, never gold.

Layout, one field per line (whitespace inside a field collapses to single
spaces, so no action or observation can forge a line of its own)::

    question: How many singers do we have?
    database: concert_singer
    tables: singer(singer_id, name, age); concert(concert_id, year)
    step 1 action: SELECT count(*) FROM singer
    step 1 observation: [(6,)]

Truncation, in this order: the question is clipped to 1,000 characters, the
tables line to 1,500, each action to 1,000 and each observation to 400 (a
clipped field ends with `` …``; only a field's first 8 x its limit characters
are read); if the text is still longer than
``max_chars``, the earliest steps are dropped, one at a time, and a line
``(N earlier steps omitted)`` stands in their place; if even the last step
with the header is too long, the text is cut to its last ``max_chars``
characters. The end of a prefix (the step being scored) is always kept.

A terminal prefix (the episode was submitted right after its last step) is
rendered through :func:`submitted`: one more step, action ``submit``,
observation ``(submitted: the last result is the answer)``; its content id is
that of the actions with the submit, as in the ``rewards`` table.

:func:`render_queries` is how every scorer in a campaign (``prm``, ``http``)
gets these texts for its queries; :func:`observed` is its first half (the
``judge`` reuses it and words the submit in its own prompt).
"""
from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from evoagent.trajectory import Task

if TYPE_CHECKING:
    from evoagent.rewards.base import Query
    from evoagent.rollout import Context

__all__ = ["FIELD_LIMITS", "MISSING", "OMITTED", "SUBMIT", "SUBMITTED", "observed", "prefix_text",
           "render_queries", "submitted"]

FIELD_LIMITS = {"question": 1000, "tables": 1500, "action": 1000, "observation": 400}
OMITTED = "({n} earlier steps omitted)"
MISSING = "(not executed)"  # an action logged without an observation (e.g. an imported, blocked one)
# A prefix submitted right after its last step (a terminal query: the value of that episode) is
# rendered with the submit as one more step, so a model tells "submit now" from "go on from here".
SUBMIT, SUBMITTED = "submit", "(submitted: the last result is the answer)"
_SPACE = re.compile(r"\s+")


def _field(text: str, limit: int) -> str:
    # Only the first 8 x limit characters can show (a field is clipped to ``limit`` once its
    # whitespace is collapsed): the cache never holds a long observation whole.
    return _one_line(text[: 8 * limit], limit)


@functools.lru_cache(maxsize=4096)  # a prefix repeats the steps of the shorter ones
def _one_line(text: str, limit: int) -> str:
    one_line = _SPACE.sub(" ", text).strip()
    return one_line if len(one_line) <= limit else one_line[: limit - 2].rstrip() + " …"


def _tables(task: Task) -> str:
    return "; ".join(f"{t}({', '.join(cols)})" for t, cols in sorted((task.meta.get("schema") or {}).items()))


def prefix_text(task: Task, actions: Sequence[str], observations: Sequence[str | None], *,
                max_chars: int = 4000) -> str:
    """The rendering of ``task`` and the step prefix ``actions`` (with ``observations``, the
    environment's answer to each; missing or None ones are shown as not executed), at most
    ``max_chars`` characters, keeping the end (see the module docstring for the rule)."""
    header = [f"question: {_field(task.question, FIELD_LIMITS['question'])}"]
    if task.meta.get("db"):
        header.append(f"database: {_field(task.meta['db'], 200)}")
    if task.meta.get("schema"):
        header.append(f"tables: {_field(_tables(task), FIELD_LIMITS['tables'])}")
    steps: list[str] = []
    for i, action in enumerate(actions):
        obs = observations[i] if i < len(observations) else None
        shown = MISSING if obs is None else _field(obs, FIELD_LIMITS["observation"])
        steps.append(f"step {i + 1} action: {_field(action, FIELD_LIMITS['action'])}\n"
                     f"step {i + 1} observation: {shown}")
    size = sum(len(line) + 1 for line in header) + sum(len(s) + 1 for s in steps)
    dropped = 0
    while size > max_chars and len(steps) - dropped > 1:
        size -= len(steps[dropped]) + 1
        dropped += 1
    lines = header + ([OMITTED.format(n=dropped)] if dropped else []) + steps[dropped:]
    text = "\n".join(lines)
    return text if len(text) <= max_chars else text[-max_chars:]


def submitted(actions: Sequence[str], observations: Sequence[str | None]) -> tuple[tuple[str, ...], tuple[str | None, ...]]:
    """(actions, observations) of a prefix submitted after its last step, as every model reads it."""
    seen = tuple(observations[: len(actions)]) + (None,) * (len(actions) - len(observations))
    return tuple(actions) + (SUBMIT,), seen + (SUBMITTED,)


def observed(ctx: Context, query: Query, operator: str) -> tuple[tuple[str | None, ...], int]:
    """What the environment answered to each of the query's actions, and the environment steps
    spent to learn it: the query's own observations, else the prefix executed once (an action it
    never reached reads None)."""
    n = len(query.actions)
    if len(query.observations) >= n:
        return tuple(query.observations[:n]), 0
    from evoagent.rollout import execute

    run = execute(ctx, ctx.tasks[query.task_id], query.actions, operator)
    seen = [s.observation for s in run.trajectory.steps][:n]
    return tuple(seen) + (None,) * (n - len(seen)), run.env_steps


def render_queries(ctx: Context, queries: Sequence[Query], max_chars: int,
                   operator: str) -> tuple[list[str], list[int]]:
    """Each query's :func:`prefix_text` (a terminal one with its submit) and the environment steps
    spent to observe it (see :func:`observed`): what every learned or remote model is asked."""
    texts, steps = [], []
    for q in queries:
        observations, spent = observed(ctx, q, operator)
        actions: Sequence[str] = q.actions
        if q.terminal:  # the value of submitting here, not of going on
            actions, observations = submitted(actions, observations)
        texts.append(prefix_text(ctx.tasks[q.task_id], actions, observations, max_chars=max_chars))
        steps.append(spent)
    return texts, steps
