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
        assert names == ["0001_initial", "0002_llm_ledger"][:SCHEMA_VERSION]
        assert store.scalar("SELECT count(*) FROM population") > 0
        assert store.scalar("SELECT count(*) FROM llm_calls") == 0
        pop = store.query("SELECT * FROM population ORDER BY ALL").to_pylist()
    reader = SnapshotStore(path)
    assert reader.query("SELECT * FROM population ORDER BY ALL").to_pylist() == pop
    reader.close()
