"""The InterCode-SQL environment on an embedded, read-only DuckDB.

One DuckDB database per process, opened read-only with external access and
configuration changes locked, is shared by every environment; each
environment owns a cursor (DuckDB's per-thread session), so environments in
different threads never share mutable state. Agent SQL passes a statement
classifier (one SELECT-like statement or an emulated SHOW/DESCRIBE/USE), runs
under a per-statement time limit enforced by a watchdog thread that
interrupts the cursor, and every failure becomes an ``Error executing query:``
observation, never an exception.
"""
from __future__ import annotations

import heapq
import itertools
import re
import threading
import time
from typing import Any

import duckdb

from evoagent.envs.intercode_sql import dialect as _dialect
from evoagent.envs.intercode_sql.build import META_SCHEMA, database_path
from evoagent.envs.intercode_sql.groupby import full_group_by
from evoagent.envs.intercode_sql.reward import intercode_reward
from evoagent.errors import UserError
from evoagent.trajectory import Task

ERROR_PREFIX = "Error executing query: "
_SYNTAX = ("You have an error in your SQL syntax; check the manual that corresponds to your "
           "MySQL server version for the right syntax to use")

_RANDOM = re.compile(r"\brand(om)?\s*\(", re.I)  # MySQL RAND(), DuckDB RANDOM()
_lock = threading.Lock()
_shared: dict[str, Any] = {}
_gold_cache: dict[tuple[str, str, str], list[str] | None] = {}
_gold_lock = threading.Lock()


class _Watchdog:
    """One thread that interrupts cursors whose statement ran past its deadline."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []
        self._live: set[int] = set()
        self._ids = itertools.count()
        threading.Thread(target=self._run, name="evoagent-sql-watchdog", daemon=True).start()

    def arm(self, cursor: Any, seconds: float) -> int:
        token = next(self._ids)
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
                    self._cv.wait(delay)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(token)
                try:
                    cursor.interrupt()
                except Exception:  # noqa: BLE001 - a closed cursor needs no interrupt
                    pass


def shared_connection(collation: str = "nocase") -> duckdb.DuckDBPyConnection:
    """The process-wide read-only connection (opened on first use)."""
    with _lock:
        con = _shared.get(collation)
        if con is None:
            config = {"enable_external_access": False, "autoload_known_extensions": False,
                      "autoinstall_known_extensions": False, "memory_limit": "2GB", "threads": 1,
                      "lock_configuration": True}
            if collation:
                config["default_collation"] = collation
            con = duckdb.connect(str(database_path()), read_only=True, config=config)
            _shared[collation] = con
            if "catalog" not in _shared:
                rows = con.execute(f"SELECT db, tbl, field, type, nullable, key, dflt, extra FROM "
                                   f"{META_SCHEMA}.columns ORDER BY db, tbl, ordinal").fetchall()
                catalog: dict[str, dict[str, list[tuple]]] = {}
                for db, tbl, *col in rows:
                    catalog.setdefault(db, {}).setdefault(tbl, []).append(tuple(col))
                _shared["catalog"] = catalog
                _shared["db_names"] = {d.lower(): d for d in catalog}  # MySQL names: case-insensitive
                _shared["watchdog"] = _Watchdog()
        return con


def _mysql_error(msg: str, db: str, sql: str) -> str:
    """DuckDB's message reworded the way MySQL said the same thing, where common."""
    first = msg.split("\n", 1)[0]
    if m := re.search(r"Table with name ([^ ]+) does not exist", first):
        return f"Table '{db}.{m.group(1)}' doesn't exist"
    if m := re.search(r'Referenced column "?([^" ]+)"? not found', first):
        return f"Unknown column '{m.group(1)}' in 'field list'"
    if first.startswith("Parser Error") or "syntax error" in first:
        return f"{_SYNTAX} near '{sql[:80]}' at line 1"
    if "INTERRUPT" in first.upper():
        return "Query execution was interrupted, maximum statement execution time exceeded"
    return first


class InterCodeSQLEnv:
    """Gym-like InterCode-SQL: ``reset(task)`` then ``step(action)`` until ``submit``."""

    name = "intercode_sql"

    def __init__(self, *, dialect: str = "mysql", timeout_s: float = 5.0, max_rows: int = 100_000,
                 max_observation_chars: int = 100_000, collation: str = "nocase") -> None:
        if dialect not in _dialect.DIALECTS:
            raise UserError(f"unknown SQL dialect {dialect!r}; choose one of {', '.join(_dialect.DIALECTS)}")
        self.dialect, self.timeout_s, self.max_rows = dialect, timeout_s, max_rows
        self.max_observation_chars = max_observation_chars
        self.collation = collation
        self._cursor = shared_connection(collation).cursor()
        self._cursor.execute(_dialect.NUMERIC_MACRO)
        self._catalog: dict[str, dict[str, list[tuple]]] = _shared["catalog"]
        self._db_names: dict[str, str] = _shared["db_names"]
        self._watchdog: _Watchdog = _shared["watchdog"]
        self.task: Task | None = None
        self.db = ""
        self.done = True
        self._last: list[str] | None = None
        self._reward: float | None = None  # of ``_last``, scored when it was produced

    # -- episode protocol -------------------------------------------------
    def reset(self, task: Task) -> str:
        """Start an episode on ``task``; returns the question."""
        self.task, self.done, self._last, self._reward = task, False, None, None
        self._use(task.db)
        return task.question

    def step(self, action: str) -> tuple[str, float, bool, dict]:
        """Run one action; ``submit`` ends the episode and scores the last result."""
        if self.task is None:
            raise RuntimeError("call reset(task) before step()")
        if self.done:
            return ERROR_PREFIX + "the episode is over; call reset()", 0.0, True, {"valid": False}
        if action.strip().lower() == "submit":
            self.done = True
            reward = self.reward() if self._reward is None else self._reward
            return "submitted", reward, True, {"valid": True, "submitted": True}
        obs, rows, info = self.execute(action)
        self._last = rows
        self._reward = self.reward()
        return obs, self._reward, False, info

    def reward(self) -> float:
        """InterCode reward of the last result against the gold result."""
        assert self.task is not None
        return intercode_reward(self._last, self.gold_rows(self.task))

    def close(self) -> None:
        """Release this environment's cursor."""
        try:
            self._cursor.close()
        except Exception:  # noqa: BLE001
            pass

    # -- execution --------------------------------------------------------
    def gold_rows(self, task: Task) -> list[str] | None:
        """Stringified gold result, computed once per process (None if gold fails)."""
        key = (self.collation, task.db, task.gold)
        hit = _gold_cache.get(key, _gold_cache)
        if hit is not _gold_cache:
            return hit  # type: ignore[return-value]
        # Outside the lock: threads meeting new tasks do not queue behind each other's gold
        # query; two computing the same gold get the same rows and keep the first.
        saved_db, saved_dialect = self.db, self.dialect
        self.dialect = "mysql"
        self._use(task.db)
        _, rows, _ = self.execute(task.gold)
        self._use(saved_db)
        self.dialect = saved_dialect
        with _gold_lock:  # InterCode scored a failing gold as []
            return _gold_cache.setdefault(key, [] if rows is None else rows)

    def _use(self, db: str) -> bool:
        real = self._db_names.get(db.lower())
        if real is None:
            return False
        self._cursor.execute(f'USE "{real}"')
        self.db = real
        return True

    def execute(self, action: str) -> tuple[str, list[str] | None, dict]:
        """Observation, stringified rows (None on error) and info for one action."""
        p = _dialect.plan(action, self.dialect)
        try:
            if p.kind == "sql":
                rows, truncated = self._run_sql(p.arg)
            elif p.kind == "error":
                raise _Refused(p.arg)
            else:
                return self._admin(p)
        except _Refused as err:
            return ERROR_PREFIX + str(err), None, {"valid": False, "error": str(err)}
        except duckdb.Error as err:
            msg = _mysql_error(str(err), self.db, p.arg)
            return ERROR_PREFIX + msg, None, {"valid": False, "error": msg}
        obs, strs = _render(rows)
        if len(obs) > self.max_observation_chars:
            obs = obs[: self.max_observation_chars] + " ... (output truncated)"
        return obs, strs, {"valid": True, "rows": len(rows), "truncated": truncated}

    def _run_sql(self, sql: str) -> tuple[list[tuple], bool]:
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
        token = self._watchdog.arm(cur, self.timeout_s)
        try:
            for attempt in range(3):
                try:
                    cur.execute(sql)
                    break
                except (duckdb.BinderException, duckdb.ConversionException) as err:
                    if attempt == 2 or self.dialect != "mysql":
                        raise
                    sql = self._mysql_retry(sql, str(err))
            rows = cur.fetchmany(self.max_rows + 1) if cur.description is not None else []
        finally:
            self._watchdog.disarm(token)
        truncated = len(rows) > self.max_rows
        return rows[: self.max_rows], truncated

    def _mysql_retry(self, sql: str, msg: str) -> str:
        """SQL rewritten the way MySQL would have read it, after DuckDB refused ``sql``."""
        if "GROUP BY clause" in msg or "aggregate function" in msg:
            new, err = full_group_by(sql, _catalog_fn(self.db))
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

    def _admin(self, p: _dialect.Plan) -> tuple[str, list[str] | None, dict]:
        db = self._db_names.get((p.db or self.db).lower()) if (p.db or self.db) else None
        if p.kind == "use":
            if not self._use(p.arg):
                return self._fail(f"Unknown database '{p.arg}'")
            return "None", None, {"valid": True}
        if p.kind == "show_databases":
            names = ["information_schema", *sorted(self._catalog, key=str.lower), "mysql",
                     "performance_schema", "sys"]
            rows: list[tuple] = [(n,) for n in names]
        elif db is None:
            return self._fail(f"Unknown database '{p.db}'" if p.db else "No database selected")
        elif p.kind == "show_tables":
            like = re.compile("^" + re.escape(p.arg).replace("%", ".*").replace("_", ".") + "$", re.I) if p.arg else None
            rows = [(t,) for t in sorted(self._catalog[db], key=str.lower) if like is None or like.match(t)]
        else:
            tables = {t.lower(): t for t in self._catalog[db]}
            tbl = tables.get(p.arg.lower())
            if tbl is None:
                return self._fail(f"Table '{db}.{p.arg}' doesn't exist")
            cols = self._catalog[db][tbl]
            if p.kind == "describe":
                rows = [tuple(c) for c in cols]
            else:
                rows = [(tbl, _create_table(tbl, cols))]
        obs, strs = _render(rows)
        return obs, strs, {"valid": True, "rows": len(rows)}

    @staticmethod
    def _fail(msg: str) -> tuple[str, None, dict]:
        return ERROR_PREFIX + msg, None, {"valid": False, "error": msg}


def _render(rows: list[tuple]) -> tuple[str, list[str]]:
    """(observation, stringified rows): the observation is ``str(rows)``, from the rows' strings."""
    strs = [str(r) for r in rows]  # a tuple's str is its repr, as inside str(list)
    return "[" + ", ".join(strs) + "]", strs


_catalog_fns: dict[str, Any] = {}


def _catalog_fn(db: str) -> Any:
    """A hashable lookup table -> (lower-case columns, key column sets) for one database."""
    fn = _catalog_fns.get(db)
    if fn is None:
        tables = {t.lower(): cols for t, cols in _shared["catalog"].get(db, {}).items()}

        def fn(name: str, _t: dict = tables) -> tuple[list[str], list[frozenset[str]]] | None:
            cols = _t.get(name.lower())
            if cols is None:
                return None
            pk = frozenset(c[0].lower() for c in cols if c[3] == "PRI")
            uni = [frozenset([c[0].lower()]) for c in cols if c[3] == "UNI" and c[2] == "NO"]
            return [c[0].lower() for c in cols], [k for k in [pk, *uni] if k]
        _catalog_fns[db] = fn
    return fn


class _Refused(Exception):
    """A statement we will not run; becomes an error observation."""


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
