"""A MySQL dump, read without MySQL: its databases, tables (columns, keys) and rows.

A tokenizer splits the script into statements (quotes, comments and MySQL's
``/*!...*/`` kept straight); ``CREATE DATABASE``/``USE``, ``CREATE TABLE``,
``DROP`` and ``INSERT``/``REPLACE ... VALUES`` are read, everything else a
loader needs for a server (``CREATE USER``, ``GRANT``, ``FLUSH``, ``LOCK
TABLES``, ``SET``, routines between ``DELIMITER`` lines) is skipped. Values keep
MySQL's literal rules (escapes, ``''``, double-quoted strings, ``_charset``
introducers, ``x''``/``b''``). Anything it cannot read is a ``DumpError`` naming
the statement, never a wrong table.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from evoagent.envs.intercode_sql.dialect import unquote


class DumpError(ValueError):
    """A dump that cannot be loaded; the message names the place."""


# -- statements ----------------------------------------------------------------------
# One statement-level token: quoted strings, comments, ';', or runs of other text.
_STMT_TOKEN = re.compile(
    r"'(?:[^'\\]|\\.|'')*'"
    r'|"(?:[^"\\]|\\.|"")*"'
    r"|`(?:[^`]|``)*`"
    r"|--(?=\s|$)[^\n]*\n?"
    r"|#[^\n]*\n?"
    r"|/\*.*?\*/"
    r"|;"
    r"|[^'\"`;/#-]+"
    r"|.",
    re.S,
)
_DELIMITER = re.compile(r"\s*DELIMITER[ \t]+(\S+)[^\n]*", re.I)
_DELIMITER_RESET = re.compile(r"^[ \t]*DELIMITER[ \t]+;[ \t]*$", re.I | re.M)


def split_statements(text: str) -> list[str]:
    """Split a SQL script at top-level semicolons, dropping plain comments and the
    routines/triggers written between ``DELIMITER x`` and ``DELIMITER ;``."""
    out: list[str] = []
    cur: list[str] = []
    pos, n = 0, len(text)
    while pos < n:
        if not cur:
            d = _DELIMITER.match(text, pos)
            if d and d.group(1) != ";":
                reset = _DELIMITER_RESET.search(text, d.end())
                pos = reset.end() if reset else n
                continue
        m = _STMT_TOKEN.match(text, pos)
        assert m is not None  # the last alternative matches any character
        pos, tok = m.end(), m.group(0)
        if tok == ";":
            stmt = "".join(cur).strip()
            if stmt:
                out.append(stmt)
            cur = []
        elif tok.startswith(("--", "#")) or (tok.startswith("/*") and not tok.startswith("/*!")):
            continue
        elif cur or tok.strip():
            cur.append(tok)
    tail = "".join(cur).strip()
    if tail:
        out.append(tail)
    return out


# -- values ---------------------------------------------------------------------------
_STRING = r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\""
# One token inside VALUES (...),(...).
_VALUE_TOKEN = re.compile(
    r"\s*(?:(?:_[a-z0-9]+\s*|n(?='))?(?P<str>" + _STRING + r")"
    r"|x'(?P<xstr>[0-9a-f]*)'"
    r"|b'(?P<bits>[01]*)'|0b(?P<bits2>[01]+)"
    r"|(?P<hex>0x[0-9a-f]+)"
    r"|(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)"
    r"|(?P<null>NULL)\b|(?P<true>TRUE)\b|(?P<false>FALSE)\b"
    r"|(?P<punct>[(),]))",
    re.I | re.S,
)
_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "\\": "\\", "'": "'", '"': '"'}
_ESCAPE_RE = re.compile(r"\\(.)|''|\"\"", re.S)


def unescape_mysql(body: str) -> str:
    """Decode the inside of a MySQL quoted literal (``\\n``, ``\\'``, ``''``, ``\"\"``...)."""
    if "\\" not in body and "''" not in body and '""' not in body:
        return body
    return _ESCAPE_RE.sub(lambda m: m.group(0)[0] if m.group(1) is None else _ESCAPES.get(m.group(1), m.group(1)),
                          body)


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
            raise DumpError(f"cannot parse VALUES near {text[pos:pos + 40]!r}")
        pos = m.end()
        p = m.group("punct")
        if p == "(":
            if row is not None:
                raise DumpError(f"expressions are not supported in VALUES (near {text[max(0, pos - 20):pos + 20]!r})")
            row = []
            continue
        if p == ")":
            if row is None:
                raise DumpError("unbalanced ')' in VALUES")
            rows.append(row)
            row = None
            continue
        if p == ",":
            continue
        if row is None:
            raise DumpError(f"value outside a row in VALUES (near {text[max(0, pos - 20):pos + 20]!r})")
        row.append(_value(m))
    if row is not None:
        raise DumpError("unterminated row in VALUES")
    return rows


def _value(m: re.Match) -> object:
    if m.group("str") is not None:
        return unescape_mysql(m.group("str")[1:-1])
    if m.group("xstr") is not None:
        digits = m.group("xstr")
        return bytes.fromhex("0" * (len(digits) % 2) + digits).decode("utf-8", "replace")
    bits = m.group("bits") if m.group("bits") is not None else m.group("bits2")
    if bits is not None:
        return int(bits or "0", 2)
    if m.group("null"):
        return None
    if m.group("true") or m.group("false"):
        return 1 if m.group("true") else 0
    if m.group("hex"):
        return int(m.group("hex"), 16)
    num = m.group("num")
    return int(num) if re.fullmatch(r"[-+]?\d+", num) else float(num)


# -- tables ---------------------------------------------------------------------------
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


_IDENT = r"`(?:[^`]|``)+`|\"(?:[^\"]|\"\")+\"|[\w$]+"
_QUALIFIED = re.compile(rf"\s*({_IDENT})(?:\s*\.\s*({_IDENT}))?", re.S)
# Quoted things, parentheses and commas: enough to find a definition's parts.
_SCAN = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"|`(?:[^`]|``)*`|[(),]|[^'\"`(),]+|.", re.S)
_COLUMN = re.compile(
    rf"\s*(?P<name>{_IDENT})\s+(?P<type>[a-z]\w*(?:\s+(?:precision|varying))?)"
    rf"(?:\s*(?P<args>\((?:[^()'\"]|{_STRING})*\)))?(?P<mods>(?:\s+(?:unsigned|signed|zerofill)\b)*)(?P<rest>.*)$",
    re.I | re.S,
)
_CREATE_DB = re.compile(r"CREATE\s+(?:DATABASE|SCHEMA)\s+(?:IF\s+NOT\s+EXISTS\s+)?", re.I)
_DROP_DB = re.compile(r"DROP\s+(?:DATABASE|SCHEMA)\s+(?:IF\s+EXISTS\s+)?", re.I)
_USE = re.compile(r"USE\s+", re.I)
_CREATE_TABLE = re.compile(r"CREATE\s+(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?", re.I)
_DROP_TABLE = re.compile(r"DROP\s+(?:TEMPORARY\s+)?TABLES?\s+(?:IF\s+EXISTS\s+)?", re.I)
_INSERT = re.compile(r"(?:INSERT|REPLACE)(?:\s+(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE))*\s+(?:INTO\s+)?", re.I)
_KEY_DEF = re.compile(r"(?:CONSTRAINT(?:\s+(?!PRIMARY\b|UNIQUE\b|FOREIGN\b|CHECK\b)(?:" + _IDENT + r"))?\s+)?"
                      r"(?P<kind>PRIMARY\s+KEY|UNIQUE|KEY|INDEX|FULLTEXT|SPATIAL|FOREIGN\s+KEY|CHECK)\b", re.I)

_KEY_NAME = re.compile(rf"\s*(?:(?:KEY|INDEX)\b\s*)?(?:(?!USING\b)(?:{_IDENT})\s*)?(?:USING\s+\w+\s*)?", re.I)


def _qualified(stmt: str, pos: int) -> tuple[str | None, str, int]:
    """``db.name`` or ``name`` at ``pos`` -> (db or None, name, end)."""
    m = _QUALIFIED.match(stmt, pos)
    if m is None:
        raise DumpError(f"expected a name in {stmt[:60]!r}")
    if m.group(2):
        return unquote(m.group(1)), unquote(m.group(2)), m.end()
    return None, unquote(m.group(1)), m.end()


def _split_top(text: str) -> list[str]:
    """Split at commas outside parentheses and quotes."""
    parts, cur, depth = [], [], 0
    for m in _SCAN.finditer(text):
        tok = m.group(0)
        depth += (tok == "(") - (tok == ")")
        if tok == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(tok)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _parenthesised(text: str, pos: int) -> tuple[str, int]:
    """The inside of the parenthesis group opening at or after ``pos``, and its end."""
    start = text.find("(", pos)
    if start < 0 or text[pos:start].strip():
        raise DumpError(f"expected '(' near {text[pos:pos + 40]!r}")
    depth = 0
    for m in _SCAN.finditer(text, start):
        depth += (m.group(0) == "(") - (m.group(0) == ")")
        if depth == 0:
            return text[start + 1:m.start()], m.end()
    raise DumpError(f"unbalanced parentheses near {text[start:start + 40]!r}")


def _key_columns(spec: str) -> list[str]:
    """Column names of what follows an index kind: ``KEY `k` USING BTREE (`a`(10), b DESC)`` -> [a, b]."""
    body, _ = _parenthesised(spec, _KEY_NAME.match(spec).end())  # type: ignore[union-attr]
    names = (re.match(_IDENT, part) for part in _split_top(body))
    return [unquote(m.group(0)) for m in names if m]


def _parse_create(db: str, stmt: str) -> Table:
    qual, name, pos = _qualified(stmt, _CREATE_TABLE.match(stmt).end())  # type: ignore[union-attr]
    if re.match(r"\s*(LIKE|AS|SELECT)\b", stmt[pos:], re.I):
        raise DumpError(f"CREATE TABLE `{name}` ... LIKE/SELECT is not supported; dump the table's columns")
    body, _ = _parenthesised(stmt, pos)
    table = Table(qual or db, name)
    keys: dict[str, str] = {}
    for part in _split_top(body):
        k = _KEY_DEF.match(part)
        if k:
            kind = k.group("kind").upper()
            if kind.startswith(("FOREIGN", "CHECK")):
                continue
            cols = _key_columns(part[k.end():])
            if kind.startswith("PRIMARY"):
                keys.update((c, "PRI") for c in cols)
            elif cols and cols[0] not in keys:
                keys[cols[0]] = "UNI" if kind == "UNIQUE" and len(cols) == 1 else "MUL"
            continue
        m = _COLUMN.match(part)
        if m is None:
            raise DumpError(f"table `{name}`: cannot read the column definition {part[:60]!r}")
        rest, upper = m.group("rest"), m.group("rest").upper()
        default = None
        dm = re.search(r"\bDEFAULT\s+(" + _STRING + r"|[^\s,]+)", rest, re.I)
        if dm and dm.group(1).upper() != "NULL":
            d = dm.group(1)
            default = unescape_mysql(d[1:-1]) if d[0] in "'\"" else d
        extra = "auto_increment" if "AUTO_INCREMENT" in upper else ""
        if "DEFAULT_GENERATED" in upper or (default or "").upper() == "CURRENT_TIMESTAMP":
            extra = extra or "DEFAULT_GENERATED"
        col_name = unquote(m.group("name"))
        mysql_type = (m.group("type") + (m.group("args") or "") + " ".join(["", *m.group("mods").split()])).lower()
        table.columns.append(Column(col_name, mysql_type, "NOT NULL" not in upper, default, extra))
        if re.search(r"\bPRIMARY\s+KEY\b", upper):
            keys[col_name] = "PRI"
        elif re.search(r"\bUNIQUE\b", upper):
            keys.setdefault(col_name, "UNI")
    if not table.columns:
        raise DumpError(f"table `{name}` has no columns")
    for c in table.columns:
        c.key = keys.get(c.name, "")
        c.nullable = c.nullable and c.key != "PRI"  # MySQL makes primary key columns NOT NULL
    return table


def _parse_insert(stmt: str) -> tuple[str | None, str, list[str] | None, list[list[object]]]:
    """(db or None, table, column list or None, rows) of an INSERT/REPLACE ... VALUES."""
    qual, name, pos = _qualified(stmt, _INSERT.match(stmt).end())  # type: ignore[union-attr]
    cols = None
    if stmt[pos:].lstrip().startswith("("):
        inside, pos = _parenthesised(stmt, pos)
        cols = [unquote(c) for c in _split_top(inside)]
    v = re.match(r"\s*VALUES?\b", stmt[pos:], re.I)
    if v is None:
        raise DumpError(f"INSERT into `{name}`: only INSERT ... VALUES is supported")
    return qual, name, cols, parse_values(stmt[pos + v.end():])


def parse_dump(text: str, default_db: str = "") -> list[Table]:
    """All tables with their rows, in dump order. Tables created before any ``USE`` go to
    the last ``CREATE DATABASE``, else to ``default_db`` (a one-database mysqldump has neither)."""
    tables: dict[tuple[str, str], Table] = {}
    used = created = ""
    for stmt in split_statements(text):
        try:
            if stmt.startswith("/*!"):
                continue
            db = used or created or default_db
            if m := _CREATE_DB.match(stmt):
                created = _qualified(stmt, m.end())[1]
            elif m := _USE.match(stmt):
                used = _qualified(stmt, m.end())[1]
            elif m := _DROP_DB.match(stmt):
                gone = _qualified(stmt, m.end())[1].lower()
                tables = {k: t for k, t in tables.items() if k[0].lower() != gone}
            elif _CREATE_TABLE.match(stmt):
                t = _parse_create(db, stmt)
                if not t.db:
                    raise DumpError(f"CREATE TABLE `{t.name}` before any CREATE DATABASE or USE")
                tables[(t.db.lower(), t.name.lower())] = t
            elif m := _DROP_TABLE.match(stmt):
                for part in _split_top(stmt[m.end():]):
                    qual, name, _ = _qualified(part, 0)
                    tables.pop(((qual or db).lower(), name.lower()), None)
            elif _INSERT.match(stmt):
                _insert(tables, db, stmt)
        except DumpError as err:
            raise DumpError(f"in {' '.join(stmt[:60].split())!r}...: {err}") from None
    return list(tables.values())


def _insert(tables: dict[tuple[str, str], Table], db: str, stmt: str) -> None:
    qual, name, cols, rows = _parse_insert(stmt)
    table = tables.get(((qual or db).lower(), name.lower()))
    if table is None:
        raise DumpError(f"INSERT into `{name}` before its CREATE TABLE")
    width = len(table.columns)
    if cols is not None:
        index = {c.name.lower(): i for i, c in enumerate(table.columns)}
        missing = [c for c in cols if c.lower() not in index]
        if missing:
            raise DumpError(f"table `{name}` has no column `{missing[0]}`")
        where = [index[c.lower()] for c in cols]
        rows = [_spread(r, where, width) for r in rows]
    for r in rows:
        if len(r) != width:
            raise DumpError(f"a row of {len(r)} values for the {width} columns of `{name}`")
    table.rows.extend(rows)


def _spread(row: list[object], where: list[int], width: int) -> list[object]:
    if len(row) != len(where):
        raise DumpError(f"a row of {len(row)} values for a column list of {len(where)}")
    out: list[object] = [None] * width
    for i, v in zip(where, row):
        out[i] = v
    return out
