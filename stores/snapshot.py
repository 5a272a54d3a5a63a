"""Parquet snapshots: how readers see a store while a writer holds the live file.

The writer publishes, next to ``store.duckdb``, a folder ``store.duckdb.snapshot/``
holding one Parquet part per table per publish and a ``manifest.json`` naming
the parts. Raw tables are append-only, so a publish writes only the rows added
since the last one (``rowid`` above the last exported), inside one read
transaction so that all tables show the same moment. The manifest is replaced
atomically (write + rename) after the parts are on disk, so a reader sees either
the old snapshot or the new one, and a crash mid-publish leaves only unreferenced
parts that the next publish overwrites. A new store publishes an empty snapshot
at once, so a reader always finds one.

A snapshot folder may come from someone else: the manifest is untrusted input.
Part names must match ``raw/<table>/part-<seq>.parquet``, be regular files inside
the folder and readable Parquet with the table's columns; anything else makes
the snapshot "damaged": readers say so in one line, and the next writer
(``evoagent resume`` / ``migrate``) rebuilds it whole from the live file.
"""
from __future__ import annotations

import functools
import json
import os
import re
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from stores.base import StoreError
from stores.readonly import (
    READ_STATEMENTS, FileStore, ReadOnlyStore, WriterActive, _remove, check_read_only, connect_locked,
    snapshot_dir, sql_string,
)
from stores.schema import RAW_TABLES, SCHEMA_VERSION, create_views

if TYPE_CHECKING:  # Arrow loads to check a snapshot's parts, not for the store file
    import pyarrow as pa

__all__ = [
    "MANIFEST", "READ_STATEMENTS", "DamagedSnapshot", "SnapshotStore", "SnapshotWriter", "check_read_only",
    "load_manifest", "open_reader", "snapshot_dir",
]

MANIFEST = "manifest.json"
_MANIFEST_MAX_BYTES = 64 << 20
_PART = re.compile(r"raw/([a-z_][a-z0-9_]*)/part-[0-9]{8,12}\.parquet")


class DamagedSnapshot(Exception):
    """The snapshot folder is not one a writer of this version published (see module docstring)."""


@functools.cache
def raw_columns() -> dict[str, frozenset[str]]:
    """Column names of each raw table, from its DDL (what every part of it must hold)."""
    con = duckdb.connect(":memory:")
    try:
        out = {}
        for name, cols in RAW_TABLES.items():
            con.execute(f"CREATE TABLE _{name} ({cols})")
            out[name] = frozenset(con.sql(f"SELECT * FROM _{name}").columns)
        return out
    finally:
        con.close()


def _int(value: Any, what: str, low: int) -> int:
    if type(value) is not int or value < low:
        raise DamagedSnapshot(f"{what} is not an integer >= {low}")
    return value


def _read_json(path: Path) -> Any:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise DamagedSnapshot(f"{MANIFEST} is not a regular file")
    with open(path, "rb") as fh:
        data = fh.read(_MANIFEST_MAX_BYTES + 1)
    if len(data) > _MANIFEST_MAX_BYTES:
        raise DamagedSnapshot(f"{MANIFEST} is over {_MANIFEST_MAX_BYTES >> 20} MiB")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # ValueError covers JSON and UTF-8 errors
        raise DamagedSnapshot(f"{MANIFEST} is not JSON ({str(exc)[:80]})") from None


def _check_part(folder: Path, root: str, table: str, rel: Any, columns: frozenset[str]) -> tuple[Path, pa.Schema]:
    """A part named by the manifest, or DamagedSnapshot: pattern, place, file type, Parquet, columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    m = _PART.fullmatch(rel) if isinstance(rel, str) else None
    if m is None or m.group(1) != table:
        raise DamagedSnapshot(f"part name {str(rel)[:80]!r} of {table} is not raw/{table}/part-N.parquet")
    path = folder / rel
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise DamagedSnapshot(f"part {rel} is not a regular file")
    except FileNotFoundError:
        raise DamagedSnapshot(f"part {rel} is missing") from None
    if not os.path.realpath(path).startswith(root):
        raise DamagedSnapshot(f"part {rel} lies outside the snapshot folder")
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise DamagedSnapshot(f"part {rel} is not readable Parquet ({str(exc).splitlines()[0][:80]})") from None
    if frozenset(schema.names) != columns or len(schema.names) != len(columns):
        raise DamagedSnapshot(f"part {rel} does not have the columns of {table}")
    return path, schema


def load_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, validated (None if there is none); DamagedSnapshot otherwise.

    A manifest of another schema version is returned as read (its tables unchecked): the
    caller tells the user to migrate, or republishes. Checked parts come back under
    ``_files``: table -> (paths, schema)."""
    import pyarrow as pa

    manifest = _read_json(folder / MANIFEST)
    if manifest is None:
        return None
    if not isinstance(manifest, dict):
        raise DamagedSnapshot(f"{MANIFEST} is not an object")
    _int(manifest.get("schema_version"), "schema_version", 0)
    _int(manifest.get("seq"), "seq", 0)
    if not isinstance(manifest.get("published_at", 0), (int, float)) or isinstance(manifest.get("published_at"), bool):
        raise DamagedSnapshot("published_at is not a number")
    tables = manifest.get("tables")
    if not isinstance(tables, dict):
        raise DamagedSnapshot("tables is not an object")
    if manifest["schema_version"] != SCHEMA_VERSION:
        return manifest
    unknown = set(tables) - set(RAW_TABLES)
    if unknown:
        raise DamagedSnapshot(f"unknown table {sorted(unknown)[0][:40]!r}")
    root = os.path.join(os.path.realpath(folder), "")
    files: dict[str, tuple[list[Path], pa.Schema]] = {}
    for table, entry in tables.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("parts"), list):
            raise DamagedSnapshot(f"entry of {table} has no list of parts")
        _int(entry.get("max_rowid"), f"max_rowid of {table}", -1)
        if len(set(map(str, entry["parts"]))) != len(entry["parts"]):
            raise DamagedSnapshot(f"{table} names a part twice")
        checked = [_check_part(folder, root, table, rel, raw_columns()[table]) for rel in entry["parts"]]
        # DuckDB marks a column "not null" in a part that happens to hold no null: compare
        # names and types only, and read every part as nullable.
        shapes = {tuple((f.name, f.type) for f in schema) for _, schema in checked}
        if len(shapes) > 1:
            raise DamagedSnapshot(f"the parts of {table} do not share one schema")
        if checked:
            schema = pa.schema([f.with_nullable(True) for f in checked[0][1]])
            files[table] = ([p for p, _ in checked], schema)
    manifest["_files"] = files
    return manifest


def _damaged_message(path: str, exc: Exception) -> str:
    return (f"the snapshot of {path} is damaged ({exc}); rebuild it from the store file with: "
            f"evoagent migrate {path} (or evoagent resume {path})")


# The writer hands the publisher the Arrow rows it appended, so that a publish encodes them
# as they are instead of reading them back out of DuckDB (COPY was most of a generation's
# publish). Only tables whose part types are those of DuckDB's own COPY (checked by
# load_manifest: all parts of a table share one schema), and only rows of exactly those types:
# rows of other types were cast by DuckDB on insert, and Arrow's cast may differ (a TIMESTAMPTZ
# becomes the session's local time in DuckDB, stays UTC in Arrow). At most this much is held.
_BUFFER_MAX_BYTES = 256 << 20


@functools.cache
def _buffered() -> dict[str, pa.Schema]:
    from stores.batch import LINEAGE_SCHEMA, REWARD_SCHEMA, STEP_SCHEMA, TRAJECTORY_SCHEMA

    return {"trajectories": TRAJECTORY_SCHEMA, "steps": STEP_SCHEMA, "lineage": LINEAGE_SCHEMA,
            "rewards": REWARD_SCHEMA}


class SnapshotWriter:
    """Publishes increments of the raw tables; throttled by ``every_s``.

    A damaged snapshot, or one of another schema version (after a migration the raw tables
    changed shape), is dropped and published anew, whole, by the next publish.

    A table's new rows are written from the Arrow rows the writer appended (:meth:`buffer`)
    when those are exactly the rows above the last published rowid (their count is checked
    against the table's, and the writer calls :meth:`skip` for rows it inserted by SQL);
    otherwise, or for the other tables, DuckDB copies them out."""

    def __init__(self, folder: Path, every_s: float = 5.0):
        self.folder = folder
        self.every_s = every_s
        self._last = 0.0
        self._dirty = False
        try:
            manifest = load_manifest(folder)
        except DamagedSnapshot:
            manifest = {"schema_version": -1, "seq": 0, "tables": {}}
        if manifest is not None and manifest["schema_version"] != SCHEMA_VERSION:
            _remove(folder / "raw")
            manifest = {"schema_version": SCHEMA_VERSION, "seq": manifest["seq"], "tables": {}}
            self._dirty = True
        if manifest is not None:
            manifest.pop("_files", None)
        self._manifest = manifest or {"schema_version": SCHEMA_VERSION, "seq": 0, "tables": {}}
        self._rows: dict[str, list[pa.Table]] = {}
        self._bytes = 0
        self._overflow: set[str] = set()  # tables whose rows since the last publish were not all kept

    def buffer(self, name: str, rows: pa.Table) -> None:
        """Rows just committed to ``raw.<name>``, in the order appended (columns in table order)."""
        schema = _buffered().get(name)
        if schema is None or name in self._overflow:
            return
        if rows.schema != schema or self._bytes + rows.nbytes > _BUFFER_MAX_BYTES:
            self.skip(name)
            return
        self._rows.setdefault(name, []).append(rows)
        self._bytes += rows.nbytes

    def skip(self, name: str) -> None:
        """Rows were committed to ``raw.<name>`` without being buffered: its held rows are released,
        and its rows since the last publish go by COPY."""
        self._overflow.add(name)
        self._bytes -= sum(t.nbytes for t in self._rows.pop(name, ()))

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
                held = self._rows.get(name, [])
                if held and name not in self._overflow and sum(t.num_rows for t in held) == top - entry["max_rowid"]:
                    import pyarrow as pa
                    import pyarrow.parquet as pq

                    # zstd level 1, not snappy: bench_peers' 600k-trajectory store took 351 MB with it, 437 MB
                    # with snappy (DuckDB's own COPY, zstd: 340 MB), at no visible cost in the writer's CPU
                    pq.write_table(pa.concat_tables(held), self.folder / rel, compression="zstd",
                                   compression_level=1, store_schema=False)
                else:
                    con.execute(
                        f"COPY (SELECT * FROM raw.{name} WHERE rowid > ? AND rowid <= ? ORDER BY rowid) "
                        f"TO {sql_string(self.folder / rel)} (FORMAT parquet, COMPRESSION zstd)",
                        [entry["max_rowid"], top],
                    )
                entry["parts"].append(rel)
                entry["max_rowid"] = top
                changed = True
        finally:
            con.execute("COMMIT")
        if changed or self._dirty or not (self.folder / MANIFEST).exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            manifest["seq"] = seq
            manifest["published_at"] = time.time()
            tmp = self.folder / f".{MANIFEST}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(manifest))
            os.replace(tmp, self.folder / MANIFEST)
            self._manifest = manifest
            self._dirty = False
        self._rows.clear()  # published, from them or by COPY
        self._bytes = 0
        self._overflow.clear()
        return changed


class SnapshotStore(ReadOnlyStore):
    """A read-only view of a store through its latest published snapshot.

    Queries run in a private, locked-down in-memory DuckDB whose ``raw`` tables are
    views over Arrow datasets of the checked Parquet parts, under the same stable
    views as the live store. An open reader keeps the snapshot it opened.
    """

    source = "snapshot"

    def __init__(self, store_path: str | Path, *, threads: int | None = None, memory_limit: str | None = None):
        path = str(store_path)
        folder = snapshot_dir(store_path)
        try:
            manifest = load_manifest(folder)
        except DamagedSnapshot as exc:
            raise StoreError(_damaged_message(path, exc)) from None
        except OSError as exc:
            raise StoreError(f"cannot read the snapshot of {path}: {exc.strerror or exc}") from None
        if manifest is None:
            if not Path(path).exists():
                raise StoreError(f"no store at {path}")
            raise StoreError(f"store {path} has no snapshot yet; it is published when the store is next opened "
                             f"for writing (evoagent resume {path})")
        if manifest["schema_version"] != SCHEMA_VERSION:
            raise StoreError(
                f"snapshot of {path} has schema v{manifest['schema_version']}, "
                f"this evoagent reads v{SCHEMA_VERSION}; upgrade it with: evoagent migrate {path}"
            )
        self.published_at = manifest.get("published_at")
        import pyarrow.dataset as ds  # it loads pandas: only readers of a snapshot pay for it

        con = connect_locked(":memory:", threads=threads,  # locked before any data is reachable
                             **({"memory_limit": memory_limit} if memory_limit else {}))
        super().__init__(path, con)
        con.execute("CREATE SCHEMA raw")
        for name, cols in RAW_TABLES.items():
            files = manifest["_files"].get(name)
            if files:  # read by pyarrow, never by DuckDB's file system: see connect_locked
                con.register(f"_snapshot_{name}", ds.dataset([str(p) for p in files[0]], schema=files[1],
                                                            format="parquet"))
                con.execute(f"CREATE VIEW raw.{name} AS SELECT * FROM _snapshot_{name}")
            else:
                con.execute(f"CREATE TABLE raw.{name} ({cols})")
        create_views(con)


def open_reader(store_path: str | Path, *, threads: int | None = None,
                memory_limit: str | None = None) -> ReadOnlyStore:
    """The freshest read-only view of a store: the file itself when no writer holds it
    (then closing promptly matters, see :class:`FileStore`), else its snapshot; ``memory_limit``:
    DuckDB's (default ``stores.readonly.READER_MEMORY_LIMIT``)."""
    limit = {"memory_limit": memory_limit} if memory_limit else {}
    p = Path(store_path)
    if p.is_dir():
        raise StoreError(f"{store_path} is a folder, not a store file")
    if p.is_file():
        try:
            return FileStore(store_path, threads=threads, **limit)
        except WriterActive:
            pass
    return SnapshotStore(store_path, threads=threads, **limit)
