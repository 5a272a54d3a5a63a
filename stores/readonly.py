"""Read-only access to a store, for `evoagent sql`, `status`, `export` and library readers.

The defence is the connection, not the statement's text. Every reader runs on a
DuckDB connection that, before it answers anything, has external access
disabled (SQL can neither read nor write a file, attach a database, install or
load an extension), no spilling to a temporary directory, no scans of Python
variables, extension autoloading off and its configuration locked, so that no
statement can turn any of it back on (``SET``, ``PRAGMA``, ``enable_profiling``,
``enable_logging`` all fail). The snapshot's Parquet parts reach DuckDB as Arrow
datasets read by pyarrow, never through DuckDB's file system: DuckDB's
``allowed_paths`` would also let ``COPY ... TO`` overwrite the very files it
allows. The text check (:func:`check_read_only`) only gives a clear message for
what the connection would refuse anyway; exactly one statement runs per call.

Writes that a reader does make on the user's behalf (``export``, ``sql --out``)
are made by Python, after :func:`refuse_store_paths` has ruled out the store
file, its WAL and its snapshot folder.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from stores.base import StoreError, StoreReader
from stores.schema import SCHEMA_VERSION, VIEWS

if TYPE_CHECKING:  # Arrow loads when a result is fetched as Arrow: `evoagent sql` prints a table without it
    import pyarrow as pa

# Statement types `evoagent sql` accepts; everything else could modify something.
READ_STATEMENTS = {"SELECT", "EXPLAIN", "RELATION"}
_LOCKDOWN = (
    "SET temp_directory = ''",  # no spill files (must come before external access is cut)
    "SET python_enable_replacements = false",
    "SET autoload_known_extensions = false",
    "SET autoinstall_known_extensions = false",
    "SET allow_unsigned_extensions = false",
    "SET allow_community_extensions = false",
    "SET enable_external_access = false",
    "SET lock_configuration = true",
)
_BATCH_ROWS = 65_536


def snapshot_dir(store_path: str | Path) -> Path:
    """Where a store's Parquet snapshot lives: ``PATH.snapshot/`` beside the file."""
    return Path(f"{store_path}.snapshot")


def sql_string(value: str | Path) -> str:
    """A SQL string literal (for the few places DuckDB takes no parameter, e.g. COPY's target)."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_name(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


READER_MEMORY_LIMIT = "2GB"  # a reader never takes the machine: DuckDB fails the query instead


def connect_locked(database: str, *, read_only: bool = False, threads: int | None = None,
                   memory_limit: str = READER_MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    """A connection that cannot touch any file but ``database`` (opened read-only if asked).

    No ``allowed_paths``: DuckDB lets a statement write the paths it allows as well as read
    them (``COPY ... TO`` a snapshot part overwrote it), so a snapshot's parts reach DuckDB
    as Arrow datasets, read by pyarrow (see ``stores.snapshot``)."""
    config: dict[str, Any] = {"threads": threads} if threads else {}
    config["memory_limit"] = memory_limit
    con = duckdb.connect(database, read_only=read_only, config=config)
    locked = con.execute("SELECT current_setting('lock_configuration')").fetchall()[0][0]
    if locked:
        # The same file already open in this process shares our instance: it must be ours.
        if con.execute("SELECT current_setting('enable_external_access')").fetchall()[0][0]:
            con.close()
            raise StoreError(f"{database} is open in this process with external access enabled")
        return con
    for statement in _LOCKDOWN:
        con.execute(statement)
    return con


def _explained(text: str) -> str | None:
    """The statement an EXPLAIN runs, cut with DuckDB's own tokenizer (comments nest as the
    parser's do; a regex cannot see that ``/* /* */ x */`` is one comment)."""
    tokens = [pos for pos, kind in duckdb.tokenize(text) if kind != duckdb.token_type.comment]
    if not tokens or not text[tokens[0]:].upper().startswith("EXPLAIN"):
        return None
    i = 1
    word = text[tokens[i]:tokens[i] + 7].upper() if i < len(tokens) else ""
    if word.startswith(("ANALYZE", "ANALYSE")):
        i += 1
    elif word.startswith("("):  # EXPLAIN (option, ...) statement
        depth = 0
        while i < len(tokens):
            ch = text[tokens[i]]
            depth += (ch == "(") - (ch == ")")
            i += 1
            if depth == 0:
                break
    return text[tokens[i]:] if i < len(tokens) else None


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse, with a one-line reason, anything but exactly one reading statement.

    A courtesy: the locked connection refuses writes whatever this lets through."""
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
            inner = _explained(st.query)
            if inner is None:
                raise StoreError("evoagent sql is read-only: refused an EXPLAIN it cannot check")
            check_read_only(con, inner)
    if len(statements) > 1:
        raise StoreError(f"give exactly one SQL statement, not {len(statements)} (evoagent sql runs one per call)")


def query_error(exc: duckdb.Error) -> StoreError:
    line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, duckdb.PermissionException):
        return StoreError(f"evoagent sql reads the store and no other file: refused ({line})")
    if "configuration has been locked" in line:
        return StoreError(f"evoagent sql is read-only, settings included: refused ({line})")
    return StoreError(f"query failed: {line}")


def _resolved(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def store_paths(store_path: str | Path) -> list[Path]:
    """Everything that belongs to a store: the file, its WAL and temp folder, its snapshot."""
    base = str(store_path)
    return [Path(base), Path(base + ".wal"), Path(base + ".tmp"), snapshot_dir(base)]


def refuse_store_paths(store_path: str | Path, target: str | Path, *, replaced: bool = True) -> None:
    """Refuse an output path that is, or is inside, the store or its snapshot, or (when it is to
    be replaced whole) contains them."""
    t = _resolved(target)
    for p in store_paths(store_path):
        r = _resolved(p)
        same = t == r or (t.exists() and r.exists() and os.path.samefile(t, r))
        if same or r in t.parents or (replaced and t in r.parents):
            raise StoreError(f"refusing to write {target}: it would overwrite the store {store_path} "
                             "or its snapshot; choose a path outside them")


def parquet_safe(rel: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """The relation with every column that Parquet (through pyarrow) cannot hold, e.g. an
    INTERVAL or a UNION, turned into DuckDB's own text for it; other columns untouched."""
    try:
        schema = rel.limit(0).to_arrow_table().schema
    except duckdb.Error as exc:
        raise query_error(exc) from None
    import pyarrow as pa
    import pyarrow.parquet as pq

    exprs, changed = [], False
    for i, field in enumerate(schema):
        try:
            pq.ParquetWriter(pa.BufferOutputStream(), pa.schema([field])).close()
            exprs.append(f"#{i + 1} AS {sql_name(field.name)}")
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, TypeError):
            exprs.append(f"CAST(#{i + 1} AS VARCHAR) AS {sql_name(field.name)}")
            changed = True
    return rel.project(", ".join(exprs)) if changed else rel


def write_parquet_file(reader: pa.RecordBatchReader, path: str | Path) -> None:
    """Stream batches into one Parquet file (a valid file with the schema when there are none)."""
    import pyarrow.parquet as pq

    with pq.ParquetWriter(str(path), reader.schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_batch(batch)


def _is_export(path: Path) -> bool:
    """Whether ``path`` looks like something export wrote (so replacing it loses nothing else)."""
    if path.is_symlink():
        return False
    if path.is_file():
        return path.suffix == ".parquet"
    for root, dirs, files in os.walk(path):
        if any(Path(root, d).is_symlink() or "=" not in d for d in dirs):
            return False
        if any(not f.endswith(".parquet") or Path(root, f).is_symlink() for f in files):
            return False
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class ReadOnlyStore(StoreReader):
    """A store opened for reading on a locked-down connection (see the module docstring).

    It implements only :class:`StoreReader`: it has no write methods at all.
    """

    source = "?"

    def __init__(self, path: str | Path, con: duckdb.DuckDBPyConnection):
        self.path = str(path)
        self.read_only = True
        self._con = con

    def relation(self, sql: str, params: Sequence[Any] | None = None) -> duckdb.DuckDBPyRelation:
        """One checked reading statement as a DuckDB relation (so output keeps DuckDB's types)."""
        check_read_only(self._con, sql)
        try:
            rel = self._con.sql(sql, params=params or None)
        except duckdb.Error as exc:
            raise query_error(exc) from None
        if rel is None:
            raise StoreError("the statement returned no result")
        return rel

    def fetch(self, rel: duckdb.DuckDBPyRelation, how: str = "to_arrow_table", *args: Any) -> Any:
        """Run a relation's fetch method, turning DuckDB errors into one-line StoreErrors."""
        try:
            return getattr(rel, how)(*args)
        except duckdb.Error as exc:
            raise query_error(exc) from None

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        return self.fetch(self.relation(sql, params))

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        """The first value of the first row, fetched as Python (no Arrow: ``evoagent status`` loads none)."""
        rows = self.fetch(self.relation(sql, params), "fetchall")
        return rows[0][0] if rows else None

    def export(self, name: str, out_dir: str, partition_by: Sequence[str] = ("campaign", "generation")) -> str:
        """Write a view as Parquet under ``out_dir``: a hive-partitioned folder ``out_dir/NAME/``
        where its partition columns are all set, else ``out_dir/NAME.parquet``. An empty view is
        a folder with one empty file that has every column. Replaces an earlier export whole."""
        if name not in VIEWS:
            raise StoreError(f"unknown view {name!r} (have {', '.join(VIEWS)})")
        rel = parquet_safe(self.relation(f"SELECT * FROM {sql_name(name)}"))
        cols = rel.columns
        candidates = [c for c in partition_by if c in cols]
        nulls = self.fetch(self._con.sql(
            "SELECT count(*) AS n" + "".join(f", count(*) FILTER (WHERE {sql_name(c)} IS NULL)" for c in candidates)
            + f" FROM {sql_name(name)}"), "fetchall")[0]
        parts = [c for c, n in zip(candidates, nulls[1:]) if n == 0]
        out = Path(out_dir)
        target = out / (name if parts else f"{name}.parquet")
        refuse_store_paths(self.path, out, replaced=False)
        for p in (target, out / (f"{name}.parquet" if parts else name)):
            refuse_store_paths(self.path, p)
        if out.exists() and not out.is_dir():
            raise StoreError(f"--out {out_dir} is a file; give a folder")
        out.mkdir(parents=True, exist_ok=True)
        staging = out / f".{name}.partial-{os.getpid()}"
        _remove(staging)
        try:
            reader = self.fetch(rel, "to_arrow_reader", _BATCH_ROWS)
            if not parts:
                write_parquet_file(reader, staging)
            elif nulls[0] == 0:
                staging.mkdir()
                write_parquet_file(reader, staging / "part-0.parquet")
            else:
                import pyarrow as pa
                import pyarrow.dataset as ds  # loads pandas: only for a partitioned export

                fields = [reader.schema.field(c) for c in parts]
                ds.write_dataset(
                    reader, staging, format="parquet", basename_template="part-{i}.parquet",
                    partitioning=ds.partitioning(pa.schema(fields), flavor="hive"),
                    file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
                    max_partitions=1 << 20, existing_data_behavior="error",
                )
            self._replace(target, staging, other=out / (f"{name}.parquet" if parts else name))
        except BaseException:
            _remove(staging)
            raise
        return str(target)

    @staticmethod
    def _replace(target: Path, staging: Path, other: Path) -> None:
        """Move the finished export into place; an earlier export (of either shape) goes."""
        for old in (target, other):
            if (old.exists() or old.is_symlink()) and not _is_export(old):
                raise StoreError(f"{old} exists and is not an evoagent export; move it or choose another --out")
        aside = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            os.replace(target, aside)
        os.replace(staging, target)
        _remove(aside)
        _remove(other)

    def close(self) -> None:
        self._con.close()


class WriterActive(Exception):
    """The store file is held by a writer (this process or another): read the snapshot."""


class FileStore(ReadOnlyStore):
    """The store file itself, opened read-only (only possible while no writer holds it).

    Always as fresh as the last commit, e.g. of a campaign killed before it published any
    snapshot. It holds DuckDB's shared lock while open, so a writer cannot start meanwhile:
    close it promptly (the CLI does, after its one query)."""

    source = "file"

    def __init__(self, path: str | Path, *, threads: int | None = None, memory_limit: str = READER_MEMORY_LIMIT):
        try:
            con = connect_locked(str(path), read_only=True, threads=threads, memory_limit=memory_limit)
        except duckdb.ConnectionException:
            raise WriterActive(str(path)) from None  # open in this process with another configuration
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise WriterActive(str(path)) from None
            raise StoreError(f"{path} is not an evoagent store ({str(exc).splitlines()[0]})") from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open store {path}: {str(exc).splitlines()[0]}") from None
        super().__init__(path, con)
        try:
            self._check_version()
            for view, body in VIEWS.items():  # ours, whatever version last wrote the file's views
                con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS {body}")
        except BaseException:
            con.close()
            raise

    def _check_version(self) -> None:
        has = self._con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'raw' AND table_name = 'migrations'"
        ).fetchall()[0][0]
        if not has:
            raise StoreError(f"{self.path} is not an evoagent store (a DuckDB file without its tables)")
        version = int(self._con.execute("SELECT max(version) FROM raw.migrations").fetchall()[0][0] or 0)
        if version < SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema v{version}, this evoagent reads v{SCHEMA_VERSION}; "
                             f"upgrade it with: evoagent migrate {self.path}")
        if version > SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema v{version}, newer than this evoagent "
                             f"(v{SCHEMA_VERSION}); upgrade evoagent")
