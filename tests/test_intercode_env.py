"""InterCode-SQL environment: gold scoring, safety, concurrency, translation, data loading."""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from evoagent.envs import make_env
from evoagent.envs.intercode_sql import data as icdata
from evoagent.envs.intercode_sql.env import ERROR_PREFIX, InterCodeSQLEnv, shared_connection
from evoagent.errors import UserError


@pytest.fixture(scope="session")
def tasks(tmp_path_factory):
    import os

    os.environ.setdefault("EVOAGENT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    return {t.task_id: t for t in icdata.load_tasks()}


@pytest.fixture()
def env(tasks):
    e = InterCodeSQLEnv(timeout_s=1.0)
    yield e
    e.close()


def _checksum() -> str:
    con = shared_connection().cursor()
    h = hashlib.sha256()
    for schema, table in con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                                      "ORDER BY 1, 2").fetchall():
        rows = con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()
        h.update(repr((schema, table, sorted(map(repr, rows)))).encode())
    return h.hexdigest()


def test_registry(tasks):
    assert isinstance(make_env("intercode_sql"), InterCodeSQLEnv)
    with pytest.raises(UserError):
        make_env("nope")


def test_gold_subset_scores_one(env, tasks):
    for i in range(0, 1034, 7):
        t = tasks[f"sql/{i}"]
        if i in (54, 271, 525, 704, 710, 798, 803, 850, 967, 83, 301):
            continue  # these golds fail under MySQL's ONLY_FULL_GROUP_BY too
        env.reset(t)
        env.step(t.gold)
        assert env.step("submit")[1] == 1.0, t.task_id


def test_episode_protocol(env, tasks):
    t = tasks["sql/0"]
    assert env.reset(t) == t.question
    obs, r, done, info = env.step("SHOW TABLES")
    assert obs == "[('people',), ('poker_player',)]" and r == 0.0 and not done and info["valid"]
    obs, r, done, info = env.step("DESCRIBE poker_player")
    assert obs.startswith("[('Poker_Player_ID', 'int', 'NO', 'PRI', None, 'auto_increment')")
    obs, r, done, info = env.step("SELECT player_name FROM poker_players")
    assert obs.startswith(ERROR_PREFIX) and r == 0.0 and not info["valid"]
    assert "Table 'poker_player.poker_players' doesn't exist" in obs
    _, r, _, _ = env.step(t.gold)
    assert r == 1.0
    assert env.step("submit")[1:3] == (1.0, True)


@pytest.mark.parametrize("sql", [
    "DROP TABLE people", "INSERT INTO people VALUES (99, 'x', 'y', 'z', 1.0)", "UPDATE people SET Name = 'x'",
    "DELETE FROM people", "ATTACH '/tmp/x.duckdb' AS x", "COPY people TO '/tmp/evil.csv'",
    "SELECT * FROM read_csv('/etc/passwd')", "INSTALL httpfs", "LOAD httpfs", "SET threads = 64",
    "CREATE TABLE t AS SELECT 1", "SELECT 1; DROP TABLE people", "PRAGMA enable_profiling",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    "SELECT count(*) FROM range(100000000000) a, range(100000000000) b",
])
def test_unsafe_sql_is_an_error_observation(env, tasks, sql):
    before = _checksum()
    env.reset(tasks["sql/0"])
    obs, r, done, info = env.step(sql)
    assert obs.startswith(ERROR_PREFIX) and r == 0.0 and not done and not info["valid"]
    assert _checksum() == before


def test_concurrent_envs_match_sequential(tasks):
    chosen = [tasks[f"sql/{i}"] for i in range(0, 400, 5)]

    def run(t):
        e = InterCodeSQLEnv()
        e.reset(t)
        obs, r, _, _ = e.step(t.gold)
        e.close()
        return obs, r

    seq = [run(t) for t in chosen]
    with ThreadPoolExecutor(8) as pool:
        par = list(pool.map(run, chosen))
    assert par == seq


@pytest.mark.parametrize("action,expect", [
    ("SHOW TABLES;", "[('people',), ('poker_player',)]"),
    ("show full tables", "[('people',), ('poker_player',)]"),
    ("DESC `people`", "[('People_ID', 'int', 'NO', 'PRI', None, 'auto_increment'), ('Nationality', 'text', 'YES', '', None, '')"),
    ("SHOW COLUMNS FROM people", "[('People_ID', 'int'"),
    ("SELECT `Name` FROM `people` WHERE Nationality = \"Russia\" ORDER BY Name LIMIT 1", "[('Aleksey Ostapenko',)]"),
    ("SELECT Name FROM people ORDER BY Name LIMIT 1, 1", "[('Maksim Botin',)]"),
    ("SELECT IFNULL(NULL, 3), CONCAT('a', 'b')", "[(3, 'ab')]"),
    ("SELECT count(*) FROM people WHERE Nationality = 'russia'", "[(6,)]"),
    ("USE world_1", "None"),
])
def test_translation(env, tasks, action, expect):
    env.reset(tasks["sql/0"])
    assert env.step(action)[0].startswith(expect)


def test_mysql_group_by_rules(env, tasks):
    env.reset(tasks["sql/953"])
    ok = env.step("SELECT t1.id, t1.name FROM visitor AS t1 JOIN visit AS t2 ON t1.id = t2.visitor_id GROUP BY t1.id")
    assert ok[3]["valid"]
    bad = env.step("SELECT * FROM visitor AS t1 JOIN visit AS t2 ON t1.id = t2.visitor_id GROUP BY t1.id")
    assert bad[0].startswith(ERROR_PREFIX) and not bad[3]["valid"]


def test_misplaced_clause_is_syntax_error(env, tasks):
    env.reset(tasks["sql/0"])
    assert "error in your SQL syntax" in env.step("SELECT Name FROM people GROUP BY Name WHERE Height > 1")[0]


_TOP = "SELECT People_ID FROM poker_player ORDER BY Earnings DESC LIMIT 1"


@pytest.mark.parametrize("action", [
    f"SELECT Name FROM people WHERE People_ID IN ({_TOP})",
    f"SELECT Name FROM people WHERE People_ID NOT IN ({_TOP});",
    f"SELECT Name FROM people WHERE People_ID = ANY ({_TOP})",
    f"SELECT Name FROM people WHERE People_ID = SOME ({_TOP})",
    f"SELECT Name FROM people WHERE People_ID >= ALL ({_TOP})",
    f"SELECT Name, People_ID IN ({_TOP}) FROM people",
    "SELECT Name FROM people WHERE People_ID IN ((SELECT People_ID FROM poker_player) LIMIT 2)",
    f"SELECT Name FROM people WHERE People_ID IN (SELECT People_ID FROM poker_player UNION ({_TOP}))",
    f"SELECT Name FROM people WHERE Height > (SELECT max(Height) FROM people WHERE People_ID IN ({_TOP}))",
    f"SELECT n FROM (SELECT Name AS n FROM people WHERE People_ID IN ({_TOP})) AS q",
    f"SELECT Name FROM no_such_table WHERE id IN ({_TOP})",  # MySQL refuses before it looks for tables
])
def test_mysql_refuses_limit_in_quantified_subquery(env, tasks, action):
    env.reset(tasks["sql/0"])
    obs, _, _, info = env.step(action)
    assert obs == ERROR_PREFIX + "This version of MySQL doesn't yet support 'LIMIT & IN/ALL/ANY/SOME subquery'"
    assert not info["valid"]


@pytest.mark.parametrize("action", [
    f"SELECT Name FROM people WHERE People_ID IN (SELECT * FROM ({_TOP}) AS t)",  # a derived table may
    f"SELECT Name FROM people WHERE People_ID = ({_TOP})",
    f"SELECT Name FROM people WHERE EXISTS ({_TOP}) AND People_ID IN (SELECT People_ID FROM poker_player "
    "WHERE Earnings = (SELECT max(Earnings) FROM poker_player LIMIT 1)) LIMIT 1",
])
def test_mysql_allows_limit_outside_quantified_subquery(env, tasks, action):
    env.reset(tasks["sql/0"])
    assert env.step(action)[0] == "[('Maksim Botin',)]"


def test_duckdb_dialect_keeps_limit_in_subquery(tasks):
    e = InterCodeSQLEnv(timeout_s=1.0, dialect="duckdb")
    try:
        e.reset(tasks["sql/0"])
        assert e.step(f"SELECT Name FROM people WHERE People_ID IN ({_TOP})")[0] == "[('Maksim Botin',)]"
    finally:
        e.close()


def test_load_recorded_bundled(tasks):
    runs = icdata.bundled_runs()
    assert set(runs) == {"gpt-4", "gpt-3.5", "human"}
    trajs = icdata.load_recorded(runs["gpt-4"])
    assert len(trajs) == 1034 and trajs[0].source == "gpt-4" and trajs[0].task_id == "sql/0"
    assert trajs[0].steps[-1].reward == 1.0 and trajs[0].outcome_reward == 1.0
    human = icdata.load_recorded(runs["human"])
    assert len(human) == 15 and all(t.task_id in tasks for t in human)


def test_load_recorded_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        icdata.load_recorded(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not a JSON"):
        icdata.load_recorded(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"0": {"foo": 1}}))
    with pytest.raises(UserError, match="wrong.json"):
        icdata.load_recorded(wrong)
    lst = tmp_path / "list.json"
    lst.write_text("[1, 2]")
    with pytest.raises(UserError):
        icdata.load_recorded(lst)


def test_environment_implements_the_env_protocol() -> None:
    from evoagent.envs import Env
    from evoagent.envs.intercode_sql.data import load_tasks

    env = make_env("intercode_sql")
    assert isinstance(env, Env)
    task = next(t for t in load_tasks() if t.task_id == "sql/7")
    env.reset(task)
    env.step(task.gold)
    assert env.submit() == 1.0 and env.done
