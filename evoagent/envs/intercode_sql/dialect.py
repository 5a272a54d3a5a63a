"""Agent SQL in MySQL's dialect, made runnable on DuckDB.

InterCode's agents talked to MySQL 8: backquoted names, double-quoted
strings, ``LIMIT a, b``, MySQL functions, and the admin statements ``SHOW
TABLES`` / ``DESCRIBE t`` / ``USE db``. Queries are translated with sqlglot
(cached, since agents repeat themselves); the admin statements are recognised
here and answered by the environment from the catalog, shaped like MySQL's.
What MySQL refuses and DuckDB would run stays refused: a misplaced clause, a
LIMIT in an IN/ALL/ANY/SOME subquery (``groupby`` does ONLY_FULL_GROUP_BY).
"""
from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import sqlglot
from sqlglot import exp

logging.getLogger("sqlglot").setLevel(logging.ERROR)

DIALECTS = ("mysql", "duckdb")
CACHE_CHARS = 1024  # longer texts are not cached, so 65,536 entries stay near 130 MB at worst

F = TypeVar("F", bound=Callable[..., Any])


def text_cache(maxsize: int) -> Callable[[F], F]:
    """``lru_cache`` for a function of one SQL text (and hashable extras) that skips long texts,
    so that what the cache can hold stays small next to a worker's memory limit."""
    def wrap(fn: F) -> F:
        cached = lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def call(sql: str, *args: Any, **kwargs: Any) -> Any:
            return (cached if len(sql) <= CACHE_CHARS else fn)(sql, *args, **kwargs)
        call.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        return call  # type: ignore[return-value]
    return wrap


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


_CLAUSE_RANK = {"WHERE": 1, "GROUP_BY": 2, "HAVING": 3, "ORDER_BY": 4, "LIMIT": 5}
_RESET = {"SELECT", "UNION", "INTERSECT", "EXCEPT"}


def clause_order_ok(sql: str) -> bool:
    """MySQL's grammar fixes WHERE < GROUP BY < HAVING < ORDER BY < LIMIT; sqlglot forgives
    a misplaced clause, MySQL did not, so such text must stay a syntax error."""
    try:
        tokens = sqlglot.tokenize(sql, read="mysql")
    except sqlglot.errors.SqlglotError:
        return True
    stack = [0]
    for tok in tokens:
        word = tok.token_type.name
        if word == "L_PAREN":
            stack.append(0)
        elif word == "R_PAREN":
            if len(stack) > 1:
                stack.pop()
        elif word in _RESET:
            stack[-1] = 0
        elif word in _CLAUSE_RANK:
            rank = _CLAUSE_RANK[word]
            if rank <= stack[-1]:
                return False
            stack[-1] = rank
    return True


LIMITED_SUBQUERY = "This version of MySQL doesn't yet support 'LIMIT & IN/ALL/ANY/SOME subquery'"


def _has_limit(query: exp.Expression | None) -> bool:
    """Whether a query expression carries a LIMIT of its own: on itself, through parentheses, or on
    a part of its set operation; a LIMIT inside a derived table or a nested subquery is not its own."""
    todo = [query]
    while todo:
        node = todo.pop()
        if node is None:
            continue
        if node.args.get("limit") is not None:
            return True
        if isinstance(node, (exp.Subquery, exp.Paren)):
            todo.append(node.this)
        elif isinstance(node, exp.SetOperation):
            todo += [node.this, node.expression]
    return False


def limit_in_quantified_subquery(tree: exp.Expression) -> bool:
    """MySQL 8 refuses a LIMIT in the subquery of IN / NOT IN / ANY / SOME / ALL (error 1235), at
    any depth and before it looks at tables or columns; DuckDB runs it, so the refusal is ours."""
    for node in tree.find_all(exp.In, exp.Any, exp.All):
        if _has_limit(node.args.get("query") if isinstance(node, exp.In) else node.this):
            return True
    return False


def _translate(sql: str) -> Plan:
    if not clause_order_ok(sql):
        return Plan("sql", "SELECT * FROM __mysql_syntax_error__ WHERE")  # DuckDB reports a syntax error
    try:
        trees = sqlglot.parse(sql, read="mysql")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
        return Plan("sql", sql)  # let DuckDB produce the syntax error
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        return Plan("sql", sql)
    if limit_in_quantified_subquery(trees[0]):
        return Plan("error", LIMITED_SUBQUERY)
    # copy=False: the tree is ours and dropped after; not copying it first is 17% of a translation
    # (the same text for every recorded action and gold query, checked over all 7,338)
    return Plan("sql", trees[0].sql(dialect="duckdb", copy=False))


NUMERIC_MACRO = (
    "CREATE OR REPLACE TEMP MACRO mysql_num(x) AS CASE WHEN x IS NULL THEN NULL ELSE COALESCE("
    "TRY_CAST(x AS DOUBLE), TRY_CAST(regexp_extract(CAST(x AS VARCHAR), "
    "'^\\s*([-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?)', 1) AS DOUBLE), 0.0) END"
)
_CMP = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)


def _is_num_literal(e: exp.Expression) -> bool:
    if isinstance(e, exp.Neg):
        e = e.this
    return isinstance(e, exp.Literal) and not e.is_string


@text_cache(8192)
def numeric_coercion(sql: str) -> str | None:
    """MySQL compares/sums text as numbers: wrap text-vs-number operands in ``mysql_num``.

    Used only after DuckDB refused the plain translation with a type error, so
    ordinary queries keep their exact types."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.SqlglotError:
        return None
    changed = False
    wrap = lambda e: exp.Anonymous(this="mysql_num", expressions=[e.copy()])  # noqa: E731
    for node in list(tree.find_all(*_CMP, exp.Between, exp.In)):
        if isinstance(node, _CMP):
            left, right = node.this, node.expression
            if _is_num_literal(right) and not _is_num_literal(left):
                node.set("this", wrap(left))
                changed = True
            elif _is_num_literal(left) and not _is_num_literal(right):
                node.set("expression", wrap(right))
                changed = True
            elif isinstance(left, exp.Column) and isinstance(right, exp.Literal) and right.is_string:
                node.set("expression", wrap(right))
                changed = True
            elif isinstance(left, exp.Column) and isinstance(right, exp.Subquery):
                node.set("this", wrap(left))
                changed = True
        elif isinstance(node, exp.Between) and _is_num_literal(node.args.get("low")):
            node.set("this", wrap(node.this))
            changed = True
        elif isinstance(node, exp.In) and node.expressions and all(map(_is_num_literal, node.expressions)):
            node.set("this", wrap(node.this))
            changed = True
    for node in list(tree.find_all(exp.Avg, exp.Sum)):
        arg = node.this
        if isinstance(arg, exp.Column) or (isinstance(arg, exp.Distinct) is False and arg.find(exp.Column)):
            node.set("this", wrap(arg))
            changed = True
    return tree.sql(dialect="duckdb") if changed else None


@text_cache(65536)
def plan(action: str, dialect: str = "mysql") -> Plan:
    """Classify and translate one agent action (cached); a statement too deeply nested for the
    translator (sqlglot recurses per level) is an error plan, not an exception."""
    sql = strip_action(action)
    if not sql:
        return Plan("error", "Query was empty")
    admin = _admin(sql)
    if admin is not None:
        return admin
    if dialect == "duckdb":
        return Plan("sql", sql)
    try:
        return _translate(sql)
    except RecursionError:
        return Plan("error", "the statement is nested too deeply to be translated from MySQL")
