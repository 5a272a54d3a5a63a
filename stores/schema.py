"""The store's schema: raw tables, stable views and forward migrations, in one place.

Raw tables live in the ``raw`` schema and are append-only (the journal design:
a fact, once committed, is never rewritten), which is what lets Parquet
snapshots be incremental. Users query the views in ``main``; their columns are
the stable contract documented in the README, while raw tables may change
between schema versions through the migrations below.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb

SCHEMA_VERSION = 7

# Raw tables: name -> column DDL, as the current version has them. Writes insert by column
# name, so the order is for reading. Migrations create tables from these with IF NOT EXISTS
# and add later columns with ADD COLUMN IF NOT EXISTS, so a new file, which runs them all
# over the current DDL, ends in the same shape as an upgraded one.
CORE_TABLES: dict[str, str] = {
    "meta": "key VARCHAR, value VARCHAR, written_at TIMESTAMP DEFAULT current_timestamp",
    "migrations": "name VARCHAR, version INTEGER, applied_at TIMESTAMP DEFAULT current_timestamp",
    # meta: the environment's own fields of the task (Task.meta) as JSON; db and hardness are the
    # columns stores before v6 wrote (InterCode's), kept so that those rows still read.
    "tasks": "task_id VARCHAR, env VARCHAR, db VARCHAR, hardness VARCHAR, question VARCHAR, meta JSON",
    "trajectories": (
        "traj_id VARCHAR, source VARCHAR, task_id VARCHAR, campaign VARCHAR, generation INTEGER, "
        "operator VARCHAR, item_id INTEGER, seed BIGINT, outcome_reward DOUBLE, n_steps INTEGER, "
        "cost_usd DOUBLE, input_tokens BIGINT, output_tokens BIGINT, created_at TIMESTAMP"
    ),
    "steps": (
        "traj_id VARCHAR, idx INTEGER, thought VARCHAR, action VARCHAR, observation VARCHAR, "
        "reward DOUBLE, valid BOOLEAN, process_reward DOUBLE"
    ),
    # The DAG of first productions: a trajectory's edges to its parents, written only when its
    # id is new to the store, and only to parents stored before it (see _lineage_dag below).
    # parent_idx: the parent's place in the child's parent list (NULL in stores from before v3).
    "lineage": ("child_id VARCHAR, parent_id VARCHAR, operator VARCHAR, generation INTEGER, item_id INTEGER, "
                "parent_idx INTEGER"),
    "rewards": "traj_id VARCHAR, reward_source VARCHAR, value DOUBLE, step_idx INTEGER",
    # The campaign journal (see evoagent/loop.py).
    "generation_events": (
        "generation INTEGER, status VARCHAR, event_at TIMESTAMP, n_items INTEGER, stats VARCHAR"
    ),
    "work_plan": (
        "generation INTEGER, item_id INTEGER, operator VARCHAR, task_id VARCHAR, "
        "parents VARCHAR[], seed BIGINT, args VARCHAR"
    ),
    "work_results": (
        "generation INTEGER, item_id INTEGER, status VARCHAR, traj_id VARCHAR, error VARCHAR, "
        "env_steps INTEGER, seconds DOUBLE, finished_at TIMESTAMP"
    ),
    # closing: which close of its generation wrote the row (0 the first; a round cut short by a
    # budget is closed with what finished and closed again when a resume finishes it; the view
    # shows the latest). Null in stores before v7 (= 0).
    "population": "generation INTEGER, task_id VARCHAR, traj_id VARCHAR, rank INTEGER, closing INTEGER",
}

# Added by migration 0002: the LLM call ledger and the Message Batches journal.
LLM_TABLES: dict[str, str] = {
    "llm_calls": (
        "call_key VARCHAR, model VARCHAR, operator VARCHAR, generation INTEGER, item_id INTEGER, "
        "template VARCHAR, template_hash VARCHAR, status VARCHAR, batch_id VARCHAR, "
        "input_tokens BIGINT, output_tokens BIGINT, cache_write_tokens BIGINT, cache_read_tokens BIGINT, "
        "cost_usd DOUBLE, latency_s DOUBLE, attempts INTEGER, errors VARCHAR, request VARCHAR, "
        "response VARCHAR, created_at TIMESTAMP"
    ),
    "llm_batches": "batch_id VARCHAR, status VARCHAR, n_requests INTEGER, event_at TIMESTAMP",
    "llm_batch_items": "batch_id VARCHAR, custom_id VARCHAR, call_key VARCHAR, request VARCHAR, meta VARCHAR",
}
# Added by migration 0004: every production of a trajectory after its first (an operator that
# found an id already stored), with the parents it had; lineage keeps only first productions.
DAG_TABLES: dict[str, str] = {
    "rediscoveries": (
        "traj_id VARCHAR, source VARCHAR, operator VARCHAR, generation INTEGER, item_id INTEGER, "
        "parents VARCHAR[], created_at TIMESTAMP"
    ),
}
# Added by migration 0005: step-level search facts (RRO, IPR, MCTS, best-of-N), written with the
# work item that produced them. A candidate is one next action sampled at a prefix and scored:
# ``prefix_id`` is the content id of the prefix it extends (``trajectory_id(task, actions[:step_idx])``),
# ``node_id`` that of the prefix with it; ``prev_reward`` the score of the prefix it extends (what
# RRO's "rising" compares with); ``traj_id`` the trajectory the item was building. A simulation
# is one MCTS pass: its selected path of node ids from the root and the value backed up along it
# (and LATS's reflection on its failed leaf, empty for none).
SEARCH_TABLES: dict[str, str] = {
    "candidates": (
        "generation INTEGER, item_id INTEGER, strategy VARCHAR, task_id VARCHAR, traj_id VARCHAR, "
        "step_idx INTEGER, prefix_id VARCHAR, node_id VARCHAR, action VARCHAR, observation VARCHAR, "
        "env_reward DOUBLE, reward DOUBLE, prev_reward DOUBLE, reward_source VARCHAR, accepted BOOLEAN, "
        "rank INTEGER, created_at TIMESTAMP"
    ),
    "simulations": (
        "generation INTEGER, item_id INTEGER, task_id VARCHAR, path VARCHAR[], value DOUBLE, "
        "terminal BOOLEAN, reflection VARCHAR, created_at TIMESTAMP"
    ),
}
RAW_TABLES: dict[str, str] = {**CORE_TABLES, **LLM_TABLES, **DAG_TABLES, **SEARCH_TABLES}

# Every production's edges: the first (lineage) and the later ones (rediscoveries), for views
# about what operators did rather than where a trajectory came from.
_PRODUCTION_EDGES = (
    "(SELECT child_id, parent_id, operator, generation, item_id FROM raw.lineage UNION ALL "
    "SELECT traj_id, unnest(parents), operator, generation, item_id FROM raw.rediscoveries)"
)

# Stable views. Each is written against raw.<table>, so the same text serves a
# live DuckDB file and a Parquet snapshot (where raw.<table> is a view over files).
VIEWS: dict[str, str] = {
    "tasks": ("SELECT task_id, env, coalesce(meta->>'$.db', db) AS db, coalesce(meta->>'$.hardness', hardness) "
              "AS hardness, question, meta FROM raw.tasks"),
    "trajectories": (
        "SELECT traj_id, task_id, source, campaign, generation, operator, outcome_reward, "
        "n_steps, cost_usd, input_tokens, output_tokens, seed, item_id, "
        "outcome_reward >= 1.0 AS solved, created_at FROM raw.trajectories"
    ),
    "steps": (
        "SELECT traj_id, idx, thought, action, observation, reward, valid, process_reward "
        "FROM raw.steps"
    ),
    "lineage": "SELECT child_id, parent_id, operator, generation, item_id, parent_idx FROM raw.lineage",
    "rediscoveries": (
        "SELECT traj_id, source, operator, generation, item_id, parents, created_at FROM raw.rediscoveries"
    ),
    "rewards": "SELECT traj_id, reward_source, value, step_idx FROM raw.rewards",
    "work_items": (
        "SELECT p.generation, p.item_id, p.operator, p.task_id, p.parents, p.seed, "
        "coalesce(r.status, 'pending') AS status, r.traj_id, r.error, r.env_steps, r.seconds, "
        "r.finished_at, p.args FROM raw.work_plan p LEFT JOIN raw.work_results r "
        "USING (generation, item_id)"
    ),
    "generations": (
        "WITH ev AS (SELECT generation, "
        "min(event_at) FILTER (WHERE status = 'planned') AS started_at, "
        "max(event_at) FILTER (WHERE status IN ('committed', 'partial')) AS committed_at, "
        "max(n_items) AS n_items, "
        # a round cut short by a budget is closed 'partial' (its finished items only), and again,
        # 'committed', when a resume finishes it: the latest close's statistics
        "coalesce(max(stats) FILTER (WHERE status = 'committed'), "
        "arg_max(stats, event_at) FILTER (WHERE status = 'partial')) AS stats, "
        "count(*) FILTER (WHERE status = 'committed') = 0 AND count(*) FILTER (WHERE status = 'partial') > 0 "
        "AS partial FROM raw.generation_events GROUP BY generation) "
        "SELECT generation, CASE WHEN committed_at IS NULL THEN 'running' ELSE 'committed' END "
        "AS status, started_at, committed_at, n_items, "
        "CAST(json_extract(stats, '$.max') AS DOUBLE) AS best_reward, "
        "CAST(json_extract(stats, '$.avg') AS DOUBLE) AS mean_reward, "
        "CAST(json_extract(stats, '$.min') AS DOUBLE) AS min_reward, "
        "CAST(json_extract(stats, '$.std') AS DOUBLE) AS std_reward, "
        "CAST(json_extract(stats, '$.success_rate') AS DOUBLE) AS success_rate, "
        "CAST(json_extract(stats, '$.nevals') AS INTEGER) AS nevals, "
        "CAST(json_extract(stats, '$.env_steps') AS BIGINT) AS env_steps, "
        "stats, partial FROM ev"
    ),
    # each generation's latest close (see raw.population's closing)
    "population": ("SELECT generation, task_id, traj_id, rank FROM raw.population QUALIFY coalesce(closing, 0) = "
                   "max(coalesce(closing, 0)) OVER (PARTITION BY generation)"),
    "llm_calls": (
        "SELECT call_key, model, operator, generation, item_id, template, template_hash, "
        "input_tokens, output_tokens, cache_write_tokens, cache_read_tokens, cost_usd, latency_s, "
        "attempts, errors, status, batch_id, created_at FROM raw.llm_calls"
    ),
    "llm_costs": (
        "SELECT operator, model, generation, batch_id IS NOT NULL AS batched, count(*) AS calls, "
        "sum(input_tokens)::BIGINT AS input_tokens, sum(output_tokens)::BIGINT AS output_tokens, "
        "sum(cache_write_tokens)::BIGINT AS cache_write_tokens, sum(cache_read_tokens)::BIGINT AS cache_read_tokens, "
        "sum(cost_usd) AS cost_usd FROM raw.llm_calls WHERE status = 'ok' GROUP BY ALL"
    ),
    # Dollars per unit of reward an operator's children gained over their best parent.
    "operator_costs": (
        "WITH gain AS (SELECT l.operator, l.generation, l.item_id, "
        "max(c.outcome_reward) - max(p.outcome_reward) AS gain FROM " + _PRODUCTION_EDGES + " l "
        "JOIN trajectories c ON c.traj_id = l.child_id JOIN trajectories p ON p.traj_id = l.parent_id "
        "GROUP BY ALL), spend AS (SELECT operator, generation, item_id, sum(cost_usd) AS usd "
        "FROM raw.llm_calls WHERE status = 'ok' GROUP BY ALL) "
        "SELECT coalesce(g.operator, s.operator) AS operator, count(g.item_id) AS children, "
        "sum(greatest(g.gain, 0)) AS reward_gained, coalesce(sum(s.usd), 0) AS cost_usd, "
        "coalesce(sum(s.usd), 0) / nullif(sum(greatest(g.gain, 0)), 0) AS usd_per_reward "
        "FROM gain g FULL JOIN spend s USING (operator, generation, item_id) GROUP BY 1"
    ),
    "candidates": (
        "SELECT generation, item_id, strategy, task_id, traj_id, step_idx, prefix_id, node_id, action, "
        "observation, env_reward, reward, prev_reward, reward > prev_reward AS rising, reward_source, "
        "accepted, rank, created_at FROM raw.candidates"
    ),
    # One row per searched step: how many candidates were sampled and how many raised the reward.
    "search_steps": (
        "SELECT generation, item_id, strategy, task_id, traj_id, step_idx, count(*) AS candidates, "
        "count(*) FILTER (WHERE reward > prev_reward) AS rising, "
        "bool_or(accepted AND reward > prev_reward) AS accepted_rose, "
        "max(reward) FILTER (WHERE accepted) AS accepted_reward FROM raw.candidates GROUP BY ALL"
    ),
    "simulations": "SELECT generation, item_id, task_id, path, value, terminal, reflection, created_at FROM raw.simulations",
    # MCTS statistics of every node (a prefix): visits and mean backed-up value, SQL over simulations.
    "search_nodes": (
        "SELECT task_id, node_id, count(*) AS visits, avg(value) AS value FROM "
        "(SELECT task_id, unnest(path) AS node_id, value FROM raw.simulations) GROUP BY ALL"
    ),
}


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create the stable views in ``main``; cheap, done at every open."""
    for name, body in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW main.{name} AS {body}")


@dataclass(frozen=True)
class Migration:
    """One forward step of the schema, applied in one transaction and recorded."""

    name: str
    version: int
    apply: Callable[[duckdb.DuckDBPyConnection], None]


def _initial(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for name, cols in CORE_TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS raw.{name} ({cols})")


def _llm_ledger(con: duckdb.DuckDBPyConnection) -> None:
    for name, cols in LLM_TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS raw.{name} ({cols})")


def _lineage_order(con: duckdb.DuckDBPyConnection) -> None:
    # Recombination's parents are ordered (the first is the one the plan builds on); keep it.
    con.execute("ALTER TABLE raw.lineage ADD COLUMN IF NOT EXISTS parent_idx INTEGER")


# A trajectory's first production: its earliest stored row (the one load_trajectories reads),
# numbered in the order of writing, which is a topological order of the lineage DAG.
FIRST_PRODUCTION = (
    "SELECT traj_id, source, generation, item_id, created_at, "
    "row_number() OVER (ORDER BY created_at, rid) AS ord FROM "
    "(SELECT *, rowid AS rid FROM raw.trajectories QUALIFY row_number() OVER "
    "(PARTITION BY traj_id ORDER BY created_at, item_id NULLS LAST, source, rowid) = 1)"
)


def same_production(a: str, b: str) -> str:
    """SQL: rows aliased ``a`` and ``b`` come from the same production (generation and item)."""
    return (f"{a}.generation IS NOT DISTINCT FROM {b}.generation "
            f"AND {a}.item_id IS NOT DISTINCT FROM {b}.item_id")


def _lineage_dag(con: duckdb.DuckDBPyConnection) -> None:
    """Make lineage a DAG: keep only the edges of each trajectory's first production to parents
    produced before it, and move every later production to ``raw.rediscoveries``.

    Stores before v4 also wrote the edges of a trajectory found again (a revision that changed
    nothing is a self-edge; a later re-find points back at younger parents: cycles).
    """
    for name, cols in DAG_TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS raw.{name} ({cols})")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _first AS {FIRST_PRODUCTION}")
    first_of_l = same_production("f", "l")
    first_of_r = same_production("f", "r")
    before = con.execute("SELECT count(*) FROM raw.lineage").fetchall()[0][0]
    # Later productions: from the journal (every finished work item, with its parents in plan
    # order, even a `sample` that has none), then edge groups no work item explains.
    con.execute(
        "INSERT INTO raw.rediscoveries BY NAME SELECT r.traj_id, coalesce(t.source, f.source) AS source, "
        "p.operator, r.generation, r.item_id, p.parents, r.finished_at AS created_at "
        "FROM raw.work_results r JOIN raw.work_plan p USING (generation, item_id) "
        "JOIN _first f ON f.traj_id = r.traj_id LEFT JOIN raw.trajectories t ON t.traj_id = r.traj_id "
        f"AND {same_production('t', 'r')} "
        f"WHERE r.status = 'done' AND NOT ({first_of_r}) ORDER BY r.generation, r.item_id"
    )
    con.execute(
        "INSERT INTO raw.rediscoveries BY NAME SELECT l.child_id AS traj_id, "
        "any_value(coalesce(t.source, f.source)) AS source, any_value(l.operator) AS operator, "
        "l.generation, l.item_id, list(l.parent_id ORDER BY l.parent_idx NULLS LAST, l.parent_id) AS parents "
        "FROM raw.lineage l JOIN _first f ON f.traj_id = l.child_id "
        f"LEFT JOIN raw.trajectories t ON t.traj_id = l.child_id AND {same_production('t', 'l')} "
        f"WHERE NOT ({first_of_l}) AND NOT EXISTS (SELECT 1 FROM raw.rediscoveries d "
        f"WHERE d.traj_id = l.child_id AND {same_production('d', 'l')}) "
        "GROUP BY l.child_id, l.generation, l.item_id ORDER BY l.generation, l.item_id, l.child_id"
    )
    # Rebuilt rather than deleted from, so that rowids stay dense and in writing order (the
    # snapshot is incremental by rowid; it is republished whole after a migration).
    con.execute(f"CREATE TABLE raw.lineage_dag ({CORE_TABLES['lineage']})")
    con.execute(
        "INSERT INTO raw.lineage_dag BY NAME SELECT l.child_id, l.parent_id, l.operator, l.generation, "
        "l.item_id, l.parent_idx FROM (SELECT *, rowid AS rid FROM raw.lineage) l "
        f"JOIN _first f ON f.traj_id = l.child_id AND {first_of_l} "
        "JOIN _first p ON p.traj_id = l.parent_id WHERE p.ord < f.ord "
        "QUALIFY row_number() OVER (PARTITION BY l.child_id, l.parent_id, l.parent_idx ORDER BY l.rid) = 1 "
        "ORDER BY l.rid"
    )
    kept = con.execute("SELECT count(*) FROM raw.lineage_dag").fetchall()[0][0]
    con.execute("DROP TABLE raw.lineage")
    con.execute("ALTER TABLE raw.lineage_dag RENAME TO lineage")
    con.execute("DROP TABLE _first")
    con.execute(
        "INSERT INTO raw.meta (key, value) VALUES ('migration_0004_lineage_dag', ?)",
        [f'{{"edges_before": {before}, "edges_kept": {kept}}}'],
    )


def _search(con: duckdb.DuckDBPyConnection) -> None:
    for name, cols in SEARCH_TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS raw.{name} ({cols})")
    # A work item's strategy-specific arguments (JSON), e.g. the prefix an MCTS pass expands.
    con.execute("ALTER TABLE raw.work_plan ADD COLUMN IF NOT EXISTS args VARCHAR")


def _task_meta(con: duckdb.DuckDBPyConnection) -> None:
    # Task.meta (the environment's own fields) as JSON; rows written before it get theirs from
    # the two columns they had.
    con.execute("ALTER TABLE raw.tasks ADD COLUMN IF NOT EXISTS meta JSON")
    con.execute("UPDATE raw.tasks SET meta = json_object('db', coalesce(db, ''), 'hardness', coalesce(hardness, '')) "
                "WHERE meta IS NULL")


def _partial_close(con: duckdb.DuckDBPyConnection) -> None:
    # A round cut short by a budget is closed with what finished, and closed again on resume.
    con.execute("ALTER TABLE raw.population ADD COLUMN IF NOT EXISTS closing INTEGER")


MIGRATIONS: list[Migration] = [
    Migration("0001_initial", 1, _initial),
    Migration("0002_llm_ledger", 2, _llm_ledger),
    Migration("0003_lineage_order", 3, _lineage_order),
    Migration("0004_lineage_dag", 4, _lineage_dag),
    Migration("0005_search", 5, _search),
    Migration("0006_task_meta", 6, _task_meta),
    Migration("0007_partial_close", 7, _partial_close),
]


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version recorded in the file (0 for an empty database)."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'raw' AND table_name = 'migrations'"
    ).fetchall()[0][0]
    if not exists:
        return 0
    row = con.execute("SELECT max(version) FROM raw.migrations").fetchall()[0]
    return int(row[0] or 0)


def migrate(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply every migration newer than the file's version; returns their names.

    An existing store takes one transaction per migration. A new one takes all of
    them in one transaction, so a process killed while creating a store leaves an
    empty file (created again on the next open), never one at an older version.
    """
    done = current_version(con)
    todo = [m for m in MIGRATIONS if m.version > done]
    groups = [todo] if done == 0 else [[m] for m in todo]
    for group in groups:
        con.execute("BEGIN TRANSACTION")
        try:
            for m in group:
                m.apply(con)
                con.execute("INSERT INTO raw.migrations (name, version) VALUES (?, ?)", [m.name, m.version])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return [m.name for m in todo]
