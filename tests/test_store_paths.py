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


def _batches(seed: int) -> list[tuple[TrajectoryBatch, list[tuple[str, int, float]] | None, str, bool]]:
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
        out.append((batch, scores, r.choice(["env", "m"]), r.random() < 0.5))  # scored before or after
        if r.random() < 0.3:
            out.append((batch, None, "m", False))  # written again: adds nothing
        pool += [t.traj_id for t in trajs]
    return out


def _write_all(path: str, seed: int, sql_only: bool) -> dict[str, list[dict]]:
    batches = _batches(seed)
    store = DuckDBStore(path)
    for n, (batch, scores, source, first) in enumerate(batches):
        if n == len(batches) // 2:  # resume: the facts are rebuilt from the file
            store.close()
            store = DuckDBStore(path)
        if sql_only:
            store._append_arrow = store._append_sql  # type: ignore[method-assign]
        if scores and first:  # scores of ids the batch brings (a prefix scored before its trajectory)
            store.write_rewards(source, scores)
        store.write(batch)
        if scores and not first:
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
    keys = [(r["traj_id"], r["reward_source"], r["step_idx"]) for r in arrow["rewards"]]
    assert len(keys) == len(set(keys))  # the rewards table's key


def test_a_score_written_before_its_trajectory_is_not_written_again(tmp_path):
    """A (traj_id, reward_source) scored before the trajectory arrives (a prefix's score, whose id
    is that of the shorter trajectory) keeps its one row: the trajectory's reward row of that
    source is dropped, as for a stored trajectory, on both paths and after a resume."""
    t = Trajectory("t0", (Step(0, "a", "o", 0.5),), 1.0, "evolve", 0, "init", (), 1)
    u, v = (dataclasses.replace(t, task_id=k) for k in ("t1", "t2"))
    path = str(tmp_path / "s.duckdb")
    store = DuckDBStore(path)
    store.write_rewards("env", [(t.traj_id, 0, 0.3)])
    store.close()
    store = DuckDBStore(path)  # resumed: the facts come from the file
    store.write_rewards("env", [(u.traj_id, None, 0.2), (v.traj_id, 1, 0.1)])
    store.write(TrajectoryBatch.from_trajectories([t, u], reward_source="env"))  # distinct ids: Arrow
    store.write(TrajectoryBatch.from_trajectories([v, v], reward_source="env"))  # an id twice: SQL
    rows = store.query("SELECT traj_id, value FROM raw.rewards WHERE reward_source = 'env'").to_pylist()
    store.close()
    assert sorted((r["traj_id"], r["value"]) for r in rows) == sorted(
        [(t.traj_id, 0.3), (u.traj_id, 0.2), (v.traj_id, 0.1)])


def test_reward_facts_of_ids_without_a_trajectory_are_hashes_confirmed_in_the_file(tmp_path):
    """Pairs scored before their trajectory are kept as 64-bit hashes (8 bytes each, merged into a
    sorted array); a hash that matches a pair never written is not taken for a stored row."""
    from stores.facts import _Hashes

    hashes = _Hashes([5, 3])
    for v in range(10_000):
        hashes.add(v * 7919)
    assert len(hashes) == 10_002 and 3 in hashes and 7919 * 9_999 in hashes and 4 not in hashes
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    store.write_rewards("env", [("p1", 0, 0.5)])
    facts = store._stored()
    facts._scored.add(hash(("p2", "env")))  # as if p2's hash were p1's
    assert facts.rewarded([("p1", "env"), ("p2", "env"), ("p1", "m"), ("p1", None)]) == {("p1", "env")}
    store.close()


def test_snapshot_holds_only_arrow_rows_of_the_tables_types_and_none_of_a_table_written_by_sql(tmp_path):
    """The publisher keeps the Arrow rows the writer appended only when they have the table's own
    types: DuckDB cast any others on insert, and Arrow's cast may differ (a TIMESTAMPTZ becomes
    the session's local time in DuckDB, stays UTC in Arrow). Rows inserted by SQL (scores) release
    the table's held rows, which could no longer be its next part. Readers see the live rows."""
    import datetime as dt

    import pyarrow as pa

    from stores import SnapshotStore

    t = Trajectory("t0", (Step(0, "a", "o", 0.5),), 1.0, "evolve", 0, "init", (), 1)
    batch = TrajectoryBatch.from_trajectories([t])
    noon = pa.array([dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)], pa.timestamp("us", tz="UTC"))
    traj = batch.trajectories.set_column(batch.trajectories.schema.get_field_index("created_at"), "created_at", noon)
    path = str(tmp_path / "s.duckdb")
    store = DuckDBStore(path, snapshot_every_s=1e9)
    store._con.execute("SET TimeZone = 'Asia/Tokyo'")
    store.write(dataclasses.replace(batch, trajectories=traj))
    held = store._snap._rows  # type: ignore[union-attr]
    assert "trajectories" not in held and "steps" in held and "rewards" in held
    store.write_rewards("m", [(t.traj_id, 0, 0.5)])
    assert "rewards" not in held and "steps" in held
    store.close()
    with SnapshotStore(path) as snap, DuckDBStore(path) as live:
        for table in TABLES:
            q = f"SELECT * FROM raw.{table} ORDER BY ALL"
            assert snap.query(q).to_pylist() == live.query(q).to_pylist(), table
