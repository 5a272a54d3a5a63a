"""One agent action on DuckDB: the part of the environment that touches untrusted SQL.

It runs inside a SQL worker process (``sandbox``), never in the campaign's
process. The database is opened read-only with external access, extension
loading and configuration changes locked, one thread and a memory limit.
Agent SQL passes a statement classifier (one SELECT-like statement, or an
emulated SHOW/DESCRIBE/USE), runs under a per-statement time limit enforced by
a watchdog thread that interrupts the cursor, and its result is fetched in
chunks and rendered only up to ``max_rows`` rows and ``max_result_chars``
characters. ``Executor.run`` is total: every failure of translation,
execution or rendering is an ``Error executing query:`` observation.
"""
from __future__ import annotations

import heapq
import itertools
import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from evoagent.envs.intercode_sql import dialect as _dialect
from evoagent.envs.intercode_sql.build import META_SCHEMA, database_path
from evoagent.envs.intercode_sql.groupby import full_group_by

ERROR_PREFIX = "Error executing query: "
MAX_ACTION_CHARS = 8000  # 3x the longest recorded action; a 20 KB WHERE chain alone plans in 0.6 GB
MEMORY_LIMIT = "512MB"  # DuckDB's own (buffer-managed) memory; the worker's RLIMIT_DATA bounds the rest
_SYNTAX = ("You have an error in your SQL syntax; check the manual that corresponds to your "
           "MySQL server version for the right syntax to use")
INTERRUPTED = "Query execution was interrupted, maximum statement execution time exceeded"

_RANDOM = re.compile(r"\brand(om)?\s*\(", re.I)  # MySQL RAND(), DuckDB RANDOM()
_lock = threading.Lock()
_connections: dict[tuple[str, str], duckdb.DuckDBPyConnection] = {}
_catalogs: dict[str, Catalog] = {}
_watchdog: _Watchdog | None = None


@dataclass(frozen=True)
class Limits:
    """Per-statement bounds, chosen by the environment that sends the action."""

    timeout_s: float = 5.0
    max_rows: int = 100_000
    max_result_chars: int = 8_000_000
    max_observation_chars: int = 100_000


class _Watchdog:
    """One thread that interrupts cursors whose statement ran past its deadline."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []
        self._live: set[int] = set()
        self._ids = itertools.count()
        threading.Thread(target=self._run, name="evoagent-sql-watchdog", daemon=True).start()

    def arm(self, cursor: Any, seconds: float) -> int:
        """Interrupt ``cursor`` after ``seconds`` unless disarmed; no limit when not finite."""
        token = next(self._ids)
        if not math.isfinite(seconds):
            return token  # never armed: disarm() of an unknown token is a no-op
        with self._cv:
            self._live.add(token)
            heapq.heappush(self._heap, (time.monotonic() + seconds, token, cursor))
            if self._heap[0][1] == token:
                self._cv.notify()
        return token

    def disarm(self, token: int) -> None:
        with self._cv:
            self._live.discard(token)

    def _run(self) -> None:
        with self._cv:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cv.wait()
                    continue
                deadline, token, cursor = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._cv.wait(min(delay, 3600.0))
                    continue
                heapq.heappop(self._heap)
                self._live.discard(token)
                try:
                    cursor.interrupt()
                except Exception:  # noqa: BLE001 - a closed cursor needs no interrupt
                    pass


@dataclass(frozen=True)
class Catalog:
    """Column metadata of every database in the file, as MySQL's DESCRIBE shows it."""

    tables: dict[str, dict[str, list[tuple]]]  # db -> table -> (field, type, null, key, default, extra)
    names: dict[str, str]  # lower-case db name -> its real name (MySQL names are case-insensitive here)
    file_db: str  # DuckDB's name for the attached file, to reach its empty ``main`` schema


def shared_connection(collation: str = "nocase", path: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """The process-wide read-only connection to the benchmark file (opened on first use)."""
    global _watchdog
    key = (str(path or database_path()), collation)
    with _lock:
        con = _connections.get(key)
        if con is None:
            config: dict[str, Any] = {
                "enable_external_access": False, "autoload_known_extensions": False,
                "autoinstall_known_extensions": False, "memory_limit": MEMORY_LIMIT, "threads": 1,
                "temp_directory": "",  # never spill to disk: a hostile sort could fill it
                "lock_configuration": True}
            if collation:
                config["default_collation"] = collation
            con = duckdb.connect(key[0], read_only=True, config=config)
            _connections[key] = con
            if key[0] not in _catalogs:
                _catalogs[key[0]] = _load_catalog(con)
            if _watchdog is None:
                _watchdog = _Watchdog()
        return con


def _load_catalog(con: duckdb.DuckDBPyConnection) -> Catalog:
    rows = con.execute(f"SELECT db, tbl, field, type, nullable, key, dflt, extra FROM "
                       f"{META_SCHEMA}.columns ORDER BY db, tbl, ordinal").fetchall()
    tables: dict[str, dict[str, list[tuple]]] = {}
    for db, tbl, *col in rows:
        tables.setdefault(db, {}).setdefault(tbl, []).append(tuple(col))
    file_db = con.execute("SELECT current_database()").fetchone()[0]
    return Catalog(tables, {d.lower(): d for d in tables}, file_db)


def action_problem(action: object) -> str | None:
    """Why ``action`` cannot even be read as a statement (None if it can)."""
    if not isinstance(action, str):
        return f"an action must be text, not {type(action).__name__}"
    if len(action) > MAX_ACTION_CHARS:
        return (f"the statement is {len(action):,} characters long; this environment accepts at most "
                f"{MAX_ACTION_CHARS:,}")
    try:
        action.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"Invalid utf8mb4 character string: '{printable(err.object[err.start:err.end])}'"
    return None


def printable(text: str) -> str:
    """``text`` with lone surrogates escaped, so a message can always be stored and printed."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _mysql_error(msg: str, db: str, sql: str) -> str:
    """DuckDB's message reworded the way MySQL said the same thing, where common."""
    first = msg.split("\n", 1)[0]
    if m := re.search(r"Table with name ([^ ]+) does not exist", first):
        return f"Table '{db}.{m.group(1)}' doesn't exist" if db else "No database selected"
    if m := re.search(r'Referenced column "?([^" ]+)"? not found', first):
        return f"Unknown column '{m.group(1)}' in 'field list'"
    if first.startswith("Parser Error") or "syntax error" in first:
        return f"{_SYNTAX} near '{sql[:80]}' at line 1"
    if "INTERRUPT" in first.upper():
        return INTERRUPTED
    return first


class _Refused(Exception):
    """A statement we will not run, or a result we will not return; becomes an error observation."""


Outcome = tuple[str, "list[str] | None", dict]


class Executor:
    """One cursor on the shared connection and its current database; runs actions one at a time."""

    def __init__(self, collation: str = "nocase", path: str | Path | None = None) -> None:
        con = shared_connection(collation, path)
        self.catalog = _catalogs[str(path or database_path())]
        self._cursor = con.cursor()
        self._cursor.execute(_dialect.NUMERIC_MACRO)
        self.db = ""  # the database the cursor is in ("": none, the file's empty main schema)
        self.fatal = False  # the process should not serve another statement (out of memory, DuckDB invalidated)
        self._catalog_fns: dict[str, Any] = {}
        assert _watchdog is not None
        self._watchdog = _watchdog

    def close(self) -> None:
        """Release the cursor."""
        try:
            self._cursor.close()
        except Exception:  # noqa: BLE001
            pass

    def use(self, db: str) -> bool:
        """Enter database ``db`` (any letter case); False, staying where it is, if there is none."""
        real = self.catalog.names.get(db.lower())
        if real is None:
            return False
        if real != self.db:
            self._cursor.execute(f'USE "{real}"')
            self.db = real
        return True

    def run(self, action: str, db: str, dialect: str, limits: Limits = Limits()) -> Outcome:
        """Observation, rendered rows (None on error) and info for ``action`` run in ``db``."""
        try:
            if problem := action_problem(action):
                raise _Refused(problem)
            if not self.use(db) and self.db:  # no such database: none selected (the file's empty schema)
                self._cursor.execute(f'USE "{self.catalog.file_db}".main')
                self.db = ""
            return self._run(action, dialect, limits)
        except _Refused as err:
            return _error(str(err))
        except duckdb.Error as err:  # from USE: the statement's own errors are reworded in _run
            self._note_fatal(err)
            return _error(str(err).split("\n", 1)[0])
        except MemoryError:
            self.fatal = True
            return _error("Out of Memory Error: the statement needed more memory than this environment allows")
        except RecursionError:
            return _error("the statement is nested too deeply to be processed")
        except Exception as err:  # noqa: BLE001 - e.g. a value Python cannot represent (OverflowError)
            return _error(f"the result could not be read: {type(err).__name__}: {err}")

    def _run(self, action: str, dialect: str, limits: Limits) -> Outcome:
        p = _dialect.plan(action, dialect)
        if p.kind == "error":
            raise _Refused(p.arg)
        if p.kind != "sql":
            return self._admin(p)
        try:
            strs, truncated = self._run_sql(p.arg, dialect, limits)
        except duckdb.Error as err:
            self._note_fatal(err)
            raise _Refused(_mysql_error(str(err), self.db, p.arg)) from None
        obs = _observation(strs, limits.max_observation_chars)
        return obs, strs, {"valid": True, "rows": len(strs), "truncated": truncated}

    def _note_fatal(self, err: duckdb.Error) -> None:
        if isinstance(err, duckdb.FatalException) or "invalidated" in str(err):
            self.fatal = True  # DuckDB refuses every later statement: the worker must be replaced

    def _run_sql(self, sql: str, dialect: str, limits: Limits) -> tuple[list[str], bool]:
        cur = self._cursor
        try:
            stmts = cur.extract_statements(sql)
        except duckdb.Error as err:
            raise _Refused(_mysql_error(str(err), self.db, sql)) from None
        if len(stmts) != 1:
            raise _Refused("exactly one SQL statement per action is allowed" if stmts else "Query was empty")
        if stmts[0].type != duckdb.StatementType.SELECT:
            raise _Refused(f"only read-only queries are allowed here (got {stmts[0].type.name})")
        if _RANDOM.search(sql):
            # RAND()/RANDOM() in agent SQL: a fixed seed per statement keeps episodes reproducible
            # (a resumed or re-run campaign must see the same observations).
            cur.execute("SELECT setseed(0.5)").fetchall()
        token = self._watchdog.arm(cur, limits.timeout_s)
        try:
            for attempt in range(3):
                try:
                    cur.execute(sql)
                    break
                except (duckdb.BinderException, duckdb.ConversionException) as err:
                    if attempt == 2 or dialect != "mysql":
                        raise
                    sql = self._mysql_retry(sql, str(err))
            return _fetch(cur, limits) if cur.description is not None else ([], False)
        finally:
            self._watchdog.disarm(token)

    def _mysql_retry(self, sql: str, msg: str) -> str:
        """SQL rewritten the way MySQL would have read it, after DuckDB refused ``sql``."""
        if "GROUP BY clause" in msg or "aggregate function" in msg:
            new, err = full_group_by(sql, self._catalog_fn(self.db))
            if err:
                raise _Refused(err)
            if new and new != sql:
                return new
        elif ("VARCHAR" in msg and ("Cannot compare" in msg or "No function matches" in msg)) or (
                "Could not convert string" in msg):
            new = _dialect.numeric_coercion(sql)
            if new:
                return new
        raise duckdb.BinderException(msg.split(": ", 1)[-1] if "Conversion" in msg else msg)

    def _catalog_fn(self, db: str) -> Any:
        """A hashable lookup table -> (lower-case columns, key column sets) for one database."""
        fn = self._catalog_fns.get(db)
        if fn is None:
            tables = {t.lower(): cols for t, cols in self.catalog.tables.get(db, {}).items()}

            def fn(name: str, _t: dict = tables) -> tuple[list[str], list[frozenset[str]]] | None:
                cols = _t.get(name.lower())
                if cols is None:
                    return None
                pk = frozenset(c[0].lower() for c in cols if c[3] == "PRI")
                uni = [frozenset([c[0].lower()]) for c in cols if c[3] == "UNI" and c[2] == "NO"]
                return [c[0].lower() for c in cols], [k for k in [pk, *uni] if k]
            self._catalog_fns[db] = fn
        return fn

    def _admin(self, p: _dialect.Plan) -> Outcome:
        tables = self.catalog.tables
        if p.kind == "use":
            if not self.use(p.arg):
                raise _Refused(f"Unknown database '{p.arg}'")
            return "None", None, {"valid": True}
        db = self.catalog.names.get((p.db or self.db).lower()) if (p.db or self.db) else None
        if p.kind == "show_databases":
            names = ["information_schema", *sorted(tables, key=str.lower), "mysql", "performance_schema", "sys"]
            rows: list[tuple] = [(n,) for n in names]
        elif db is None:
            raise _Refused(f"Unknown database '{p.db}'" if p.db else "No database selected")
        elif p.kind == "show_tables":
            like = re.compile("^" + re.escape(p.arg).replace("%", ".*").replace("_", ".") + "$", re.I) if p.arg else None
            rows = [(t,) for t in sorted(tables[db], key=str.lower) if like is None or like.match(t)]
        else:
            by_lower = {t.lower(): t for t in tables[db]}
            tbl = by_lower.get(p.arg.lower())
            if tbl is None:
                raise _Refused(f"Table '{db}.{p.arg}' doesn't exist")
            cols = tables[db][tbl]
            rows = [tuple(c) for c in cols] if p.kind == "describe" else [(tbl, _create_table(tbl, cols))]
        strs = [str(r) for r in rows]
        return _observation(strs, 1 << 62), strs, {"valid": True, "rows": len(rows)}


def _error(msg: str) -> Outcome:
    msg = printable(msg)
    return ERROR_PREFIX + msg, None, {"valid": False, "error": msg}


def _fetch(cur: Any, limits: Limits) -> tuple[list[str], bool]:
    """The result's rows as ``str(row)``, fetched in growing chunks and cut (True) at ``max_rows``
    rows or ``max_result_chars`` characters; a first row alone over the budget is an error."""
    strs: list[str] = []
    used, want, cap = 0, 16, limits.max_rows + 1  # one row more tells whether rows were cut
    while len(strs) < cap:
        n = min(want, cap - len(strs))
        chunk = cur.fetchmany(n)
        for row in chunk:
            text = str(row)  # a tuple's str is its repr, as inside str(list)
            used += len(text) + 2
            if used > limits.max_result_chars:
                if not strs:
                    raise _Refused(f"the first row of the result alone has more than {limits.max_result_chars:,} "
                                   "characters, the most this environment returns")
                return strs, True
            strs.append(text)
        if len(chunk) < n:
            return strs, False
        per_row = used / len(strs)
        want = max(1, min(4 * n, 2048, int((limits.max_result_chars - used) / per_row)))
    return strs[: limits.max_rows], True


def _observation(strs: list[str], limit: int) -> str:
    """``str(rows)`` from the rows' strings, cut at ``limit`` characters (joining only what is shown)."""
    shown, length = [], 1
    for text in strs:
        if length > limit + 2:
            break
        shown.append(text)
        length += len(text) + 2
    obs = "[" + ", ".join(shown) + "]"
    if len(obs) > limit:
        obs = obs[:limit] + " ... (output truncated)"
    return obs


def _create_table(tbl: str, cols: list[tuple]) -> str:
    lines = []
    for field, typ, null, key, dflt, extra in cols:
        parts = [f"`{field}` {typ}"]
        if null == "NO":
            parts.append("NOT NULL")
        if dflt is not None:
            parts.append(f"DEFAULT '{dflt}'")
        elif null == "YES":
            parts.append("DEFAULT NULL")
        if extra == "auto_increment":
            parts.append("AUTO_INCREMENT")
        lines.append("  " + " ".join(parts))
    pk = [c[0] for c in cols if c[3] == "PRI"]
    if pk:
        lines.append("  PRIMARY KEY (" + ",".join(f"`{c}`" for c in pk) + ")")
    return f"CREATE TABLE `{tbl}` (\n" + ",\n".join(lines) + "\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
