"""Agent SQL in MySQL's dialect, made runnable on DuckDB.

InterCode's agents talked to MySQL 8: backquoted names, double-quoted
strings, ``LIMIT a, b``, MySQL functions, and the admin statements ``SHOW
TABLES`` / ``DESCRIBE t`` / ``USE db``. Queries are translated with sqlglot
(cached, since agents repeat themselves); the admin statements are recognised
here and answered by the environment from the catalog, shaped like MySQL's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import sqlglot
from sqlglot import exp

DIALECTS = ("mysql", "duckdb")


@dataclass(frozen=True)
class Plan:
    """What to do for one agent action: ``kind`` is sql, show_tables, show_databases,
    describe, show_create, use or error; ``arg`` the SQL, name or message."""

    kind: str
    arg: str = ""
    db: str = ""


_NAME = r"(`(?:[^`]|``)+`|\"[^\"]+\"|[\w$]+)"
_QUAL = rf"(?:{_NAME}\s*\.\s*)?{_NAME}"
_SHOW_TABLES = re.compile(rf"^SHOW\s+(?:FULL\s+)?TABLES(?:\s+(?:FROM|IN)\s+{_NAME})?(?:\s+LIKE\s+'([^']*)')?$", re.I)
_SHOW_DBS = re.compile(r"^SHOW\s+(?:DATABASES|SCHEMAS)$", re.I)
_DESCRIBE = re.compile(rf"^(?:DESCRIBE|DESC|EXPLAIN)\s+{_QUAL}$", re.I)
_SHOW_COLS = re.compile(rf"^SHOW\s+(?:FULL\s+)?(?:COLUMNS|FIELDS)\s+(?:FROM|IN)\s+{_QUAL}(?:\s+(?:FROM|IN)\s+{_NAME})?$", re.I)
_SHOW_CREATE = re.compile(rf"^SHOW\s+CREATE\s+TABLE\s+{_QUAL}$", re.I)
_USE = re.compile(rf"^USE\s+{_NAME}$", re.I)


def unquote(name: str | None) -> str:
    """Strip MySQL/ANSI identifier quotes."""
    if not name:
        return ""
    if name[0] in "`\"" and name[-1] == name[0]:
        return name[1:-1].replace(name[0] * 2, name[0])
    return name


def strip_action(action: str) -> str:
    """Trim whitespace and trailing semicolons, as the MySQL client would."""
    s = action.strip()
    while s.endswith(";"):
        s = s[:-1].rstrip()
    return s


def _admin(sql: str) -> Plan | None:
    one = " ".join(sql.split())
    if m := _SHOW_TABLES.match(one):
        return Plan("show_tables", m.group(2) or "", unquote(m.group(1)))
    if _SHOW_DBS.match(one):
        return Plan("show_databases")
    if m := _DESCRIBE.match(one) or _SHOW_CREATE.match(one):
        kind = "show_create" if one.upper().startswith("SHOW") else "describe"
        return Plan(kind, unquote(m.group(2)), unquote(m.group(1)))
    if m := _SHOW_COLS.match(one):
        return Plan("describe", unquote(m.group(2)), unquote(m.group(3) or m.group(1)))
    if m := _USE.match(one):
        return Plan("use", unquote(m.group(1)))
    return None


@lru_cache(maxsize=65536)
def _translate(sql: str) -> str:
    try:
        trees = sqlglot.parse(sql, read="mysql")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
        return sql  # let DuckDB produce the syntax error
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        return sql
    return _fix_tree(trees[0]).sql(dialect="duckdb")


def _fix_tree(tree: exp.Expression) -> exp.Expression:
    """MySQL semantics sqlglot leaves alone."""
    return tree


@lru_cache(maxsize=65536)
def plan(action: str, dialect: str = "mysql") -> Plan:
    """Classify and translate one agent action (cached)."""
    sql = strip_action(action)
    if not sql:
        return Plan("error", "Query was empty")
    admin = _admin(sql)
    if admin is not None:
        return admin
    if dialect == "duckdb":
        return Plan("sql", sql)
    return Plan("sql", _translate(sql))


def translate(sql: str) -> str:
    """MySQL SQL text to DuckDB SQL text (admin statements untouched)."""
    return _translate(strip_action(sql))
