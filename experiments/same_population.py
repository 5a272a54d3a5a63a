"""Are two campaign stores the same run? Compares them row for row by SQL (the plug-ins redesign
must reproduce the main job: ``python experiments/same_population.py REFERENCE.duckdb runs/main.duckdb``).

Compared (each as a multiset, both directions of EXCEPT ALL): the population of every generation
(generation, task, trajectory, rank; its latest close), the trajectories (id, task, generation, outcome reward,
steps), their steps, the work plan (every item's operator, task, parents, seed) and every item's
result (status, trajectory, env steps). Not the item, operator and lineage a stored trajectory row
names: when two items of a generation find the same trajectory, the row is the first to commit
(timing; the work results hold both). Timestamps are not compared, nor ``source`` (the policy's name: the old replay walk is now named
``replay_recorder_stops``); the sources are printed. One line per table; exit status 1 if any differs.
"""
from __future__ import annotations

import sys

import duckdb

TABLES = {
    "population": "SELECT generation, task_id, traj_id, rank FROM {db}.raw.population",
    "trajectories": "SELECT traj_id, task_id, generation, outcome_reward, n_steps FROM {db}.raw.trajectories",
    "steps": "SELECT traj_id, idx, action, observation, reward, valid FROM {db}.raw.steps",
    "work_plan": "SELECT generation, item_id, operator, task_id, parents, seed FROM {db}.raw.work_plan",
    "work_results": "SELECT generation, item_id, status, traj_id, env_steps FROM {db}.raw.work_results",
}


def population_sql(con: duckdb.DuckDBPyConnection, db: str) -> str:
    """The ``population`` view's rows (each generation's latest close: a round cut short by a budget
    is closed again on resume) from a store of schema v7 or later, else every row (one close each)."""
    from stores.schema import VIEWS

    closes = con.execute("SELECT count(*) FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'raw' "
                         "AND table_name = 'population' AND column_name = 'closing'", [db]).fetchone()[0]
    return VIEWS["population"].replace("raw.", f"{db}.raw.") if closes else TABLES["population"].format(db=db)


def main(a: str, b: str) -> int:
    con = duckdb.connect()
    con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
    differ = 0
    for name, sql in TABLES.items():
        qa, qb = sql.format(db="a"), sql.format(db="b")
        if name == "population":
            qa, qb = population_sql(con, "a"), population_sql(con, "b")
        n_a = con.execute(f"SELECT count(*) FROM ({qa})").fetchone()[0]
        n_b = con.execute(f"SELECT count(*) FROM ({qb})").fetchone()[0]
        only_a = con.execute(f"SELECT count(*) FROM ({qa} EXCEPT ALL {qb})").fetchone()[0]
        only_b = con.execute(f"SELECT count(*) FROM ({qb} EXCEPT ALL {qa})").fetchone()[0]
        same = only_a == only_b == 0
        differ += not same
        print(f"{name:13s} rows {n_a:>8,} vs {n_b:>8,}  only in first {only_a:>6,}  only in second {only_b:>6,}  "
              f"{'same' if same else 'DIFFERENT'}")
    for db, path in (("a", a), ("b", b)):
        found = con.execute(f"SELECT source, count(*) FROM {db}.raw.trajectories GROUP BY 1 ORDER BY 1").fetchall()
        print(f"sources in {path}: {found}")
    return 1 if differ else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python experiments/same_population.py FIRST.duckdb SECOND.duckdb")
    sys.exit(main(sys.argv[1], sys.argv[2]))
