"""A real store file written by schema v1 upgrades forward and keeps its data."""
from __future__ import annotations

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
        assert names == ["0001_initial", "0002_llm_ledger", "0003_lineage_order"][:SCHEMA_VERSION]
        assert store.scalar("SELECT count(*) FROM population") > 0
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
