"""The store's two append paths agree: a batch of distinct ids is filtered in Arrow against the
facts kept in memory (stores/append.py, stores/facts.py), a batch with an id twice goes through
SQL. Random campaigns (re-found ids, rewrites, NULL sources and generations, unknown parents,
reward rows) written both ways, with the writer reopened midway (facts rebuilt from the file),
must leave the same rows."""
from __future__ import annotations

import dataclasses
import random

import pytest

from evoagent.trajectory import Step, Trajectory
from stores import DuckDBStore, TrajectoryBatch

TABLES = ("trajectories", "steps", "lineage", "rewards", "rediscoveries")


def _batches(seed: int) -> list[tuple[TrajectoryBatch, list[tuple[str, int, float]] | None, str]]:
    r = random.Random(seed)
    pool: list[str] = []
    out = []
    for gen in range(7):
        trajs, items = [], []
        for k in range(r.randint(1, 10)):
            acts = [r.choice("abc") for _ in range(r.randint(1, 3))]
            parents = tuple(r.choice(pool) for _ in range(r.randint(0, 2))) if pool and r.random() < 0.8 else ()
            if r.random() < 0.2:
                parents += (f"unknown{r.randint(0, 3)}",)
            t = Trajectory(f"t{r.randint(0, 2)}", tuple(Step(i, a, f"o{r.randint(0, 3)}", r.random())
                                                        for i, a in enumerate(acts)),
                           r.random(), r.choice(["evolve", "evolve", "replay", None]), r.choice([gen, gen, None]),
                           r.choice(["revise", "init"]), parents, r.randint(0, 9))
            if r.random() < 0.1 and t.traj_id in pool:
                t = dataclasses.replace(t, parents=(*parents, t.traj_id))  # a re-found id naming itself
            trajs.append(t)
            items.append(r.choice([None, k, k, r.randint(0, 3)]))
        for k in range(len(trajs)):  # parents in the same batch, before and after the child
            if r.random() < 0.3:
                trajs[k] = dataclasses.replace(trajs[k], parents=(*trajs[k].parents, r.choice(trajs).traj_id))
        batch = TrajectoryBatch.from_trajectories(trajs, campaign="c", item_ids=items,
                                                  reward_source=r.choice(["env", "env", "rec"]))
        scores = ([(r.choice(pool + [t.traj_id for t in trajs]), r.randint(0, 2), r.random()) for _ in range(3)]
                  if r.random() < 0.3 else None)
        out.append((batch, scores, r.choice(["env", "m"])))
        if r.random() < 0.3:
            out.append((batch, None, "m"))  # written again: adds nothing
        pool += [t.traj_id for t in trajs]
    return out


def _write_all(path: str, seed: int, sql_only: bool) -> dict[str, list[dict]]:
    batches = _batches(seed)
    store = DuckDBStore(path)
    for n, (batch, scores, source) in enumerate(batches):
        if n == len(batches) // 2:  # resume: the facts are rebuilt from the file
            store.close()
            store = DuckDBStore(path)
        if sql_only:
            store._append_distinct = store._append_sql  # type: ignore[method-assign]
        store.write(batch)
        if scores:
            store.write_rewards(source, scores)
    rows = {t: store.query(f"SELECT * {'EXCLUDE (created_at)' if t in ('trajectories', 'rediscoveries') else ''} "
                           f"FROM raw.{t} ORDER BY ALL").to_pylist() for t in TABLES}
    store.close()
    return rows


@pytest.mark.parametrize("seed", range(4))
def test_arrow_and_sql_paths_store_the_same_rows(tmp_path, seed):
    arrow = _write_all(str(tmp_path / "a.duckdb"), seed, sql_only=False)
    sql = _write_all(str(tmp_path / "s.duckdb"), seed, sql_only=True)
    for table in TABLES:
        assert arrow[table] == sql[table], table
    assert arrow["rediscoveries"] and arrow["lineage"]  # the campaigns do exercise both


def test_snapshot_parts_from_arrow_and_copy_read_as_the_live_file(tmp_path):
    """A publish writes a table's new rows from the Arrow the writer appended when they are exactly
    the rows since the last publish, else DuckDB copies them out: readers see the live file's rows
    either way, and both kinds of part share one schema (or the snapshot would read as damaged)."""
    import pyarrow.parquet as pq

    from stores import SnapshotStore
    from stores.snapshot import load_manifest, snapshot_dir

    path = str(tmp_path / "s.duckdb")
    store = DuckDBStore(path, snapshot_every_s=1e9)
    for batch, scores, source in _batches(3):
        store.write(batch)  # batches with an id twice go through SQL: their tables are copied out
        if scores:
            store.write_rewards(source, scores)
        store.snapshot()
    store.close()
    writers = {pq.ParquetFile(p).metadata.created_by.split()[0]
               for paths, _ in load_manifest(snapshot_dir(path))["_files"].values() for p in paths}
    assert len(writers) == 2, writers  # parts from both ways
    with SnapshotStore(path) as snap, DuckDBStore(path) as live:
        for table in TABLES:
            q = f"SELECT * FROM raw.{table} ORDER BY ALL"
            assert snap.query(q).to_pylist() == live.query(q).to_pylist(), table
