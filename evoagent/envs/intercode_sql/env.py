"""The InterCode-SQL environment: the episode protocol, over SQL run in bounded worker processes.

``InterCodeSQLEnv`` keeps the episode (task, current database, last result,
reward) in the campaign's process and sends each action to a pool of SQL
worker processes (``sandbox``) that run it on the read-only benchmark
database (``executor``); the pool answers a statement it ran before from its
kept replies. ``step`` is total: whatever the action, it returns an
observation; a refused, failing, too slow or too large statement is an
``Error executing query:`` observation with reward 0. Bounds per statement:
``MAX_ACTION_CHARS`` of SQL, ``timeout_s`` of execution, ``max_rows`` rows and
``max_result_chars`` characters of rendered rows (more is cut, as rows past
``max_rows`` are), and the worker's memory caps (``sandbox.DATA_LIMIT_BYTES``
for the process, ``executor.MEMORY_LIMIT`` for DuckDB). Only a broken
installation escapes as an exception: ``sandbox.SandboxError`` when no SQL
worker can start at all.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from evoagent.envs.intercode_sql import dialect as _dialect
from evoagent.envs.intercode_sql.build import database_path
from evoagent.envs.intercode_sql.executor import (  # noqa: F401 - re-exported for callers and tests
    ERROR_PREFIX, MAX_ACTION_CHARS, Limits, action_problem, printable, shared_connection)
from evoagent.envs.intercode_sql.reward import intercode_reward
from evoagent.envs.intercode_sql.sandbox import close_workers, pool_for  # noqa: F401 - close_workers re-exported
from evoagent.errors import UserError
from evoagent.trajectory import Task

_gold_cache: dict[tuple[str, str, str, str], list[str]] = {}
_gold_lock = threading.Lock()


@dataclass(frozen=True)
class EpisodeState:
    """Everything an episode carries between steps (the database itself is read-only).

    ``last`` is the previous result's rows: shared, never copied, as the
    environment replaces that list and never changes it. ``config`` ties the
    state to the database file, collation and dialect it was produced under.
    """

    config: tuple[str, str, str]
    task: Task
    db: str
    done: bool
    last: list[str] | None
    reward: float | None


class InterCodeSQLEnv:
    """Gym-like InterCode-SQL: ``reset(task)`` then ``step(action)`` until ``submit``."""

    name = "intercode_sql"

    def __init__(self, *, dialect: str = "mysql", timeout_s: float = 5.0, max_rows: int = 100_000,
                 max_observation_chars: int = 100_000, max_result_chars: int = 8_000_000,
                 collation: str = "nocase", database: str | Path | None = None) -> None:
        if dialect not in _dialect.DIALECTS:
            raise UserError(f"unknown SQL dialect {dialect!r}; choose one of {', '.join(_dialect.DIALECTS)}")
        self.dialect, self.timeout_s, self.max_rows = dialect, timeout_s, max_rows
        self.max_observation_chars, self.max_result_chars = max_observation_chars, max_result_chars
        self.collation = collation
        self.limits = Limits(timeout_s, max_rows, max_result_chars, max_observation_chars)
        self.database = str(database or database_path())
        self._pool = pool_for(self.database, collation)
        self.task: Task | None = None
        self.db = ""
        self.done = True
        self._last: list[str] | None = None
        self._reward: float | None = None  # of ``_last``, scored when it was produced

    # -- episode protocol -------------------------------------------------
    def reset(self, task: Task) -> str:
        """Start an episode on ``task``; returns the question."""
        self.task, self.done, self._last, self._reward = task, False, None, None
        self.db = task.meta["db"]
        return task.question

    def step(self, action: str) -> tuple[str, float, bool, dict]:
        """Run one action; ``submit`` ends the episode and scores the last result."""
        if self.task is None:
            raise RuntimeError("call reset(task) before step()")
        if self.done:
            return ERROR_PREFIX + "the episode is over; call reset()", 0.0, True, {"valid": False}
        if isinstance(action, str) and action.strip().lower() == "submit":
            self.done = True
            reward = self.reward() if self._reward is None else self._reward
            return "submitted", reward, True, {"valid": True, "submitted": True}
        obs, rows, info = self.execute(action)
        self._last = rows
        self._reward = self.reward()
        return obs, self._reward, False, info

    def submit(self) -> float:
        """End the episode; the outcome reward (InterCode's, of the last result)."""
        return self.step("submit")[1]

    def reward(self) -> float:
        """InterCode reward of the last result against the gold result."""
        assert self.task is not None
        return intercode_reward(self._last, self.gold_rows(self.task))

    def snapshot(self) -> EpisodeState:
        """The episode's state now: a few references, no SQL (``envs.base.Restorable``)."""
        if self.task is None:
            raise RuntimeError("call reset(task) before snapshot()")
        return EpisodeState(self._config(), self.task, self.db, self.done, self._last, self._reward)

    def restore(self, state: EpisodeState) -> None:
        """Continue from ``state`` as if its steps had just been executed here."""
        if not isinstance(state, EpisodeState) or state.config != self._config():
            raise ValueError("restore() needs a snapshot of an InterCode-SQL environment with the same "
                             "database, collation and dialect")
        self.task, self.db, self.done = state.task, state.db, state.done
        self._last, self._reward = state.last, state.reward

    def _config(self) -> tuple[str, str, str]:
        return (self.database, self.collation, self.dialect)

    def close(self) -> None:
        """Nothing to release: the SQL workers belong to the process's pool (see ``close_workers``)."""

    # -- execution --------------------------------------------------------
    def execute(self, action: str) -> tuple[str, list[str] | None, dict]:
        """Observation, stringified rows (None on error) and info for one action, in the current database."""
        obs, rows, info, self.db = self._run(action, self.db, self.dialect)
        return obs, rows, info

    def gold_rows(self, task: Task) -> list[str]:
        """Stringified gold result, computed once per process ([] if gold fails, as InterCode scored it)."""
        key = (self.database, self.collation, task.meta["db"], task.gold)
        hit = _gold_cache.get(key)
        if hit is not None:
            return hit
        # Outside the lock: threads meeting new tasks do not queue behind each other's gold
        # query; two computing the same gold get the same rows and keep the first.
        _, rows, _, _ = self._run(task.gold, task.meta["db"], "mysql")
        with _gold_lock:
            return _gold_cache.setdefault(key, [] if rows is None else rows)

    def _run(self, action: str, db: str, dialect: str) -> tuple[str, list[str] | None, dict, str]:
        if problem := action_problem(action):  # refused here: never sent to a worker
            msg = printable(problem)
            return ERROR_PREFIX + msg, None, {"valid": False, "error": msg}, db
        reply = self._pool.run(action, db, dialect, self.limits)
        return reply["obs"], reply["rows"], reply["info"], reply["db"]
