"""Schema-aware SQL edits (issue 20): each mutation, bounds on untrusted text, the ``edit`` operator."""
from __future__ import annotations

import random

import pytest

from evoagent.envs.intercode_sql.data import load_tasks
from evoagent.envs.intercode_sql.edits import MAX_SQL, MUTATIONS, edit, observed_values
from evoagent.envs.intercode_sql.env import InterCodeSQLEnv
from evoagent.envs.intercode_sql.walk import NOVEL_SQL, ReplayPolicy
from evoagent.rollout import Context, execute

SCHEMA = {"singer": ["Singer_ID", "Name", "Country", "Age"], "singer_in_concert": ["concert_ID", "Singer_ID"]}
QUERY = ("SELECT T1.Name, avg(T1.Age) FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.Singer_ID = "
         "T2.Singer_ID WHERE T1.Age > 20 AND T1.Country = 'France' GROUP BY T1.Name ORDER BY T1.Name DESC LIMIT 3")
EXPECT = {
    "add_predicate": "'Netherlands'", "drop_predicate": "WHERE T1.",
    "alter_predicate": "<", "change_value": "'Netherlands'", "swap_aggregate": "(T1.Age)",
    "change_column": "SELECT", "flip_order": "ASC", "change_limit": "LIMIT",
    "add_distinct": "SELECT DISTINCT", "change_join_key": "ON",
}


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_each_mutation_changes_the_query(kind: str) -> None:
    got = edit(QUERY, SCHEMA, ["Netherlands", 52.0], random.Random(0), [kind])
    assert got is not None and got[0] == kind
    assert got[1] != QUERY and EXPECT[kind] in got[1]
    if kind == "drop_predicate":
        assert " AND " not in got[1]
    if kind in ("change_column", "change_join_key"):  # another column of the same table, from the schema
        cols = {c for cs in SCHEMA.values() for c in cs}
        assert any(c in got[1] for c in cols)


def test_values_come_from_observations_and_are_bounded() -> None:
    values = observed_values(["[('a', 1), ('b', 2.5)]", None, "x" * 10_000 + "'late'"])
    assert values == ["a", 1.0, "b", 2.5]
    assert len(observed_values(["".join(f"({i},)" for i in range(1000))])) == 64


def test_untrusted_sql_is_bounded_and_non_select_left_alone() -> None:
    rng = random.Random(0)
    assert edit("SELECT " + "a," * MAX_SQL + "b FROM singer", SCHEMA, [], rng) is None
    assert edit("DROP TABLE singer", SCHEMA, [], rng) is None
    assert edit("not sql at all ((", SCHEMA, [], rng) is None


def test_edit_operator_executes_a_new_answer() -> None:
    from evoagent.envs.intercode_sql.edit_operator import edit as edit_op

    tasks = load_tasks()[:20]
    policy = ReplayPolicy.from_bundled()
    ctx = Context(tasks={t.task_id: t for t in tasks}, policy=policy, make_env=InterCodeSQLEnv)
    try:
        made = 0
        for t in tasks:
            first = next((a for a in policy.pool(t.task_id) if a.upper().startswith("SELECT")), None)
            if first is None:
                continue
            parent = execute(ctx, t, [first], "sample").trajectory
            child = edit_op(parent, random.Random(1), ctx)
            assert child.trajectory.actions[0] == first and child.env_steps == len(child.trajectory.steps)
            if len(child.trajectory.steps) == 2:
                made += 1
                last = child.trajectory.steps[-1]
                assert last.observation is not None  # executed, not a text edit
                assert last.thought.startswith(NOVEL_SQL) == policy.novel(t.task_id, last.action)
        assert made >= 10
    finally:
        ctx.env().close()
