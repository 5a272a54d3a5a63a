"""Turn the bundled MySQL dump of the Spider dev databases into one DuckDB file.

InterCode ran its agents against MySQL 8; we want the same data without a
server. The dump is parsed by our own small tokenizer (no MySQL needed), each
database becomes one DuckDB schema, and column metadata (MySQL type, key,
default, extra) is kept in ``evoagent_meta.columns`` so that ``DESCRIBE`` can
answer the way MySQL did. The file is built once into a cache named by a hash
of the dump and the builder version, written to a temporary name and renamed,
so concurrent builders never see a half-written database.
"""
from __future__ import annotations

import datetime as _dt
import decimal
import gzip
import hashlib
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

BUILDER_VERSION = "3"
META_SCHEMA = "evoagent_meta"
DUMP_PATH = Path(__file__).resolve().parents[2] / "data" / "intercode_sql" / "ic_spider_dbs.sql.gz"

#: Seconds the last build in this process took (None: the cache was used).
last_build_seconds: float | None = None

# One statement-level token: quoted strings, comments, ';', or runs of other text.
_STMT_TOKEN = re.compile(
    r"'(?:[^'\\]|\\.|'')*'"
    r'|"(?:[^"\\]|\\.|"")*"'
    r"|`(?:[^`]|``)*`"
    r"|--[^\n]*\n?"
    r"|/\*.*?\*/"
    r"|;"
    r"|[^'\"`;/-]+"
    r"|.",
    re.S,
)
# One token inside VALUES (...),(...).
_VALUE_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.|'')*')"
    r"|(?P<hex>0x[0-9a-fA-F]+)"
    r"|(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<null>NULL)"
    r"|(?P<punct>[(),]))",
    re.I,
)
_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "\\": "\\", "'": "'", '"': '"'}
_ESCAPE_RE = re.compile(r"\\(.)|''", re.S)


def unescape_mysql(body: str) -> str:
    """Decode the inside of a MySQL single-quoted literal (``\\n``, ``\\'``, ``''``...)."""
    if "\\" not in body and "''" not in body:
        return body
    return _ESCAPE_RE.sub(lambda m: "'" if m.group(0) == "''" else _ESCAPES.get(m.group(1), m.group(1)), body)


def split_statements(text: str) -> list[str]:
    """Split a SQL script at top-level semicolons, dropping plain comments."""
    out: list[str] = []
    cur: list[str] = []
    for m in _STMT_TOKEN.finditer(text):
        tok = m.group(0)
        if tok == ";":
            stmt = "".join(cur).strip()
            if stmt:
                out.append(stmt)
            cur = []
        elif tok.startswith("--") or (tok.startswith("/*") and not tok.startswith("/*!")):
            continue
        else:
            cur.append(tok)
    tail = "".join(cur).strip()
    if tail:
        out.append(tail)
    return out


def parse_values(text: str) -> list[list[object]]:
    """Parse ``(v, ...), (v, ...)`` into rows of Python str/int/float/None."""
    rows: list[list[object]] = []
    row: list[object] | None = None
    pos, n = 0, len(text)
    while pos < n:
        m = _VALUE_TOKEN.match(text, pos)
        if m is None:
            if text[pos:].strip() == "":
                break
            raise ValueError(f"cannot parse VALUES near {text[pos:pos + 40]!r}")
        pos = m.end()
        if m.group("punct"):
            p = m.group("punct")
            if p == "(":
                row = []
            elif p == ")":
                if row is None:
                    raise ValueError("unbalanced ')' in VALUES")
                rows.append(row)
                row = None
            continue
        if row is None:
            raise ValueError("value outside a row in VALUES")
        if m.group("str") is not None:
            row.append(unescape_mysql(m.group("str")[1:-1]))
        elif m.group("null"):
            row.append(None)
        elif m.group("hex"):
            row.append(int(m.group("hex"), 16))
        else:
            num = m.group("num")
            row.append(int(num) if re.fullmatch(r"[-+]?\d+", num) else float(num))
    return rows


@dataclass
class Column:
    name: str
    mysql_type: str
    nullable: bool = True
    default: str | None = None
    extra: str = ""
    key: str = ""


@dataclass
class Table:
    db: str
    name: str
    columns: list[Column] = field(default_factory=list)
    rows: list[list[object]] = field(default_factory=list)


_COL_RE = re.compile(r"^`((?:[^`]|``)+)`\s+(\w+(?:\([^)]*\))?(?:\s+unsigned)?)(.*)$", re.I | re.S)


def _parse_create(db: str, stmt: str) -> Table:
    head, _, body = stmt.partition("(")
    name = re.search(r"`((?:[^`]|``)+)`", head).group(1)  # type: ignore[union-attr]
    body = body[: body.rfind(")")]
    table = Table(db, name)
    keys: dict[str, str] = {}
    for line in (ln.strip().rstrip(",") for ln in body.split("\n")):
        if not line:
            continue
        m = _COL_RE.match(line)
        up = line.upper()
        if m:
            rest = m.group(3)
            default = None
            dm = re.search(r"DEFAULT\s+('(?:[^'\\]|\\.|'')*'|\S+)", rest, re.I)
            if dm and dm.group(1).upper() != "NULL":
                d = dm.group(1)
                default = unescape_mysql(d[1:-1]) if d.startswith("'") else d
            extra = "auto_increment" if "AUTO_INCREMENT" in rest.upper() else ""
            if "DEFAULT_GENERATED" in rest.upper() or (default or "").upper() == "CURRENT_TIMESTAMP":
                extra = extra or "DEFAULT_GENERATED"
            table.columns.append(Column(m.group(1), m.group(2).lower(), "NOT NULL" not in rest.upper(),
                                        default, extra))
        elif up.startswith("PRIMARY KEY"):
            for c in re.findall(r"`([^`]+)`", line):
                keys[c] = "PRI"
        elif up.startswith(("UNIQUE KEY", "KEY")):
            cols = re.findall(r"`([^`]+)`", line.split("(", 1)[1])
            first = cols[0] if cols else None
            if first and first not in keys:
                keys[first] = "UNI" if up.startswith("UNIQUE") and len(cols) == 1 else "MUL"
    for c in table.columns:
        c.key = keys.get(c.name, "")
    return table


def parse_dump(text: str) -> list[Table]:
    """All tables with their rows, in dump order."""
    tables: dict[tuple[str, str], Table] = {}
    db = ""
    for stmt in split_statements(text):
        if stmt.startswith("/*!"):
            continue
        up = stmt[:40].upper()
        if up.startswith(("CREATE DATABASE", "USE ")):
            m = re.search(r"`((?:[^`]|``)+)`", stmt) or re.search(r"USE\s+(\w+)", stmt, re.I)
            db = m.group(1) if m else db
        elif up.startswith("CREATE TABLE"):
            t = _parse_create(db, stmt)
            tables[(db, t.name.lower())] = t
        elif up.startswith("INSERT INTO"):
            name = re.match(r"INSERT INTO\s+`((?:[^`]|``)+)`", stmt, re.I).group(1)  # type: ignore[union-attr]
            values = stmt[re.search(r"\bVALUES\b", stmt, re.I).end():]  # type: ignore[union-attr]
            tables[(db, name.lower())].rows.extend(parse_values(values))
    return list(tables.values())


def duck_type(mysql_type: str) -> str:
    """The DuckDB type whose Python values print like mysql-connector's."""
    t = mysql_type.lower()
    base = re.match(r"\w+", t).group(0)  # type: ignore[union-attr]
    if base in ("int", "integer", "mediumint", "smallint", "tinyint"):
        return "INTEGER" if "unsigned" not in t else "BIGINT"
    if base == "bigint":
        return "BIGINT"
    if base in ("decimal", "numeric"):
        m = re.search(r"\((\d+)\s*,\s*(\d+)\)", t)
        return f"DECIMAL({m.group(1)},{m.group(2)})" if m else "DECIMAL(10,0)"
    if base in ("double", "float", "real"):
        return "DOUBLE"
    if base == "date":
        return "DATE"
    if base in ("datetime", "timestamp"):
        return "TIMESTAMP"
    return "VARCHAR"


def _convert(value: object, dtype: str) -> object:
    if value is None:
        return None
    if dtype in ("INTEGER", "BIGINT"):
        return int(float(value)) if isinstance(value, str) else int(value)  # type: ignore[arg-type]
    if dtype == "DOUBLE":
        return float(value)  # type: ignore[arg-type]
    if dtype.startswith("DECIMAL"):
        return decimal.Decimal(str(value))
    if dtype == "DATE":
        return _dt.date.fromisoformat(str(value)[:10])
    if dtype == "TIMESTAMP":
        return _dt.datetime.fromisoformat(str(value))
    return str(value)


def _arrow_type(dtype: str) -> pa.DataType:
    if dtype == "INTEGER":
        return pa.int32()
    if dtype == "BIGINT":
        return pa.int64()
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


def load_into(con: duckdb.DuckDBPyConnection, tables: list[Table]) -> None:
    """Create one schema per database and bulk-load every table via Arrow."""
    meta_rows: list[tuple] = []
    for db in dict.fromkeys(t.db for t in tables):
        con.execute(f"CREATE SCHEMA {_qi(db)}")
    for t in tables:
        types = [duck_type(c.mysql_type) for c in t.columns]
        cols = ", ".join(f"{_qi(c.name)} {ty}" for c, ty in zip(t.columns, types))
        con.execute(f"CREATE TABLE {_qi(t.db)}.{_qi(t.name)} ({cols})")
        arrays = []
        for i, ty in enumerate(types):
            arrays.append(pa.array([_convert(r[i], ty) for r in t.rows], type=_arrow_type(ty)))
        batch = pa.table(arrays, names=[f"c{i}" for i in range(len(types))])  # noqa: F841 (used by SQL)
        con.execute(f"INSERT INTO {_qi(t.db)}.{_qi(t.name)} SELECT * FROM batch")
        for i, c in enumerate(t.columns):
            meta_rows.append((t.db, t.name, i, c.name, c.mysql_type, "YES" if c.nullable else "NO",
                              c.key, c.default, c.extra))
    con.execute(f"CREATE SCHEMA {META_SCHEMA}")
    con.execute(f"CREATE TABLE {META_SCHEMA}.columns (db VARCHAR, tbl VARCHAR, ordinal INTEGER, field VARCHAR,"
                " type VARCHAR, nullable VARCHAR, key VARCHAR, dflt VARCHAR, extra VARCHAR)")
    con.executemany(f"INSERT INTO {META_SCHEMA}.columns VALUES (?,?,?,?,?,?,?,?,?)", meta_rows)


def cache_dir() -> Path:
    """``$EVOAGENT_CACHE_DIR`` or ``~/.cache/evoagent``."""
    env = os.environ.get("EVOAGENT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "evoagent"


def database_path(dump: Path | None = None) -> Path:
    """Path of the built DuckDB file, building it first if the cache lacks it."""
    global last_build_seconds
    dump = dump or DUMP_PATH
    raw = dump.read_bytes()
    digest = hashlib.sha256(raw + BUILDER_VERSION.encode()).hexdigest()[:16]
    target = cache_dir() / f"intercode_sql-{digest}.duckdb"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    text = gzip.decompress(raw).decode("utf-8") if raw[:2] == b"\x1f\x8b" else raw.decode("utf-8")
    tables = parse_dump(text)
    fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.unlink(tmp)  # DuckDB wants to create the file itself
    try:
        con = duckdb.connect(tmp)
        try:
            load_into(con, tables)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, target)  # atomic; a concurrent builder's identical file is equally good
    finally:
        for leftover in (tmp, tmp + ".wal"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    last_build_seconds = time.perf_counter() - t0
    return target
