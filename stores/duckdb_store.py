"""The writable store: one DuckDB file (or ``:memory:``), one owning process."""
from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from evoagent.trajectory import Task
from stores.base import Candidate, ItemResult, Store, StoreError, WorkItem
from stores.append import BatchKeys, plan_append
from stores.batch import TrajectoryBatch
from stores.facts import StoredFacts
from stores.schema import (
    LLM_TABLES, SCHEMA_VERSION, create_views, current_version, migrate, same_production,
)
from stores.snapshot import SnapshotWriter, snapshot_dir

_PLAN_SCHEMA = pa.schema([
    ("generation", pa.int32()), ("item_id", pa.int32()), ("operator", pa.string()),
    ("task_id", pa.string()), ("parents", pa.list_(pa.string())), ("seed", pa.int64()),
    ("args", pa.string()),
])
_RESULT_SCHEMA = pa.schema([
    ("generation", pa.int32()), ("item_id", pa.int32()), ("status", pa.string()),
    ("traj_id", pa.string()), ("error", pa.string()), ("env_steps", pa.int32()),
    ("seconds", pa.float64()),
])


# DuckDB's buffer pool keeps every block of the file it has read until memory_limit (default: 80%
# of RAM), so a campaign's resident memory grew with its store (experiments/bench_engine.py --rss).
# Past this much it evicts (the blocks are on disk) and spills query intermediates to PATH.tmp.
WRITER_MEMORY_LIMIT = "512MB"
# DuckDB checkpoints the WAL into the file on the commit that takes it past this size (default
# 16 MB). Each checkpoint's cost grew with the store (experiments/bench_peers.py, 2,000 tasks x 6
# children: COMMIT was 5.1 s of a generation's 9.0 s of SQL at 96k trajectories, 0.4 s with this),
# so a campaign checkpoints every ~256 MB of new rows instead; close() and the next open checkpoint
# the rest, and a killed writer's WAL is replayed on the next open, as before.
WRITER_CHECKPOINT_THRESHOLD = "256MB"
# Until a checkpoint, the rows a writer appended live in DuckDB's memory (IN_MEMORY_TABLE), and
# after one their blocks stay in its pool: a campaign's RSS grew ~3 MB a generation at 300 tasks
# (experiments/duckdb_writer_memory.py reproduces it with DuckDB alone). So each committed
# generation is checkpointed and the pool emptied (the limit lowered to this for a moment, which
# evicts every unpinned block: they are on disk), under the store's lock and without closing
# the connection, which would let another process take the file.
RELEASE_MEMORY_LIMIT = "1MB"


def _connect(path: str, memory_limit: str = WRITER_MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    if not re.fullmatch(r"[1-9][0-9]{0,5}[KMGT]i?B", memory_limit):
        raise ValueError(f"memory_limit must look like '512MB', got {memory_limit!r}")
    try:
        con = duckdb.connect(path)
        if path != ":memory:":  # an in-memory store has nowhere to evict to
            con.execute(f"SET memory_limit = '{memory_limit}'")
            con.execute(f"SET checkpoint_threshold = '{WRITER_CHECKPOINT_THRESHOLD}'")
        return con
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreError(
                f"store {path} is open for writing in another process; "
                f"read it with: evoagent sql {path} \"SELECT ...\""
            ) from None
        raise StoreError(f"cannot open store {path}: {str(exc).splitlines()[0]}") from None


class DuckDBStore(Store):
    """A DuckDB-file store. Thread-safe: one lock serialises all statements.

    Opening creates the file and applies migrations when it is new; an older
    schema is refused with the command that upgrades it (``evoagent migrate``).
    """

    def __init__(self, path: str | Path, *, upgrade: bool = False, snapshot_every_s: float = 5.0,
                 memory_limit: str = WRITER_MEMORY_LIMIT):
        self.path = str(path)
        self.read_only = False
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._con = _connect(self.path, memory_limit)
        self._memory_limit = memory_limit
        self._lock = threading.RLock()
        self._column_order: dict[str, list[str]] = {}
        self._facts: StoredFacts | None = None
        # (traj_id, source) and (traj_id, reward_source) pairs the open transaction wrote
        self._pending: list[tuple[list[tuple[str, str | None]], list[tuple[str, str | None]]]] = []
        # Arrow rows the open transaction appended; None: rows it inserted into that table by SQL
        self._pending_rows: list[tuple[str, pa.Table | None]] = []
        self._in_transaction = False
        version = current_version(self._con)
        if version > SCHEMA_VERSION:
            self._con.close()
            raise StoreError(
                f"store {self.path} has schema v{version}, newer than this evoagent "
                f"(v{SCHEMA_VERSION}); upgrade evoagent"
            )
        elif version == 0 or upgrade:
            migrate(self._con)
        elif version < SCHEMA_VERSION:
            self._con.close()
            raise StoreError(
                f"store {self.path} has schema v{version}, this evoagent needs v{SCHEMA_VERSION}; "
                f"upgrade it with: evoagent migrate {self.path}"
            )
        create_views(self._con)
        self._snap = (
            None if self.path == ":memory:"
            else SnapshotWriter(snapshot_dir(self.path), every_s=snapshot_every_s)
        )
        self.snapshot()  # a new (or damaged) snapshot is published at once: readers always find one

    # -- reads --------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        with self._lock:
            try:
                return self._con.sql(sql, params=params or None).to_arrow_table()
            except duckdb.Error as exc:
                raise StoreError(f"query failed: {str(exc).splitlines()[0]}") from None

    # -- writes -------------------------------------------------------------
    def _transaction(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            self._con.execute("BEGIN TRANSACTION")
            self._pending.clear()
            self._pending_rows.clear()
            self._in_transaction = True
            try:
                out = fn(*args)
                self._con.execute("COMMIT")
            except BaseException:
                self._pending.clear()
                self._pending_rows.clear()
                self._con.execute("ROLLBACK")
                raise
            finally:
                self._in_transaction = False
            for trajs, rewards in self._pending:  # what the commit stored, now known
                self._stored().add(trajs, rewards)
            if self._snap is not None:
                for name, table in self._pending_rows:
                    if table is None:
                        self._snap.skip(name)
                    else:
                        self._snap.buffer(name, table)
            self._pending.clear()
            self._pending_rows.clear()
            return out

    def _stored(self) -> StoredFacts:
        """The archive's facts (:mod:`stores.facts`), read from the file on first use."""
        if self._facts is None:
            with self._lock:
                self._facts = StoredFacts.load(self._con)
        return self._facts

    @contextmanager
    def _registered(self, **tables: pa.Table) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection with Arrow tables registered as views under the given names."""
        for name, table in tables.items():
            self._con.register(name, table)
        try:
            yield self._con
        finally:
            for name in tables:
                self._con.unregister(name)

    def put_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._con.execute("INSERT INTO raw.meta (key, value) VALUES (?, ?)", [key, value])

    def add_tasks(self, tasks: Sequence[Task]) -> int:
        table = pa.table({
            "task_id": [t.task_id for t in tasks], "env": [t.env for t in tasks],
            "question": [t.question for t in tasks],
            "meta": [json.dumps(dict(t.meta), sort_keys=True) for t in tasks],
        })

        def run() -> int:
            with self._registered(_new_tasks=table) as con:
                return con.execute(
                    "INSERT INTO raw.tasks BY NAME SELECT DISTINCT ON (n.task_id) n.* FROM _new_tasks n "
                    "ANTI JOIN raw.tasks t USING (task_id)"
                ).fetchall()[0][0]
        return self._transaction(run)

    def _append(self, batch: TrajectoryBatch) -> int:
        """Insert a batch inside the caller's transaction; dedupe on (traj_id, source).

        Lineage is the DAG of first productions: edges are written only for a trajectory id new
        to the store (its first row in the batch by item, source, position), never to itself, and
        only to parents stored before it or earlier in the batch. Every other production of a
        stored id goes to ``rediscoveries`` with its parents (once per traj, source, generation,
        item), so re-finding a trajectory can never add edges to it: no self-edges, no cycles.

        What is stored comes from :class:`stores.facts.StoredFacts` (kept in memory), never from a
        join with the archive; only the productions of stored ids are compared with stored rows,
        and those rows are found through the generations' zone maps. A reward row is written once
        per (traj_id, reward_source, step) of the batch, and not when its (traj_id, reward_source)
        has a reward row already (also one written before the trajectory, e.g. a prefix's score).
        """
        facts = self._stored()
        keys = BatchKeys.of(batch)
        self._pending.append((list(zip(keys.ids, keys.sources)), list(zip(keys.reward_ids, keys.reward_sources))))
        return self._append_arrow(batch, facts, keys)

    def _append_sql(self, batch: TrajectoryBatch, facts: StoredFacts, keys: BatchKeys) -> int:
        """The dedupe rules in SQL, productions ordered by (item, source, position): the reference
        that :meth:`_append_arrow` is tested against (tests/test_store_paths.py); not on a hot path."""
        traj = batch.trajectories
        known = facts.stored([*keys.ids, *batch.lineage.column("parent_id").to_pylist(), *keys.reward_ids])
        traj = traj.append_column("_pos", pa.array(range(traj.num_rows), pa.int64()))
        stored_src = [(i, s) for i in known for s in facts.sources(i)]
        stored_rw = list(facts.rewarded(zip(keys.reward_ids, keys.reward_sources)))
        with self._registered(
            _b_traj=traj, _b_steps=batch.steps, _b_lineage=batch.lineage, _b_rewards=batch.rewards,
            _known=pa.table({"traj_id": pa.array(known, pa.string())}),
            _stored_src=pa.table({"traj_id": pa.array([p[0] for p in stored_src], pa.string()),
                                  "source": pa.array([p[1] for p in stored_src], pa.string())}),
            _stored_rw=pa.table({"traj_id": pa.array([p[0] for p in stored_rw], pa.string()),
                                 "reward_source": pa.array([p[1] for p in stored_rw], pa.string())}),
        ) as con:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _first AS SELECT b.traj_id, b.source, b.generation, b.item_id, "
                "b._pos FROM _b_traj b ANTI JOIN _known k USING (traj_id) QUALIFY row_number() "
                "OVER (PARTITION BY b.traj_id ORDER BY b.item_id NULLS LAST, b.source, b._pos) = 1"
            )
            self._append_rediscoveries(con, self._same_generations(traj))
            n = con.execute(
                "INSERT INTO raw.trajectories BY NAME SELECT b.* EXCLUDE (_pos) FROM "
                "(SELECT * FROM _b_traj QUALIFY row_number() OVER "
                "(PARTITION BY traj_id, source ORDER BY item_id NULLS LAST, _pos) = 1) b "
                "ANTI JOIN _stored_src t USING (traj_id, source) ORDER BY b._pos"
            ).fetchall()[0][0]
            con.execute(
                "INSERT INTO raw.steps BY NAME SELECT s.* FROM _b_steps s SEMI JOIN _first f USING (traj_id) "
                "QUALIFY row_number() OVER (PARTITION BY s.traj_id, s.idx) = 1"
            )
            self._append_lineage(con, batch)
            if batch.rewards.num_rows:
                con.execute(
                    "INSERT INTO raw.rewards BY NAME SELECT r.* FROM (SELECT * FROM _b_rewards QUALIFY "
                    "row_number() OVER (PARTITION BY traj_id, reward_source, step_idx) = 1) r "
                    "ANTI JOIN _stored_rw o USING (traj_id, reward_source)"
                )
            self._unbuffered("trajectories", "rediscoveries", "steps", "lineage", "rewards")
            return int(n)

    def _append_arrow(self, batch: TrajectoryBatch, facts: StoredFacts, keys: BatchKeys) -> int:
        """A batch filtered in Arrow (:func:`stores.append.plan_append`), then plain appends."""
        plan = plan_append(batch, facts, keys)
        red = plan.rediscoveries
        known_ids = [i for i in dict.fromkeys(red.column("traj_id").to_pylist()) if i in facts]
        if known_ids:  # drop productions of stored ids already stored (the batch written again), before appending
            gens = self._same_generations(batch.trajectories)
            done = set(self._con.execute(
                f"SELECT traj_id, source, generation, item_id FROM raw.trajectories WHERE {gens} AND traj_id IN "
                f"(SELECT unnest($ids)) UNION ALL SELECT traj_id, source, generation, item_id FROM raw.rediscoveries "
                f"WHERE {gens} AND traj_id IN (SELECT unnest($ids))", {"ids": known_ids}).fetchall())
            if done:
                red = red.filter(pa.array([k not in done for k in zip(*(red.column(c).to_pylist() for c in
                                           ("traj_id", "source", "generation", "item_id")))], pa.bool_()))
        for name, table in (("trajectories", plan.trajectories), ("rediscoveries", red), ("steps", plan.steps),
                            ("lineage", plan.lineage), ("rewards", plan.rewards)):
            if table.num_rows:
                self._insert_arrow(name, table)
        return plan.trajectories.num_rows

    @staticmethod
    def _same_generations(traj: pa.Table) -> str:
        """SQL filter on ``generation`` that keeps every stored row a batch row could be the same
        production as (same generation): constant bounds, so DuckDB skips the archive's older
        row groups by their zone maps instead of scanning them."""
        col = traj.column("generation")
        lo, hi = pc.min(col).as_py(), pc.max(col).as_py()
        parts = [f"generation BETWEEN {int(lo)} AND {int(hi)}"] if lo is not None else []
        if col.null_count:
            parts.append("generation IS NULL")
        return "(" + " OR ".join(parts) + ")"

    @staticmethod
    def _append_rediscoveries(con: duckdb.DuckDBPyConnection, gens: str) -> None:
        """Productions in the batch that are not a trajectory's first, with their parents in order;
        each (traj_id, source, generation, item) once, so writing a batch again adds nothing.
        Stored rows are looked at only for stored ids (``_known``) of the batch's generations."""
        def same(a: str) -> str:
            return (f"{a}.traj_id = b.traj_id AND {a}.source IS NOT DISTINCT FROM b.source "
                    f"AND {same_production(a, 'b')}")

        def stored(table: str) -> str:
            return (f"(SELECT traj_id, source, generation, item_id FROM raw.{table} WHERE {gens} "
                    "AND traj_id IN (SELECT traj_id FROM _known))")

        con.execute(
            "INSERT INTO raw.rediscoveries BY NAME SELECT b.traj_id, b.source, b.operator, b.generation, "
            "b.item_id, coalesce(e.parents, []::VARCHAR[]) AS parents, b.created_at "
            "FROM (SELECT * FROM _b_traj QUALIFY row_number() OVER "
            "(PARTITION BY traj_id, source, generation, item_id ORDER BY _pos) = 1) b "
            "LEFT JOIN (SELECT child_id, generation, item_id, list(parent_id ORDER BY parent_idx NULLS LAST, "
            "parent_id) AS parents FROM _b_lineage GROUP BY ALL) e "
            f"ON e.child_id = b.traj_id AND {same_production('e', 'b')} "
            f"ANTI JOIN _first f ON {same('f')} ANTI JOIN {stored('trajectories')} t ON {same('t')} "
            f"ANTI JOIN {stored('rediscoveries')} d ON {same('d')} ORDER BY b._pos"
        )

    @staticmethod
    def _append_lineage(con: duckdb.DuckDBPyConnection, batch: TrajectoryBatch) -> None:
        """The first productions' edges (see :meth:`_append`); needs ``_known``, ``_first`` and the
        batch views."""
        if not batch.lineage.num_rows:
            return
        con.execute(
            "INSERT INTO raw.lineage BY NAME SELECT DISTINCT l.* FROM _b_lineage l "
            f"JOIN _first c ON c.traj_id = l.child_id AND {same_production('c', 'l')} "
            "LEFT JOIN _first p ON p.traj_id = l.parent_id "
            "WHERE l.parent_id <> l.child_id AND CASE WHEN p.traj_id IS NULL "
            "THEN l.parent_id IN (SELECT traj_id FROM _known) ELSE p._pos < c._pos END"
        )

    def write(self, batch: TrajectoryBatch) -> int:
        n = self._transaction(self._append, batch)
        self._maybe_snapshot()
        return n

    def plan_generation(self, generation: int, items: Sequence[WorkItem]) -> None:
        plan = pa.table({
            "generation": [i.generation for i in items], "item_id": [i.item_id for i in items],
            "operator": [i.operator for i in items], "task_id": [i.task_id for i in items],
            "parents": [list(i.parents) for i in items], "seed": [i.seed for i in items],
            "args": [i.args for i in items],
        }, schema=_PLAN_SCHEMA)

        def run() -> None:
            # A planned generation may gain items with new ids (population fill-up) until committed.
            n, last = self._con.execute(
                "SELECT count(*), max(item_id) FROM raw.work_plan WHERE generation = ?", [generation]
            ).fetchall()[0]
            if n and (not items or min(i.item_id for i in items) <= last or self._con.execute(
                "SELECT count(*) FROM raw.generation_events WHERE generation = ? AND status = 'committed'",
                [generation],
            ).fetchall()[0][0]):
                raise StoreError(f"generation {generation} is already planned")
            self._con.execute(
                "INSERT INTO raw.generation_events (generation, status, event_at, n_items) "
                "VALUES (?, 'planned', current_timestamp, ?)", [generation, n + len(items)]
            )
            with self._registered(_plan=plan) as con:
                con.execute("INSERT INTO raw.work_plan BY NAME SELECT * FROM _plan")
        self._transaction(run)
        self._maybe_snapshot()

    def commit_items(self, results: Sequence[ItemResult], campaign: str) -> int:
        if not results:
            return 0
        done = [r for r in results if r.trajectory is not None]
        batch = TrajectoryBatch.from_trajectories(
            [r.trajectory for r in done], campaign=campaign, item_ids=[r.item.item_id for r in done]
        )
        res = pa.table({
            "generation": [r.item.generation for r in results],
            "item_id": [r.item.item_id for r in results],
            "status": [r.status for r in results],
            "traj_id": [r.trajectory.traj_id if r.trajectory else None for r in results],
            "error": [r.error for r in results],
            "env_steps": [r.env_steps for r in results],
            "seconds": [r.seconds for r in results],
        }, schema=_RESULT_SCHEMA)

        def run() -> int:
            with self._registered(_res=res) as con:
                gens = res.column("generation")  # constant bounds: the older row groups are skipped
                dup = con.execute(
                    "SELECT count(*) FROM _res SEMI JOIN (SELECT generation, item_id FROM raw.work_results "
                    "WHERE generation BETWEEN ? AND ?) w USING (generation, item_id)",
                    [pc.min(gens).as_py(), pc.max(gens).as_py()]).fetchall()[0][0]
                if dup:
                    raise StoreError(f"{dup} work item(s) already committed; refusing to commit twice")
                con.execute(
                    "INSERT INTO raw.work_results BY NAME SELECT *, current_timestamp AS finished_at FROM _res"
                )
            n = self._append(batch)
            rows = [r for res in done for r in res.rewards]
            if rows:
                self._insert_rewards(pa.table({
                    "traj_id": [r[0] for r in rows], "reward_source": [r[1] for r in rows],
                    "value": pa.array([r[2] for r in rows], pa.float64()),
                    "step_idx": pa.array([r[3] for r in rows], pa.int32())}))
            self._insert_search_facts(results)
            return n
        n = self._transaction(run)
        self._maybe_snapshot()
        return n

    def _insert_search_facts(self, results: Sequence[ItemResult]) -> None:
        """Candidates and simulations of the items, inside the caller's transaction."""
        cands = [(r.item, c) for r in results for c in r.candidates]
        if cands:
            fields = [f.name for f in dataclasses.fields(Candidate)]
            cols = {"generation": pa.array([i.generation for i, _ in cands], pa.int32()),
                    "item_id": pa.array([i.item_id for i, _ in cands], pa.int32())}
            for name in fields:
                values = [getattr(c, name) for _, c in cands]
                kind = {"step_idx": pa.int32(), "rank": pa.int32(), "accepted": pa.bool_(),
                        "env_reward": pa.float64(), "reward": pa.float64(), "prev_reward": pa.float64()}
                cols[name] = pa.array(values, kind.get(name, pa.string()))
            with self._registered(_cands=pa.table(cols)) as con:
                con.execute("INSERT INTO raw.candidates BY NAME SELECT *, current_timestamp AS created_at FROM _cands")
        sims = [(r.item, s) for r in results for s in r.simulations]
        if sims:
            table = pa.table({
                "generation": pa.array([i.generation for i, _ in sims], pa.int32()),
                "item_id": pa.array([i.item_id for i, _ in sims], pa.int32()),
                "task_id": [s.task_id for _, s in sims],
                "path": pa.array([list(s.path) for _, s in sims], pa.list_(pa.string())),
                "value": pa.array([s.value for _, s in sims], pa.float64()),
                "terminal": [s.terminal for _, s in sims],
                "reflection": pa.array([s.reflection for _, s in sims], pa.string())})
            with self._registered(_sims=table) as con:
                con.execute("INSERT INTO raw.simulations BY NAME SELECT *, current_timestamp AS created_at FROM _sims")

    def _insert_rewards(self, table: pa.Table) -> int:
        """Insert score rows inside the caller's transaction; a stored (source, id, step) is kept."""
        self._pending.append(([], list(zip(table.column("traj_id").to_pylist(),
                                           table.column("reward_source").to_pylist()))))
        with self._registered(_scores=table) as con:
            n = int(con.execute(
                "INSERT INTO raw.rewards BY NAME SELECT n.* FROM (SELECT * FROM _scores QUALIFY row_number() "
                "OVER (PARTITION BY traj_id, reward_source, step_idx) = 1) n ANTI JOIN raw.rewards o "
                "ON n.traj_id = o.traj_id AND n.reward_source = o.reward_source "
                "AND n.step_idx IS NOT DISTINCT FROM o.step_idx").fetchall()[0][0])
        if n:
            self._unbuffered("rewards")
        return n

    def write_rewards(self, source: str, rows: Sequence[tuple[str, int, float]]) -> int:
        if not rows:
            return 0
        table = pa.table({"traj_id": [r[0] for r in rows], "reward_source": [source] * len(rows),
                          "value": pa.array([r[2] for r in rows], pa.float64()),
                          "step_idx": pa.array([r[1] for r in rows], pa.int32())})
        n = self._transaction(self._insert_rewards, table)
        self._maybe_snapshot()
        return n

    def commit_generation(
        self, generation: int, population: Sequence[tuple[str, str, int]], stats: dict[str, Any],
        partial: bool = False,
    ) -> None:
        def run() -> None:
            events = dict(self._con.execute(
                "SELECT status, count(*) FROM raw.generation_events WHERE generation = ? "
                "AND status IN ('committed', 'partial') GROUP BY status", [generation]).fetchall())
            if events.get("committed"):
                raise StoreError(f"generation {generation} is already committed")
            pop = pa.table({
                "generation": pa.array([generation] * len(population), pa.int32()),
                "task_id": [p[0] for p in population], "traj_id": [p[1] for p in population],
                "rank": pa.array([p[2] for p in population], pa.int32()),
                # the how-many-th close of this generation: a partial one is superseded by the next
                "closing": pa.array([events.get("partial", 0)] * len(population), pa.int32()),
            })
            self._insert_arrow("population", pop)
            self._con.execute(
                "INSERT INTO raw.generation_events (generation, status, event_at, n_items, stats) "
                "VALUES (?, ?, current_timestamp, NULL, ?)",
                [generation, "partial" if partial else "committed", json.dumps(stats, sort_keys=True)],
            )
        self._transaction(run)
        self._release_memory()
        self._maybe_snapshot()

    def _release_memory(self) -> None:
        """Checkpoint and empty DuckDB's pool (see ``RELEASE_MEMORY_LIMIT``); a file store only."""
        if self.path == ":memory:":
            return
        with self._lock:
            self._con.execute("CHECKPOINT")
            try:
                self._con.execute(f"SET memory_limit = '{RELEASE_MEMORY_LIMIT}'")
            except duckdb.Error:
                pass  # something is pinned: evicted what it could, the rest waits for the next generation
            finally:
                self._con.execute(f"SET memory_limit = '{self._memory_limit}'")

    def append_ledger(self, tables: dict[str, pa.Table]) -> None:
        """Append rows to LLM ledger tables (``llm_calls``, ``llm_batches``,
        ``llm_batch_items``) in one transaction."""
        bad = set(tables) - set(LLM_TABLES)
        if bad:
            raise StoreError(f"not a ledger table: {sorted(bad)[0]}")

        filled = {name: t for name, t in tables.items() if t.num_rows}

        try:
            if len(filled) == 1:  # one statement is its own transaction
                with self._lock:
                    self._insert_arrow(*next(iter(filled.items())))
            elif filled:
                self._transaction(lambda: [self._insert_arrow(n, t) for n, t in filled.items()])
        except duckdb.Error as exc:
            raise StoreError(f"ledger append failed: {str(exc).splitlines()[0]}") from None
        self._maybe_snapshot()

    def _insert_arrow(self, name: str, table: pa.Table) -> None:
        """Append an Arrow table to ``raw.<name>`` (inside the caller's lock or transaction)."""
        order = self._columns(name)
        if sorted(table.column_names) == sorted(order):
            # One call, positional: no register/unregister round trips (each hands the GIL
            # back and waits for it again, which costs milliseconds when a hundred threads
            # wait for their rows to be committed). ~40% less CPU than INSERT ... SELECT.
            rows = table.select(order)
            self._con.from_arrow(rows).insert_into(f"raw.{name}")
            if self._in_transaction:
                self._pending_rows.append((name, rows))
            elif self._snap is not None:
                self._snap.buffer(name, rows)
            return
        with self._registered(_rows=table) as con:
            con.execute(f"INSERT INTO raw.{name} BY NAME SELECT * FROM _rows")
        self._unbuffered(name)

    def _unbuffered(self, *names: str) -> None:
        """Rows went into these raw tables by SQL, not from Arrow the snapshot holds: its held rows
        of them could not be their next part (the count no longer matches), so they are released."""
        for name in names:
            if self._in_transaction:
                self._pending_rows.append((name, None))
            elif self._snap is not None:
                self._snap.skip(name)

    def _columns(self, table: str) -> list[str]:
        """A raw table's column names in their stored order (cached: the schema is fixed while open)."""
        if table not in self._column_order:
            self._column_order[table] = [r[0] for r in self._con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'raw' "
                "AND table_name = ? ORDER BY ordinal_position", [table]).fetchall()]
        return self._column_order[table]

    # -- snapshots and lifetime ---------------------------------------------
    def _maybe_snapshot(self) -> None:
        if self._snap is not None and self._snap.due():
            self.snapshot()

    def publish_if_due(self) -> None:
        self._maybe_snapshot()

    def snapshot(self) -> None:
        if self._snap is None:
            return
        with self._lock:
            self._snap.publish(self._con)

    def close(self) -> None:
        if self._con is None:
            return
        try:
            self.snapshot()
        finally:
            with self._lock:
                self._con.close()
                self._con = None  # type: ignore[assignment]
