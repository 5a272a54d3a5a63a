"""Turn a MySQL dump (the bundled Spider dev databases, or the user's own) into one DuckDB file.

InterCode ran its agents against MySQL 8; we want the same data without a
server. The dump is read by our own parser (``mysqldump``, no MySQL needed),
each database becomes one DuckDB schema, and column metadata (MySQL type, key,
default, extra) is kept in ``evoagent_meta.columns`` so that ``DESCRIBE`` can
answer the way MySQL did. The file is built once into
a cache named by a hash of the dump and the builder version, written to a
temporary name and renamed, so concurrent builders never see a half-written
database. A dump that cannot be loaded is one ``UserError`` naming the place.
"""
from __future__ import annotations

import datetime as _dt
import decimal
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from evoagent.envs.intercode_sql.mysqldump import (  # noqa: F401 - parse_values/split_statements re-exported
    Column, DumpError, Table, parse_dump, parse_values, split_statements, unescape_mysql)
from evoagent.envs.files import read_bounded
from evoagent.errors import UserError

BUILDER_VERSION = "4"
META_SCHEMA = "evoagent_meta"
DUMP_PATH = Path(__file__).resolve().parents[2] / "data" / "intercode_sql" / "ic_spider_dbs.sql.gz"
#: Largest dump we load (decompressed): every row is held in memory while building.
MAX_DUMP_BYTES = 512 * 2**20
# Schema names DuckDB itself uses: a MySQL database cannot take them here.
_RESERVED_DBS = {"main", "information_schema", "pg_catalog", "temp", "system", META_SCHEMA}

#: Seconds the last build in this process took (None: the cache was used).
last_build_seconds: float | None = None
# (cache, dump path, mtime, size) -> built file: a dump seen unchanged in this process is not hashed again.
_seen: dict[tuple[str, str, int, int], Path] = {}


# -- types ----------------------------------------------------------------------------
def duck_type(mysql_type: str) -> str:
    """The DuckDB type whose Python values print like mysql-connector's."""
    t = mysql_type.lower()
    base = re.match(r"\w+", t).group(0)  # type: ignore[union-attr]
    if base in ("int", "integer", "mediumint", "smallint", "tinyint", "bool", "boolean", "year"):
        return "INTEGER" if "unsigned" not in t else "BIGINT"
    if base in ("bigint", "serial", "bit"):
        return "HUGEINT" if "unsigned" in t else "BIGINT"
    if base in ("decimal", "numeric", "dec", "fixed"):
        m = re.search(r"\((\d+)\s*(?:,\s*(\d+))?\)", t)
        p, s = (min(int(m.group(1)), 38), int(m.group(2) or 0)) if m else (10, 0)
        return f"DECIMAL({max(p, 1)},{min(s, max(p, 1))})"
    if base in ("double", "float", "real"):
        return "DOUBLE"
    if base == "date":
        return "DATE"
    if base in ("datetime", "timestamp"):
        return "TIMESTAMP"
    return "VARCHAR"


_DATE_RE = re.compile(r"\s*(\d{1,4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,6}))?)?\s*$")


def _convert(value: object, dtype: str) -> object:
    if value is None:
        return None
    if dtype in ("INTEGER", "BIGINT", "HUGEINT"):
        if isinstance(value, int):
            return value
        # MySQL rounds a fraction stored in an integer column half away from zero (2.5 -> 3)
        return int(decimal.Decimal(str(value).strip()).to_integral_value(decimal.ROUND_HALF_UP))
    if dtype == "DOUBLE":
        return float(value)  # type: ignore[arg-type]
    if dtype.startswith("DECIMAL"):  # MySQL rounds extra fraction digits half away from zero
        scale = int(dtype.rstrip(")").rsplit(",", 1)[1])
        return decimal.Decimal(str(value).strip()).quantize(decimal.Decimal(1).scaleb(-scale), decimal.ROUND_HALF_UP)
    if dtype in ("DATE", "TIMESTAMP"):
        m = _DATE_RE.match(str(value))
        if m is None:
            raise ValueError(f"not a date: {value!r}")
        parts = [int(x) for x in m.groups()[:6] if x is not None]
        if parts[:3] == [0, 0, 0] or 0 in parts[1:3]:
            return None  # MySQL's zero date; mysql-connector returns None for it
        if dtype == "DATE":
            return _dt.date(*parts[:3])
        return _dt.datetime(*parts, int((m.group(7) or "0").ljust(6, "0")))
    return str(value)


def _arrow_type(dtype: str) -> pa.DataType:
    if dtype == "INTEGER":
        return pa.int32()
    if dtype == "BIGINT":
        return pa.int64()
    if dtype == "HUGEINT":
        return pa.decimal128(38, 0)  # DuckDB casts it to HUGEINT on insert
    if dtype == "DOUBLE":
        return pa.float64()
    if dtype.startswith("DECIMAL"):
        p, s = re.findall(r"\d+", dtype)
        return pa.decimal128(int(p), int(s))
    if dtype == "DATE":
        return pa.date32()
    if dtype == "TIMESTAMP":
        return pa.timestamp("us")
    return pa.string()


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _column_array(t: Table, i: int, dtype: str) -> pa.Array:
    values = []
    for r in t.rows:
        try:
            values.append(_convert(r[i], dtype))
        except (ValueError, TypeError, OverflowError, ArithmeticError):
            raise DumpError(f"table `{t.db}`.`{t.name}`, column `{t.columns[i].name}` "
                            f"({t.columns[i].mysql_type}): cannot store {str(r[i])[:40]!r}") from None
    try:
        return pa.array(values, type=_arrow_type(dtype))
    except (pa.ArrowException, OverflowError) as err:
        raise DumpError(f"table `{t.db}`.`{t.name}`, column `{t.columns[i].name}` "
                        f"({t.columns[i].mysql_type}): {str(err).splitlines()[0][:120]}") from None


def load_into(con: duckdb.DuckDBPyConnection, tables: list[Table]) -> None:
    """Create one schema per database and bulk-load every table via Arrow."""
    meta_rows: list[tuple] = []
    for t in tables:
        if t.db.lower() in _RESERVED_DBS:
            raise DumpError(f"database name `{t.db}` is reserved in DuckDB; rename it in the dump and the tasks")
    try:
        for db in dict.fromkeys(t.db for t in tables):
            con.execute(f"CREATE SCHEMA {_qi(db)}")
        for t in tables:
            types = [duck_type(c.mysql_type) for c in t.columns]
            cols = ", ".join(f"{_qi(c.name)} {ty}" for c, ty in zip(t.columns, types))
            con.execute(f"CREATE TABLE {_qi(t.db)}.{_qi(t.name)} ({cols})")
            arrays = [_column_array(t, i, ty) for i, ty in enumerate(types)]
            batch = pa.table(arrays, names=[f"c{i}" for i in range(len(types))])  # noqa: F841 (used by SQL)
            con.execute(f"INSERT INTO {_qi(t.db)}.{_qi(t.name)} SELECT * FROM batch")
            for i, c in enumerate(t.columns):
                meta_rows.append((t.db, t.name, i, c.name, c.mysql_type, "YES" if c.nullable else "NO",
                                  c.key, c.default, c.extra))
    except duckdb.Error as err:
        raise DumpError(str(err).splitlines()[0][:200]) from None
    con.execute(f"CREATE SCHEMA {META_SCHEMA}")
    con.execute(f"CREATE TABLE {META_SCHEMA}.columns (db VARCHAR, tbl VARCHAR, ordinal INTEGER, field VARCHAR,"
                " type VARCHAR, nullable VARCHAR, key VARCHAR, dflt VARCHAR, extra VARCHAR)")
    con.executemany(f"INSERT INTO {META_SCHEMA}.columns VALUES (?,?,?,?,?,?,?,?,?)", meta_rows)


# -- the cache ----------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$EVOAGENT_CACHE_DIR`` or ``~/.cache/evoagent``."""
    env = os.environ.get("EVOAGENT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "evoagent"


def _dump_stem(dump: Path) -> str:
    name = dump.name
    for suffix in (".gz", ".sql"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name


def database_path(dump: Path | str | None = None) -> Path:
    """Path of the DuckDB file built from ``dump`` (default: the bundled Spider dev
    databases), building it first if the cache lacks it."""
    global last_build_seconds
    dump = Path(dump) if dump else DUMP_PATH
    try:
        st = dump.stat()
        seen = (str(cache_dir()), str(dump.resolve()), st.st_mtime_ns, st.st_size)
        if seen in _seen and _seen[seen].exists():
            return _seen[seen]
        if st.st_size > MAX_DUMP_BYTES:
            raise UserError(f"{dump}: SQL dump larger than {MAX_DUMP_BYTES // 2**20} MiB (the most evoagent reads)")
        raw = dump.read_bytes()
    except OSError as err:
        raise UserError(f"{dump}: {'no such file' if not dump.exists() else err.strerror or err}") from None
    digest = hashlib.sha256(raw + BUILDER_VERSION.encode()).hexdigest()[:16]
    target = cache_dir() / f"intercode_sql-{digest}.duckdb"
    if target.exists():
        _seen[seen] = target
        return target
    t0 = time.perf_counter()
    data = read_bounded(dump, MAX_DUMP_BYTES, "SQL dump")
    try:
        tables = parse_dump(data.decode("utf-8"), default_db=_dump_stem(dump))
    except UnicodeDecodeError as err:
        raise UserError(f"{dump}: not UTF-8 text (byte {err.start})") from None
    except DumpError as err:
        raise UserError(f"{dump}: {err}") from None
    if not tables:
        raise UserError(f"{dump}: no CREATE TABLE found; is it a MySQL dump?")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise UserError(f"cannot write the database cache in {target.parent}: {err.strerror or err}") from None
    os.close(fd)
    os.unlink(tmp)  # DuckDB wants to create the file itself
    try:
        con = duckdb.connect(tmp)
        try:
            load_into(con, tables)
            con.execute("CHECKPOINT")
        except DumpError as err:
            raise UserError(f"{dump}: {err}") from None
        finally:
            con.close()
        os.replace(tmp, target)  # atomic; a concurrent builder's identical file is equally good
    finally:
        for leftover in (tmp, tmp + ".wal"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    last_build_seconds = time.perf_counter() - t0
    _seen[seen] = target
    return target


def catalog(db_file: Path) -> dict[str, dict[str, list[str]]]:
    """Database -> table -> column names of a built file (for task schemas).

    Read through a private in-memory connection that attaches the file read-only, so it
    works while an environment holds the file open with its own configuration."""
    con = duckdb.connect(":memory:")
    try:
        path = str(db_file).replace("'", "''")
        con.execute(f"ATTACH '{path}' AS built (READ_ONLY)")
        rows = con.execute(f"SELECT db, tbl, field FROM built.{META_SCHEMA}.columns "
                           "ORDER BY db, tbl, ordinal").fetchall()
    finally:
        con.close()
    out: dict[str, dict[str, list[str]]] = {}
    for db, tbl, col in rows:
        out.setdefault(db, {}).setdefault(tbl, []).append(col)
    return out
