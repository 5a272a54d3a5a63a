"""A real store file written by schema v1 upgrades forward and keeps its data."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from evoagent.cli import main
from stores import DuckDBStore, SnapshotStore, StoreError
from stores.schema import SCHEMA_VERSION

V1 = Path(__file__).parent / "data" / "store_v1.duckdb"


def test_v1_store_is_refused_then_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    shutil.copy(V1, path)
    # a v1 snapshot beside it, as every published store has
    (tmp_path / "old.duckdb.snapshot").mkdir()
    (tmp_path / "old.duckdb.snapshot" / "manifest.json").write_text(
        '{"schema_version": 1, "seq": 3, "tables": {}}')
    with pytest.raises(StoreError, match=f"evoagent migrate {path}"):
        DuckDBStore(path)
    out = CliRunner().invoke(main, ["migrate", str(path)])
    assert out.exit_code == 0, out.output
    with DuckDBStore(path) as store:
        names = store.query("SELECT name FROM raw.migrations ORDER BY version").column(0).to_pylist()
        assert names == ["0001_initial", "0002_llm_ledger", "0003_lineage_order", "0004_lineage_dag",
                         "0005_search", "0006_task_meta", "0007_partial_close"]
        # v7: rows from before it were each their generation's only close (closing null)
        assert store.scalar("SELECT count(*) FROM population") == store.scalar(
            "SELECT count(*) FROM raw.population WHERE closing IS NULL") > 0
        # v6: the tasks' own fields as JSON, from the columns old rows had
        db, meta = store.query("SELECT db, meta FROM tasks WHERE db <> '' LIMIT 1").to_pylist()[0].values()
        assert json.loads(meta)["db"] == db
        assert store.scalar("SELECT count(*) FROM llm_calls") == 0
        pop = store.query("SELECT * FROM population ORDER BY ALL").to_pylist()
        # v3: lineage rows from before it have no parent position; parents come back by id.
        edges = store.scalar("SELECT count(*) FROM lineage")
        assert edges > 0 and store.scalar("SELECT count(parent_idx) FROM lineage") == 0
        child = store.scalar("SELECT child_id FROM lineage GROUP BY ALL HAVING count(*) > 1 LIMIT 1")
        parents = store.load_trajectories([child])[child].parents
        assert len(parents) > 1 and list(parents) == sorted(parents)
    reader = SnapshotStore(path)
    assert reader.query("SELECT * FROM population ORDER BY ALL").to_pylist() == pop
    assert reader.scalar("SELECT count(*) FROM lineage WHERE parent_idx IS NULL") == edges
    reader.close()


def test_v4_makes_an_old_stores_lineage_a_dag(tmp_path: Path) -> None:
    """The v1 file has what every pre-v4 store has: self-edges (183) and parents from later
    generations (48), from trajectories found again. After the migration only the first
    productions' edges remain, and every later production is a re-discovery."""
    import duckdb

    from test_lineage import assert_dag, edges

    path = tmp_path / "old.duckdb"
    shutil.copy(V1, path)
    con = duckdb.connect(str(path), read_only=True)
    old = con.execute("SELECT child_id, parent_id, generation, item_id FROM raw.lineage").fetchall()
    first = {r[0]: (r[1], r[2]) for r in con.execute(
        "SELECT traj_id, generation, item_id FROM raw.trajectories").fetchall()}
    gen = {t: g for t, (g, _) in first.items()}
    done = con.execute("SELECT traj_id, generation, item_id FROM raw.work_results WHERE status = 'done'").fetchall()
    con.close()
    assert sum(c == p for c, p, _, _ in old) > 0 and sum(gen[p] > gen[c] for c, p, _, _ in old) > 0
    # What v4 keeps, computed here from the definition: the first production's edges, to a
    # parent produced earlier (in a campaign: an earlier generation).
    want = sorted({(c, p) for c, p, g, i in old if first[c] == (g, i) and gen[p] < gen[c]})
    later = {(t, g, i) for t, g, i in done if first[t] != (g, i)}

    assert CliRunner().invoke(main, ["migrate", str(path)]).exit_code == 0
    with DuckDBStore(path) as store:
        assert store.scalar("SELECT max(version) FROM raw.migrations") == SCHEMA_VERSION == 7
        assert sorted(edges(store)) == want and len(want) < len(old)
        assert_dag(edges(store))
        got = store.query("SELECT traj_id, generation, item_id, parents FROM rediscoveries").to_pylist()
        assert {(r["traj_id"], r["generation"], r["item_id"]) for r in got} == later and len(got) == len(later)
        # each with its work item's parents, in plan order
        plan = {(r["traj_id"], r["generation"], r["item_id"]): r["parents"] for r in store.query(
            "SELECT traj_id, generation, item_id, parents FROM work_items WHERE status = 'done'").to_pylist()}
        assert all(r["parents"] == plan[(r["traj_id"], r["generation"], r["item_id"])] for r in got)
        n_edges = len(want)
    # The snapshot is republished whole, in the new shape.
    reader = SnapshotStore(path)
    assert reader.scalar("SELECT count(*) FROM lineage") == n_edges
    assert reader.scalar("SELECT count(*) FROM rediscoveries") == len(later)
    reader.close()


def test_a_new_store_is_created_in_one_transaction(tmp_path, monkeypatch):
    """A process that dies while creating a store leaves an empty file, never one at an older version."""
    import duckdb

    from stores import schema

    def dies(con):
        raise KeyboardInterrupt  # as a kill would, after the earlier migrations ran

    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS + [schema.Migration("9999_dies", 99, dies)])
    path = tmp_path / "new.duckdb"
    con = duckdb.connect(str(path))
    with pytest.raises(KeyboardInterrupt):
        schema.migrate(con)
    assert schema.current_version(con) == 0
    con.close()
    monkeypatch.undo()
    from stores import DuckDBStore
    with DuckDBStore(path) as store:
        assert store.query("SELECT max(version) AS v FROM raw.migrations").column("v")[0].as_py() == schema.SCHEMA_VERSION
