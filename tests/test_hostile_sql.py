"""Hostile `evoagent sql`: every attempt to write a file or change a setting fails, and nothing changes.

Issue 8, item 1. Each attempt runs through the CLI against a real store, both ways a reader
opens it: the store file itself (no writer holds it) and the Parquet snapshot (another process
holds the file for writing). The store file, its WAL and its snapshot folder are checksummed
before and after, and no file may appear in the working directory, the attack's target
folder, the store's folder or ~/.duckdb. A second test runs the same statements straight on
the reader's connection, past the text check: the connection itself must refuse them.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from test_snapshot_read import listing, make_store, one_line_error, run, tree_digest, writer_holding

from stores import FileStore, SnapshotStore, open_reader
from stores.snapshot import MANIFEST, snapshot_dir

# {out}: a folder the attack aims at; {store}, {wal}, {manifest}, {part}: the store's own files.
WRITES = [
    # COPY, plainly and aimed at the store itself
    "COPY (SELECT 1) TO '{out}/a.csv'",
    "COPY (SELECT 1) TO 'relative.csv'",
    "COPY trajectories TO '{store}' (FORMAT parquet)",
    "COPY (SELECT 1 AS a) TO '{part}' (FORMAT parquet, USE_TMP_FILE false)",
    "COPY (SELECT 1) TO '{manifest}' (FORMAT csv)",
    "COPY steps TO '{out}/part' (FORMAT parquet, PARTITION_BY (idx))",
    "COPY trajectories FROM '{out}/in.csv'",
    # EXPLAIN ANALYZE runs what it explains; comments nest in DuckDB
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}/b.csv'",
    "EXPLAIN ANALYZE /* /* */ SELECT 1 -- */ COPY (SELECT 1) TO '{out}/c.csv'",
    "EXPLAIN ANALYZE /* /* */ SELECT 1 -- */ COPY (SELECT 1) TO '{store}'",
    "EXPLAIN ANALYZE /* a /* b /* c */ */ SELECT 1 -- */ COPY (SELECT 1) TO '{manifest}'",
    "/* x /* y */ */ EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}/d.csv'",
    "EXPLAIN (ANALYZE) COPY (SELECT 1) TO '{out}/e.csv'",
    "EXPLAIN (FORMAT json, ANALYZE) COPY (SELECT 1) TO '{out}/f.csv'",
    "EXPLAIN ANALYSE CREATE TABLE x AS SELECT 1",
    # a CTE can hold a COPY inside a statement DuckDB calls SELECT
    "WITH x AS MATERIALIZED (COPY (SELECT 1) TO '{out}/g.csv') SELECT 1",
    "WITH x AS MATERIALIZED (COPY (SELECT 1) TO '{store}') SELECT * FROM x",
    "EXPLAIN ANALYZE WITH x AS MATERIALIZED (COPY (SELECT 1) TO '{out}/h.csv') SELECT 1",
    # table functions and pragmas that write or change settings
    "SELECT * FROM enable_profiling(save_location='{out}/profile.json')",
    "CALL enable_profiling(save_location='{out}/profile2.json')",
    "SELECT * FROM enable_logging(storage='file', storage_path='{out}/logs')",
    "CALL enable_logging(storage='file', storage_path='{out}/logs2')",
    "PRAGMA enable_profiling='json'",
    "PRAGMA profiling_output='{out}/p.json'",
    "SET profiling_output='{out}/p2.json'",
    "SET log_query_path='{out}/q.log'",
    "SET temp_directory='{out}/spill'",
    "SET enable_external_access=true",
    "RESET enable_external_access",
    "SET lock_configuration=false",
    "SET memory_limit='1MB'",
    # other databases, extensions, secrets
    "EXPORT DATABASE '{out}/exported'",
    "ATTACH '{out}/new.duckdb' AS n",
    "ATTACH '{store}' AS s",
    "INSTALL httpfs",
    "FORCE INSTALL json",
    "LOAD httpfs",
    "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "CHECKPOINT",
    # several statements: the second must never run
    "SELECT 1; COPY (SELECT 1) TO '{out}/i.csv'",
    "COPY (SELECT 1) TO '{out}/j.csv'; SELECT 1",
    "SELECT 1; SET enable_external_access=true",
    "SELECT 1;; -- c\nEXPLAIN ANALYZE COPY (SELECT 1) TO '{out}/k.csv'",
    # reading other files is refused as well
    "SELECT * FROM read_text('{store}')",
    "SELECT * FROM read_parquet('{part}')",
    "SELECT * FROM glob('{out}/*')",
]


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    (root / "out").mkdir()
    (root / "cwd").mkdir()
    (root / "out" / "in.csv").write_text("traj_id\nx\n")
    return {"root": root, "store": make_store(root / "store" / "s.duckdb"), "out": root / "out", "cwd": root / "cwd"}


@pytest.fixture(scope="module", params=["file", "snapshot"])
def mode(request: pytest.FixtureRequest, place: dict[str, Path]) -> Iterator[str]:
    """How `evoagent sql` reaches the store: the file itself, or the snapshot while a writer holds it."""
    def check() -> str:
        reader = open_reader(place["store"])
        reader.close()
        assert reader.source == request.param
        return request.param

    if request.param == "file":
        yield check()
    else:
        with writer_holding(place["store"]):
            yield check()


def _fill(sql: str, place: dict[str, Path]) -> str:
    store = place["store"]
    manifest = snapshot_dir(store) / MANIFEST
    part = next((snapshot_dir(store) / "raw" / "steps").glob("*.parquet"))
    return sql.format(out=place["out"], store=store, wal=f"{store}.wal", manifest=manifest, part=part)


def _state(place: dict[str, Path]) -> tuple[dict[str, str], set[str]]:
    store = place["store"]
    return (tree_digest(store, Path(f"{store}.wal"), snapshot_dir(store)),
            listing(place["root"], Path.home() / ".duckdb"))


def test_enough_attempts() -> None:
    assert len(WRITES) >= 30 and len(set(WRITES)) == len(WRITES)


@pytest.mark.parametrize("sql", WRITES)
def test_cli_refuses_every_write_attempt(mode: str, place: dict[str, Path], sql: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(place["cwd"])
    before = _state(place)
    code, out = run("sql", place["store"], _fill(sql, place))
    one_line_error(code, out, "")
    assert any(w in out for w in ("refused", "exactly one", "bad SQL", "query failed")), out
    assert _state(place) == before


def test_several_statements_are_an_error_not_last_one_wins(mode: str, place: dict[str, Path]) -> None:
    one_line_error(*run("sql", place["store"], "SELECT 1 AS a; SELECT 2 AS b"), "exactly one SQL statement")
    code, out = run("sql", place["store"], "SELECT 2 AS b;", "--format", "csv")
    assert code == 0 and out.split() == ['"b"', "2"]


def test_reader_connection_refuses_writes_without_the_text_check(mode: str, place: dict[str, Path],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(place["cwd"])
    before = _state(place)
    reader = open_reader(place["store"])
    assert isinstance(reader, FileStore if mode == "file" else SnapshotStore)
    con = reader._con
    try:
        for sql in WRITES:
            try:
                con.execute(_fill(sql, place))  # every statement in the text, unchecked
            except duckdb.Error:
                pass
        settings = dict(con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
            "'lock_configuration', 'temp_directory', 'enable_profiling', 'profiling_output', "
            "'allow_unsigned_extensions', 'autoinstall_known_extensions')").fetchall())
        assert reader.scalar("SELECT count(*) FROM trajectories") == 3  # still answers
    finally:
        reader.close()
    assert settings["enable_external_access"] == "false" and settings["lock_configuration"] == "true"
    assert settings["temp_directory"] == "" and settings["profiling_output"] == ""
    assert settings["allow_unsigned_extensions"] == "false" and settings["autoinstall_known_extensions"] == "false"
    assert _state(place) == before
