"""Parquet snapshots: how readers see a store without ever touching the live file.

The writer publishes, next to ``store.duckdb``, a folder ``store.duckdb.snapshot/``
holding one Parquet part per table per publish and a ``manifest.json`` naming
the parts. Raw tables are append-only, so a publish writes only the rows added
since the last one (``rowid`` above the last exported), inside one read
transaction so that all tables show the same moment. The manifest is replaced
atomically (write + rename) after the parts are on disk, so a reader sees either
the old snapshot or the new one, and a crash mid-publish leaves only unreferenced
parts that the next publish overwrites.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from stores.base import Store, StoreError
from stores.schema import RAW_TABLES, SCHEMA_VERSION, create_views

MANIFEST = "manifest.json"
# Statement types `evoagent sql` accepts; everything else could modify something.
READ_STATEMENTS = {"SELECT", "EXPLAIN", "RELATION"}
_COMMENTS = re.compile(r"/\*.*?\*/|--[^\n]*", re.S)
_EXPLAIN_PREFIX = re.compile(r"^\s*EXPLAIN\s*(\([^)]*\)|ANALY[SZ]E\b)?\s*", re.IGNORECASE)


def snapshot_dir(store_path: str | Path) -> Path:
    return Path(f"{store_path}.snapshot")


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return None


class SnapshotWriter:
    """Publishes increments of the raw tables; throttled by ``every_s``."""

    def __init__(self, folder: Path, every_s: float = 5.0):
        self.folder = folder
        self.every_s = every_s
        self._last = 0.0
        manifest = _read_manifest(folder)
        if manifest is not None and manifest.get("schema_version") != SCHEMA_VERSION:
            # After a migration the raw tables changed shape: publish everything anew.
            shutil.rmtree(folder / "raw", ignore_errors=True)
            manifest = {"schema_version": SCHEMA_VERSION, "seq": manifest.get("seq", 0), "tables": {}}
        self._manifest = manifest or {"schema_version": SCHEMA_VERSION, "seq": 0, "tables": {}}

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_s

    def publish(self, con: duckdb.DuckDBPyConnection) -> bool:
        """Write new rows of every raw table; returns whether anything was new."""
        self._last = time.monotonic()
        # Work on a copy: if anything fails midway, the manifest in memory and on disk still
        # names only complete parts, and the next publish rewrites this one's part names.
        manifest = json.loads(json.dumps(self._manifest))
        tables: dict[str, Any] = manifest["tables"]
        seq = manifest["seq"] + 1
        changed = False
        con.execute("BEGIN TRANSACTION")
        try:
            for name in RAW_TABLES:
                entry = tables.setdefault(name, {"max_rowid": -1, "parts": []})
                top = con.execute(f"SELECT max(rowid) FROM raw.{name}").fetchall()[0][0]
                if top is None or top <= entry["max_rowid"]:
                    continue
                rel = f"raw/{name}/part-{seq:08d}.parquet"
                (self.folder / rel).parent.mkdir(parents=True, exist_ok=True)
                con.execute(
                    f"COPY (SELECT * FROM raw.{name} WHERE rowid > {entry['max_rowid']} "
                    f"AND rowid <= {top} ORDER BY rowid) TO '{self.folder / rel}' "
                    "(FORMAT parquet, COMPRESSION zstd)"
                )
                entry["parts"].append(rel)
                entry["max_rowid"] = top
                changed = True
        finally:
            con.execute("COMMIT")
        if changed or not (self.folder / MANIFEST).exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            manifest["seq"] = seq
            manifest["published_at"] = time.time()
            tmp = self.folder / f".{MANIFEST}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(manifest))
            os.replace(tmp, self.folder / MANIFEST)
            self._manifest = manifest
        return changed


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but reading statements, with a one-line reason."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise StoreError(f"bad SQL: {str(exc).splitlines()[0]}") from None
    if not statements:
        raise StoreError("no SQL statement given")
    for st in statements:
        kind = st.type.name
        if kind not in READ_STATEMENTS:
            raise StoreError(f"evoagent sql is read-only: refused a {kind} statement")
        if kind == "EXPLAIN":
            # EXPLAIN ANALYZE runs its statement: check what it explains too (comments removed
            # first, so that none can hide the prefix); refuse what cannot be taken apart.
            text = _COMMENTS.sub(" ", st.query).strip()
            inner = _EXPLAIN_PREFIX.sub("", text, count=1)
            if inner == text:
                raise StoreError("evoagent sql is read-only: refused an EXPLAIN it cannot check")
            if inner.strip():
                check_read_only(con, inner)


class SnapshotStore(Store):
    """A read-only view of a store through its latest published snapshot.

    Queries run in a private in-memory DuckDB whose ``raw`` tables are views
    over the Parquet parts, under the same stable views as the live store.
    """

    def __init__(self, store_path: str | Path):
        self.path = str(store_path)
        self.read_only = True
        folder = snapshot_dir(store_path)
        manifest = _read_manifest(folder)
        if manifest is None:
            if not Path(self.path).exists():
                raise StoreError(f"no store at {self.path}")
            raise StoreError(f"store {self.path} has no snapshot yet; wait for its first commit")
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(
                f"snapshot of {self.path} has schema v{manifest.get('schema_version')}, "
                f"this evoagent reads v{SCHEMA_VERSION}; upgrade it with: evoagent migrate {self.path}"
            )
        self.published_at = manifest.get("published_at")
        self._con = duckdb.connect(":memory:")
        self._con.execute("CREATE SCHEMA raw")
        for name, cols in RAW_TABLES.items():
            parts = [str(folder / p) for p in manifest["tables"].get(name, {}).get("parts", [])]
            if parts:
                listing = ", ".join(f"'{p}'" for p in parts)
                self._con.execute(f"CREATE VIEW raw.{name} AS SELECT * FROM read_parquet([{listing}])")
            else:
                self._con.execute(f"CREATE TABLE raw.{name} ({cols})")
        create_views(self._con)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        check_read_only(self._con, sql)
        try:
            return self._con.sql(sql, params=params or None).to_arrow_table()
        except duckdb.Error as exc:
            raise StoreError(f"query failed: {str(exc).splitlines()[0]}") from None

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise StoreError(f"{self.path} is opened read-only")

    put_meta = add_tasks = write = plan_generation = commit_items = commit_generation = append_ledger = _refuse  # type: ignore[assignment]

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self._con.close()
