"""Hostile actions: each is an observation (never an exception), in bounded memory, writing no file.

The environment runs agent SQL in worker processes capped by RLIMIT_DATA
(``sandbox.DATA_LIMIT_BYTES``, 1 GiB); the documented bound checked here is
1.5 GB of peak RSS for every process involved (the environment's and each
SQL worker's), measured by ``ru_maxrss`` in a separate process.
"""
from __future__ import annotations

import hashlib
import os
import signal
import sys
from pathlib import Path

import pytest

from evoagent.envs.intercode_sql import data as icdata
from evoagent.envs.intercode_sql.build import database_path
from evoagent.envs.intercode_sql.env import ERROR_PREFIX, MAX_ACTION_CHARS, InterCodeSQLEnv, Limits
from evoagent.envs.intercode_sql.sandbox import WorkerPool, pool_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
from env_memory import CASES, run_actions, where_chain  # noqa: E402

RSS_BOUND_MB = 1536  # the README's bound: every process of the environment stays under 1.5 GB
TOO_DEEP = "SELECT " + "(" * 1000 + "1" + ")" * 1000


@pytest.fixture(scope="module")
def task0():
    return next(t for t in icdata.load_tasks() if t.task_id == "sql/0")


@pytest.fixture(params=["mysql", "duckdb"])
def env(request, task0):
    e = InterCodeSQLEnv(dialect=request.param, timeout_s=2.0)
    e.reset(task0)
    yield e
    e.close()


def _is_error(step: tuple) -> bool:
    obs, reward, done, info = step
    return isinstance(obs, str) and obs.startswith(ERROR_PREFIX) and reward == 0.0 and not done and not info["valid"]


# -- item 5: failures of translation, execution and rendering are observations --------------------
@pytest.mark.parametrize("action", [
    "SELECT 'a\ud800b'",  # lone surrogate: DuckDB's binding refused the text with a TypeError
    "SELECT Name FROM people WHERE Name = '\udfff'",
    "SELECT INTERVAL 1000000000 DAY",  # fetched as a timedelta: OverflowError
    TOO_DEEP,  # sqlglot recursion in the MySQL dialect; DuckDB's depth limit in its own
])
def test_step_is_total(env, action):
    assert _is_error(env.step(action))
    assert env.step("SELECT 42")[0] == "[(42,)]"  # the environment is still usable afterwards
    obs, rows, info = env.execute(action)  # replay's path: the same, never an exception
    assert obs.startswith(ERROR_PREFIX) and rows is None and not info["valid"]


def test_messages_are_printable(env):
    obs = env.step("SELECT 'x\ud800y'")[0]
    obs.encode("utf-8")  # no lone surrogate survives into an observation (it is stored as text)
    assert "\\ud800" in obs


def test_unknown_database_keeps_the_current_one(env):
    assert _is_error(env.step("USE no_such_db"))
    assert env.step("SELECT count(*) FROM people")[0] == "[(7,)]"  # still in poker_player


def test_non_text_action_is_an_observation(env):
    assert _is_error(env.step(None))  # type: ignore[arg-type]


# -- item 6: bounded bytes, action length, memory ----------------------------------------------------
def test_result_is_cut_at_the_character_budget(env):
    obs, _, _, info = env.step("SELECT concat(repeat('x', 1000), range) FROM range(20000)")  # ~20 M characters
    assert info["valid"] and info["truncated"]
    assert 1000 < info["rows"] < 20000 and info["rows"] * 1008 <= env.max_result_chars
    assert obs.endswith("... (output truncated)") and len(obs) < env.max_observation_chars + 100
    assert env.execute("SELECT range FROM range(50)")[2] == {"valid": True, "rows": 50, "truncated": False}


def test_a_first_row_over_the_budget_is_an_error(task0):
    env = InterCodeSQLEnv(timeout_s=2.0, max_result_chars=1_000_000)
    env.reset(task0)
    step = env.step("SELECT repeat('x', 2000000)")
    assert _is_error(step) and "1,000,000 characters" in step[0]


def test_row_cap_is_unchanged(task0):
    env = InterCodeSQLEnv(timeout_s=2.0, max_rows=1000)
    env.reset(task0)
    _, _, _, info = env.step("SELECT range FROM range(5000)")
    assert info["rows"] == 1000 and info["truncated"]


def test_action_length_is_limited(env, task0):
    long = "SELECT 1 /*" + "x" * MAX_ACTION_CHARS + "*/"
    step = env.step(long)
    assert _is_error(step) and f"{MAX_ACTION_CHARS:,}" in step[0]
    patient = InterCodeSQLEnv(dialect=env.dialect, timeout_s=60.0)
    patient.reset(task0)
    assert patient.step(where_chain(380))[0] == "[]"  # just under the limit: runs


def test_worker_connection_is_bounded(env):
    """DuckDB's own memory is limited, it runs one thread, and it never spills to disk (a hostile
    sort would fill it): with no temp directory an oversized sort is an Out of Memory observation."""
    obs = env.step("SELECT current_setting('memory_limit'), current_setting('threads'), "
                   "current_setting('temp_directory')")[0]
    assert obs == "[('488.2 MiB', 1, '')]"


def test_an_unbounded_time_limit_leaves_others_bounded(task0):
    unbounded = InterCodeSQLEnv(timeout_s=float("inf"))
    unbounded.reset(task0)
    assert unbounded.step("SELECT 1")[0] == "[(1,)]"
    bounded = InterCodeSQLEnv(timeout_s=0.2)
    bounded.reset(task0)
    assert "interrupted" in bounded.step("SELECT count(*) FROM range(5000000000)")[0]  # ~5 s unchecked


def test_a_killed_worker_is_replaced(task0):
    pool = WorkerPool(InterCodeSQLEnv().database, "nocase", size=1, grace_s=0.5)
    try:
        assert pool.run("SELECT 7", task0.meta["db"], "mysql", Limits())["obs"] == "[(7,)]"
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGKILL)
        reply = pool.run("SELECT count(*) FROM people", task0.meta["db"], "mysql", Limits())
        assert reply["obs"] == "[(7,)]" and pool.started == 2
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGSTOP)  # a worker that never answers: ended at the statement's deadline
        reply = pool.run("SELECT 8", task0.meta["db"], "mysql", Limits(timeout_s=0.1))
        assert reply["obs"].startswith(ERROR_PREFIX + "Query execution was interrupted")
        assert pool.run("SELECT 9", task0.meta["db"], "mysql", Limits())["obs"] == "[(9,)]" and pool.started == 3
    finally:
        pool.close()


HOSTILE: list[tuple] = [("mysql", a) for name, a in CASES.items() if "DISTINCT" not in name] + [
    ("duckdb", CASES["lone surrogate"]),
    ("duckdb", TOO_DEEP),
    ("duckdb", "SELECT list_resize([1], 500000000)"),  # a 4 GB list value
    ("duckdb", "SELECT lpad('x', 2000000000, 'y')"),
    ("duckdb", "SELECT repeat([1, 2, 3, 4], 100000000)"),
    ("duckdb", "SELECT count(*) FROM range(100000000000) a, range(100000000000) b"),
    ("duckdb", "SELECT * FROM read_text('/etc/passwd')"),
    ("duckdb", "COPY (SELECT 1) TO 'copied.csv'"),
    ("duckdb", "SELECT 1; SELECT 2"),
    ("duckdb", "PRAGMA memory_limit='100GB'"),
    ("mysql", "SELECT * FROM people a, people b, people c, people d, people e, people f"),  # 117,649 rows
    ("mysql", "SELECT unnest(range(100000000))"),
    ("mysql", "EXPLAIN ANALYZE SELECT count(*) FROM range(1000000000)"),
    ("mysql", "SELECT '\x00'"),
    ("mysql", ";;;"),
    ("mysql", "USE no_such_db"),
    ("mysql", "USE poker_player"),
    ("mysql", "SELECT length(repeat('x', 300000000))", 60.0),  # 300 MB at once: fits a recycled worker
    ("mysql", "SELECT count(*) FROM people"),
]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow  # ~20 s of worker processes at their memory cap: in .ci/run's slow step
def test_hostile_actions_are_observations_in_bounded_memory(tmp_path):
    db_file = database_path()
    before = (_digest(db_file), sorted(os.listdir(db_file.parent)))
    r = run_actions(HOSTILE, timeout_s=1.0, kill_mb=2 * RSS_BOUND_MB, cwd=tmp_path)
    assert not r["killed"] and r["error"] is None, r["error"]
    assert len(r["results"]) == len(HOSTILE)
    for (dialect, action, *_), out in zip(HOSTILE, r["results"]):
        assert not out["obs"].startswith("RAISED"), (dialect, action[:80], out["obs"])
        assert out["valid"] is not None
    assert r["results"][-1]["obs"] == "[(7,)]" and r["results"][-2]["obs"] == "[(300000000,)]"
    assert r["self_mb"] < RSS_BOUND_MB and r["workers_mb"] < RSS_BOUND_MB, r
    assert (_digest(db_file), sorted(os.listdir(db_file.parent))) == before  # no spill file, no change
    assert os.listdir(tmp_path) == []  # nothing written where the environment ran



def test_a_repeated_statement_is_answered_from_the_kept_replies(task0):
    """A statement seen before is answered without a worker; outcomes of the moment (a statement
    interrupted at its time limit) are never kept."""
    db = task0.meta["db"]
    pool = pool_for(InterCodeSQLEnv().database, "nocase")  # the process's pool (warm if a test used it)
    ran, repeated = pool.executed, pool.repeated
    first = pool.run("SELECT count(*) FROM people  -- kept", db, "mysql", Limits())
    again = pool.run("SELECT count(*) FROM people  -- kept", db, "mysql", Limits())
    assert again == first == {"obs": "[(7,)]", "rows": ["(7,)"], "info": {"valid": True, "rows": 1,
                                                                        "truncated": False}, "db": db}
    assert again is not first and (pool.executed - ran, pool.repeated - repeated) == (1, 1)
    assert pool.run("SELECT count(*) FROM people  -- kept", "no_such_db", "mysql", Limits()) != first  # db: in the key
    for _ in range(2):
        assert "interrupted" in pool.run("SELECT count(*) FROM range(5000000000)", db, "mysql",
                                         Limits(timeout_s=0.05))["obs"]
    assert (pool.executed - ran, pool.repeated - repeated) == (4, 1)


def test_kept_replies_stay_under_their_bound():
    pool = WorkerPool(InterCodeSQLEnv().database, "nocase", size=1, cache_bytes=8 * 600)  # starts no worker
    reply = {"obs": "[(1,)]", "rows": ["(1,)"], "info": {"valid": True}, "db": "x"}
    for i in range(30):
        pool._keep((f"SELECT {i}", "x", "mysql", Limits()), reply, b"x" * 300)
    assert 0 < pool._kept <= pool.cache_bytes and ("SELECT 29", "x", "mysql", Limits()) in pool._replies
    assert ("SELECT 0", "x", "mysql", Limits()) not in pool._replies  # least recently used: out first
    pool._keep(("SELECT big", "x", "mysql", Limits()), reply, b"x" * 1000)  # over an eighth of the bound
    assert ("SELECT big", "x", "mysql", Limits()) not in pool._replies
    oom = {**reply, "info": {"valid": False, "error": "Out of Memory Error: ..."}}
    pool._keep(("SELECT oom", "x", "mysql", Limits()), oom, b"x")
    assert ("SELECT oom", "x", "mysql", Limits()) not in pool._replies
