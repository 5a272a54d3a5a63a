"""The store contract (``evoagent.testing.store_contract``) on every way a store opens,
then what only the snapshot reader, migrations and locking promise."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import stores.duckdb_store
from evoagent.trajectory import Trajectory
from stores import DuckDBStore, SnapshotStore, Store, StoreError, TrajectoryBatch
from stores.snapshot import MANIFEST, snapshot_dir

from evoagent.testing.store_contract import *  # noqa: F401,F403  (the contract suite, collected here)
from evoagent.testing.store_contract import A, B, C, D, count, rows

ROOT = Path(__file__).resolve().parent.parent


# -- the snapshot reader ---------------------------------------------------------------------
def publish(tmp_path: Path, trajs: list[Trajectory]) -> str:
    path = str(tmp_path / "s.duckdb")
    with DuckDBStore(path) as w:
        w.write(TrajectoryBatch.from_trajectories(trajs))
    return path


def test_snapshot_has_no_writes(tmp_path: Path) -> None:
    r = SnapshotStore(publish(tmp_path, [A]))
    assert not isinstance(r, Store)
    for name in ("put_meta", "add_tasks", "write", "plan_generation", "commit_items", "commit_generation",
                 "append_ledger", "write_rewards", "snapshot"):
        assert not hasattr(r, name), name
    assert r.read_only and count(r, "trajectories") == 1


@pytest.mark.parametrize("sql, kind", [
    ("INSERT INTO raw.meta (key, value) VALUES ('a', 'b')", "INSERT"),
    ("DELETE FROM raw.trajectories", "DELETE"),
    ("DROP VIEW trajectories", "DROP"),
    ("CREATE TABLE x AS SELECT 1", "CREATE"),
    ("COPY (SELECT 1) TO 'out.csv'", "COPY"),
    ("ATTACH 'other.duckdb' AS o", "ATTACH"),
    ("UPDATE raw.meta SET value = 'x'", "UPDATE"),
    ("SELECT 1; DROP VIEW steps", "DROP"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO 'sneaky.csv'", "COPY"),
    ("EXPLAIN ANALYZE CREATE TABLE y AS SELECT 1", "CREATE"),
])
def test_snapshot_refuses_modifying_sql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sql: str, kind: str) -> None:
    monkeypatch.chdir(tmp_path)
    r = SnapshotStore(publish(tmp_path, [A]))
    with pytest.raises(StoreError, match=rf"refused a {kind} statement"):
        r.query(sql)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "sneaky.csv").exists()
    assert count(r, "trajectories") == 1 and count(r, "steps") == 2


def test_snapshot_answers_reads(tmp_path: Path) -> None:
    r = SnapshotStore(publish(tmp_path, [A, B]))
    assert r.query("SELECT count(*) AS n FROM trajectories").to_pylist() == [{"n": 2}]
    assert r.scalar("WITH x AS (SELECT * FROM steps) SELECT count(*) FROM x WHERE NOT valid") == 1
    assert r.query("EXPLAIN SELECT * FROM steps").num_rows >= 1
    assert r.query("EXPLAIN ANALYZE SELECT count(*) FROM steps").num_rows >= 1
    assert r.scalar("SELECT count(*) FROM trajectories WHERE source = ?", ["replay"]) == 2
    with pytest.raises(StoreError, match="query failed"):
        r.query("SELECT nope FROM trajectories")
    with pytest.raises(StoreError):
        r.query("SELEC 1")


def test_snapshot_missing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store"):
        SnapshotStore(tmp_path / "none.duckdb")


def _parts(path: str) -> dict[str, list[str]]:
    m = json.loads((snapshot_dir(path) / MANIFEST).read_text())
    return {k: v["parts"] for k, v in m["tables"].items() if v["parts"]}


def test_snapshot_is_incremental(tmp_path: Path) -> None:
    path = str(tmp_path / "inc.duckdb")
    w = DuckDBStore(path, snapshot_every_s=1e9)
    w.write(TrajectoryBatch.from_trajectories([A, B]))
    w.snapshot()
    first = _parts(path)
    assert len(first["trajectories"]) == 1 and len(first["steps"]) == 1
    assert pq.read_table(snapshot_dir(path) / first["steps"][0]).num_rows == 4
    w.snapshot()  # nothing new: no new parts
    assert _parts(path) == first
    old = SnapshotStore(path)  # a reader on the first snapshot
    w.write(TrajectoryBatch.from_trajectories([C, D]))
    w.snapshot()
    second = _parts(path)
    assert second["trajectories"][:1] == first["trajectories"] and len(second["trajectories"]) == 2
    # The new part holds only the new rows.
    assert pq.read_table(snapshot_dir(path) / second["steps"][1]).num_rows == 3
    new = SnapshotStore(path)
    assert count(new, "trajectories") == 4 and count(new, "steps") == 7 and count(new, "lineage") == 2
    assert count(old, "trajectories") == 2  # an open reader keeps its snapshot
    w.close()
    # Reopening the writer continues from the manifest without re-exporting rows.
    with DuckDBStore(path, snapshot_every_s=1e9) as w2:
        w2.write(TrajectoryBatch.from_trajectories([dataclasses.replace(A, source="other")]))
    assert count(SnapshotStore(path), "trajectories") == 5
    assert count(SnapshotStore(path), "steps") == 7


def test_crash_between_parts_and_manifest(tmp_path: Path) -> None:
    path = str(tmp_path / "crash.duckdb")
    w = DuckDBStore(path, snapshot_every_s=1e9)
    w.write(TrajectoryBatch.from_trajectories([A]))
    w.snapshot()
    seq = json.loads((snapshot_dir(path) / MANIFEST).read_text())["seq"]
    # A publish that wrote its parts and died before the manifest: orphan parts,
    # one under the very name the next publish will use, one half-written.
    folder = snapshot_dir(path) / "raw" / "trajectories"
    orphan = pa.table({"traj_id": ["ghost"], "source": ["x"]})
    pq.write_table(orphan, folder / f"part-{seq + 1:08d}.parquet")
    (folder / f"part-{seq + 7:08d}.parquet").write_bytes(b"PAR1 truncated")
    r = SnapshotStore(path)
    assert rows(r, "SELECT traj_id FROM trajectories") == [{"traj_id": A.traj_id}]
    # The next publish overwrites the orphan it collides with; readers see all rows.
    w.write(TrajectoryBatch.from_trajectories([B]))
    w.snapshot()
    r2 = SnapshotStore(path)
    assert sorted(x["traj_id"] for x in rows(r2, "SELECT traj_id FROM trajectories")) == sorted(
        [A.traj_id, B.traj_id])
    assert count(r2, "steps") == 4
    w.close()


def test_reader_while_writer_holds_file_same_process(tmp_path: Path) -> None:
    path = str(tmp_path / "live.duckdb")
    w = DuckDBStore(path, snapshot_every_s=1e9)
    assert count(SnapshotStore(path), "trajectories") == 0  # published empty at creation
    w.write(TrajectoryBatch.from_trajectories([A, B]))
    w.snapshot()
    r = SnapshotStore(path)
    assert count(r, "trajectories") == 2
    w.write(TrajectoryBatch.from_trajectories([C]))  # writing on while a reader is open
    w.snapshot()
    assert count(SnapshotStore(path), "trajectories") == 3
    w.close()


WRITER = textwrap.dedent("""
    import sys, time
    from evoagent.trajectory import Step, Trajectory
    from stores import DuckDBStore, TrajectoryBatch
    s = DuckDBStore(sys.argv[1], snapshot_every_s=1e9)
    trajs = [Trajectory(task_id=f"t{i}", steps=(Step(0, f"SELECT {i}", "ok", 1.0),),
                        outcome_reward=1.0, source="proc") for i in range(5)]
    s.write(TrajectoryBatch.from_trajectories(trajs))
    s.snapshot()
    print("ready", flush=True)
    time.sleep(60)
""")


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "evoagent"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "evoagent.cli"]


def test_reader_and_cli_while_another_process_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "proc.duckdb")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read() if proc.poll() is not None else line
        assert proc.poll() is None  # still holding the file
        # The live file is locked for writing by the other process...
        with pytest.raises(StoreError, match="evoagent sql") as err:
            DuckDBStore(path)
        assert "open for writing in another process" in str(err.value)
        # ...yet the snapshot reader and the CLI answer.
        r = SnapshotStore(path)
        assert count(r, "trajectories") == 5
        r.close()
        t0 = time.monotonic()
        out = subprocess.run([*_cli(), "sql", path, "SELECT count(*) AS n FROM trajectories",
                              "--format", "csv"], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ['"n"', "5"] or out.stdout.split() == ["n", "5"]
        assert time.monotonic() - t0 < 30
        # The CLI refuses modifying SQL with one line and exit status 2.
        bad = subprocess.run([*_cli(), "sql", path, "DELETE FROM raw.trajectories"],
                             capture_output=True, text=True, env=env, timeout=60)
        assert bad.returncode == 2 and "DELETE" in bad.stdout + bad.stderr
    finally:
        proc.kill()
        proc.wait()


# -- migrations ----------------------------------------------------------------------------
def test_new_file_records_every_migration_once(tmp_path: Path) -> None:
    from stores.schema import MIGRATIONS

    expected = [{"name": m.name, "version": m.version} for m in MIGRATIONS]
    with DuckDBStore(tmp_path / "m.duckdb") as s:
        assert rows(s, "SELECT name, version FROM raw.migrations ORDER BY version") == expected
    with DuckDBStore(tmp_path / "m.duckdb") as s:  # reopening applies nothing again
        assert count(s, "raw.migrations") == len(expected)


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    with DuckDBStore(path) as s:
        s._con.execute("INSERT INTO raw.migrations (name, version) VALUES ('0099_future', 99)")
    for upgrade in (False, True):
        with pytest.raises(StoreError, match="newer than this evoagent"):
            DuckDBStore(path, upgrade=upgrade)
    # It was closed again on refusal: the file can still be opened by others.
    import duckdb
    duckdb.connect(str(path)).close()


def test_older_schema_refused_naming_migrate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.duckdb"
    with DuckDBStore(path) as s:
        s.write(TrajectoryBatch.from_trajectories([A]))
    monkeypatch.setattr(stores.duckdb_store, "SCHEMA_VERSION", stores.duckdb_store.SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match=rf"evoagent migrate {path}"):
        DuckDBStore(path)
    # `evoagent migrate` (upgrade=True) opens it, keeping the data.
    with DuckDBStore(path, upgrade=True) as s:
        assert count(s, "trajectories") == 1


def test_locked_file_names_evoagent_sql(tmp_path: Path) -> None:
    path = str(tmp_path / "lock.duckdb")
    hold = textwrap.dedent("""
        import sys, time
        from stores import DuckDBStore
        s = DuckDBStore(sys.argv[1])
        print("ready", flush=True)
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", hold, path], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match=r"evoagent sql .*lock\.duckdb"):
            DuckDBStore(path)
    finally:
        proc.kill()
        proc.wait()


# -- records -> Arrow ------------------------------------------------------------------------
def test_from_trajectories_matches_a_row_by_row_build() -> None:
    """The columnar build (repeats, takes, whole-column conversions) gives the rows a plain
    per-record loop gives: no steps, an unexecuted step, several parents, missing item ids."""
    import hashlib

    from evoagent.trajectory import Step

    trajs = [
        Trajectory("t/1", (Step(0, "SELECT 'é'", "[(1,)]", 1.0, "why", True, 0.5), Step(1, "submit", None, None)),
                   1.0, "claude", 2, "revise", ("p1", "p2", "p3"), 7, 0.01, 10, 20),
        Trajectory("t/2", (), 0.0, "replay"),
        Trajectory("t/3", (Step(0, "x", "y", 0.0, valid=False),), 0.5, "claude", 0, "init", ("p4",)),
    ]
    b = TrajectoryBatch.from_trajectories(trajs, campaign="c", item_ids=[4, None, 6], reward_source="rm")
    for t in trajs:  # the id: blake2b-128 of the task id, then NUL + action for each action, UTF-8
        h = hashlib.blake2b(t.task_id.encode(), digest_size=16)
        for s in t.steps:
            h.update(b"\0" + s.action.encode())
        assert t.traj_id == h.hexdigest()
    items = {t.traj_id: i for t, i in zip(trajs, [4, None, 6])}
    assert b.trajectories.drop(["created_at"]).to_pylist() == [
        {"traj_id": t.traj_id, "source": t.source, "task_id": t.task_id, "campaign": "c", "generation": t.generation,
         "operator": t.operator, "item_id": items[t.traj_id], "seed": t.seed, "outcome_reward": t.outcome_reward,
         "n_steps": len(t.steps), "cost_usd": t.cost_usd, "input_tokens": t.input_tokens,
         "output_tokens": t.output_tokens} for t in trajs]
    assert len(set(b.trajectories.column("created_at").to_pylist())) == 1
    assert b.steps.to_pylist() == [
        {"traj_id": t.traj_id, "idx": s.idx, "thought": s.thought, "action": s.action, "observation": s.observation,
         "reward": s.reward, "valid": s.valid, "process_reward": s.process_reward} for t in trajs for s in t.steps]
    assert b.lineage.to_pylist() == [
        {"child_id": t.traj_id, "parent_id": p, "operator": t.operator, "generation": t.generation,
         "item_id": items[t.traj_id], "parent_idx": k} for t in trajs for k, p in enumerate(t.parents)]
    assert b.rewards.to_pylist() == [
        {"traj_id": t.traj_id, "reward_source": "rm", "value": t.outcome_reward, "step_idx": None} for t in trajs]
    empty = TrajectoryBatch.from_trajectories([])
    assert [getattr(empty, n).schema for n in ("trajectories", "steps", "lineage", "rewards")] == \
        [getattr(TrajectoryBatch.empty(), n).schema for n in ("trajectories", "steps", "lineage", "rewards")]
