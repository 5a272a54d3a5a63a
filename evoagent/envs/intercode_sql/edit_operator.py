"""``edit`` — a schema-aware SQL mutation of a parent's query, executed as the new answer.

The replay policy only recombines recorded actions, so evolution over it can
never beat the recordings' bound. ``edit`` takes one executed query of the
parent, changes it with one of ``evoagent.envs.intercode_sql.edits.MUTATIONS``
(predicates, compared values seen in the parent's observations, aggregates,
columns of the same table from the task's schema, ORDER direction, LIMIT,
DISTINCT, join keys; never the gold answer) and submits it after the parent's
actions. The child is re-executed in the environment like every child. When no
mutation applies the parent is re-executed unchanged (as ``refine`` does).

A child whose answer no recording of the task contains gets the thought
``NOVEL_SQL`` (``walk.py``) on its last step, so a store can
count the tasks solved by SQL no recorded agent wrote. Step searches (RRO, IPR,
MCTS) draw the same edits through the replay policy's ``policy.edit_p``.
This environment's own operator (other environments' actions do not parse as SQL).
"""
from __future__ import annotations

import dataclasses
import random

from evoagent.policies.base import is_submit
from evoagent.envs.intercode_sql.walk import NOVEL_SQL
from evoagent.registry import Part, rate
from evoagent.rollout import Context, Rollout, execute
from evoagent.trajectory import Trajectory

__all__ = ["edit"]

TRIES = 3  # executed queries tried (in a random order) before giving up: not every query parses


def edit(parent: Trajectory, rng: random.Random, ctx: Context) -> Rollout:
    """The parent's actions, then an edit of one of its executed queries as the answer."""
    from evoagent.envs.intercode_sql.edits import edit as sql_edit  # sqlglot: loaded when an edit runs
    from evoagent.envs.intercode_sql.edits import observed_values

    task = ctx.tasks[parent.task_id]
    executed = [s for s in parent.steps if s.observation is not None and not is_submit(s.action)]
    values = observed_values([s.observation for s in parent.steps])
    taken = set(parent.actions)
    got = None
    for base in rng.sample(executed, min(TRIES, len(executed))):
        got = sql_edit(base.action, task.meta.get("schema") or {}, values, rng)
        if got is not None and got[1] not in taken:
            break
        got = None
    if got is None:
        return execute(ctx, task, parent.actions, "edit")
    kind, sql = got
    out = execute(ctx, task, [*parent.actions[: max(ctx.max_steps - 1, 0)], sql], "edit")
    traj = out.trajectory
    if traj.steps and traj.steps[-1].action == sql:
        novel = getattr(ctx.policy, "novel", None)
        label = NOVEL_SQL if novel is not None and novel(task.task_id, sql) else "edit"
        last = dataclasses.replace(traj.steps[-1], thought=f"{label}: {kind} of the parent's query")
        traj = dataclasses.replace(traj, steps=(*traj.steps[:-1], last))
    return Rollout(traj, out.env_steps)


PART = Part("operator", "edit", edit, {"rate": rate(0.0)}, arity=1,
            doc="a schema-aware SQL edit of the parent's query as the new answer (InterCode-SQL)")
