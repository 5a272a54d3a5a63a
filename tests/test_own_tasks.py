"""Bring your own tasks: an InterCode-format task file and MySQL dump (``env.tasks``/``env.dump``),
built into its own cached DuckDB file; failing gold queries listed, not fatal."""
from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner, Result

from evoagent import campaign, launch
from evoagent.cli import main
from evoagent.envs.intercode_sql import build
from evoagent.envs.intercode_sql import data as icdata
from evoagent.envs.intercode_sql.env import InterCodeSQLEnv
from evoagent.errors import UserError
from evoagent.testing.fake_server import FakeAnthropic
from stores import SnapshotStore

DATA = Path(__file__).parent / "data"
TASKS, DUMP = DATA / "own_tasks.json", DATA / "own_dump.sql"
FAILING_GOLD = "own_tasks/5: Table 'clinic.patients' doesn't exist"
CAMPAIGN = """
name = "own"
mu = 2
lambda = 2
concurrency = 2
[env]
kind = "intercode_sql"
{env}
[policy]
kind = "replay"
[budget]
generations = 1
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("EVOAGENT_CACHE_DIR", str(folder))
    return folder


def test_own_dump_builds_its_own_cached_database(cache: Path, tmp_path: Path) -> None:
    path = build.database_path(DUMP)
    assert path.parent == cache and list(cache.glob("*.duckdb")) == [path]
    stamp = path.stat().st_mtime_ns
    assert build.database_path(DUMP) == path and path.stat().st_mtime_ns == stamp  # cached, not rebuilt
    changed = tmp_path / "changed.sql"
    changed.write_text(DUMP.read_text().replace("'Ada', 3", "'Ada', 4"))
    assert build.database_path(changed) != path  # keyed by content
    assert build.catalog(path) == {
        "library": {"author": ["author_id", "name", "born", "country"],
                    "book": ["book_id", "title", "author_id", "year", "price"]},
        "clinic": {"patient": ["id", "name", "visits", "last_visit"]}}


def test_environment_scores_own_gold_and_lists_the_failing_one(cache: Path) -> None:
    db = build.database_path(DUMP)
    tasks = icdata.with_schemas(icdata.load_tasks(TASKS), build.catalog(db))
    assert [t.task_id for t in tasks] == [f"own_tasks/{i}" for i in range(6)]
    assert tasks[1].meta["schema"]["book"][1] == "title"  # no db_tables in the file: taken from the dump
    env = InterCodeSQLEnv(database=db)
    try:
        assert icdata.gold_failures(tasks, env) == [tuple(FAILING_GOLD.split(": ", 1))]
        env.reset(tasks[1])
        obs, reward, _, _ = env.step(tasks[1].gold)
        assert reward == 1.0 and obs == "[('At Swim-Two-Birds',), ('The Third Policeman',)]"
        env.reset(tasks[4])
        assert env.step("SELECT * FROM patient WHERE id = 1")[0] == \
            "[(1, 'Ada', 3, datetime.datetime(2023, 3, 1, 9, 30))]"
        assert env.step("DESCRIBE patient")[0].startswith("[('id', 'int', 'NO', 'PRI', None, '')")
    finally:
        env.close()


DUMP_FORMS = """
-- a one-database mysqldump: no CREATE DATABASE, no USE
SET NAMES utf8mb4;
/*!40101 SET character_set_client = utf8mb4 */;
DELIMITER ;;
CREATE PROCEDURE p() BEGIN INSERT INTO t VALUES (99, 'x', NULL, 0); END ;;
DELIMITER ;
# a MySQL comment
CREATE TABLE IF NOT EXISTS t (id int unsigned NOT NULL, label varchar(20) DEFAULT 'a,b',
  made timestamp NULL DEFAULT NULL, flag bit(1), PRIMARY KEY (id), UNIQUE KEY u (label));
LOCK TABLES t WRITE;
INSERT IGNORE INTO t VALUES (1, _utf8mb4'one', '0000-00-00 00:00:00', b'1');
REPLACE INTO `t` (`label`, `id`) VALUES ("it's", 2);
INSERT INTO t VALUES (3, x'6869', '2020-1-2 3:04:05', TRUE);
UNLOCK TABLES;
"""


def test_dump_forms_beyond_mysqldump_defaults() -> None:
    (t,) = build.parse_dump(DUMP_FORMS, default_db="shop")
    assert (t.db, t.name) == ("shop", "t")
    assert t.rows == [[1, "one", "0000-00-00 00:00:00", 1], [2, "it's", None, None],
                      [3, "hi", "2020-1-2 3:04:05", 1]]
    cols = {c.name: c for c in t.columns}
    assert (cols["id"].mysql_type, cols["id"].key, cols["id"].nullable) == ("int unsigned", "PRI", False)
    assert (cols["label"].key, cols["label"].default) == ("UNI", "a,b")
    con = duckdb.connect(":memory:")
    build.load_into(con, [t])
    assert con.execute("SELECT made FROM shop.t ORDER BY id").fetchall() == \
        [(None,), (None,), (dt.datetime(2020, 1, 2, 3, 4, 5),)]  # MySQL's zero date reads as None


@pytest.mark.parametrize("text, words", [
    ("CREATE DATABASE d; USE d; INSERT INTO t VALUES (1);", "before its CREATE TABLE"),
    ("USE d; CREATE TABLE t (a double); INSERT INTO t VALUES (1), (nan);", "cannot parse VALUES"),
    ("USE d; CREATE TABLE t (a int, b int); INSERT INTO t VALUES (1);", "a row of 1 values for the 2 columns"),
    ("USE d; CREATE TABLE t (a int); INSERT INTO t VALUES ('many');", "cannot store 'many'"),
    ("USE d; CREATE TABLE t (a date); INSERT INTO t VALUES ('yesterday');", "cannot store 'yesterday'"),
    ("USE main; CREATE TABLE t (a int);", "reserved"),
    ("CREATE USER 'admin'@'%'; GRANT ALL PRIVILEGES ON *.* TO 'admin'@'%'; FLUSH PRIVILEGES;", "no CREATE TABLE"),
    ("USE d; CREATE TABLE t LIKE u;", "not supported"),
])
def test_broken_dump_is_one_line(cache: Path, tmp_path: Path, text: str, words: str) -> None:
    dump = tmp_path / "broken.sql"
    dump.write_text(text)
    with pytest.raises(UserError) as err:
        build.database_path(dump)
    msg = str(err.value)
    assert "\n" not in msg and str(dump) in msg and words in msg, msg
    assert not list(cache.glob("*.duckdb*")) if cache.exists() else True  # nothing half-built


def test_dump_that_is_not_utf8_or_missing(cache: Path, tmp_path: Path) -> None:
    latin = tmp_path / "latin.sql"
    latin.write_bytes(b"USE d; CREATE TABLE t (a text); INSERT INTO t VALUES ('caf\xe9');")
    with pytest.raises(UserError, match="not UTF-8"):
        build.database_path(latin)
    with pytest.raises(UserError, match="no such file"):
        build.database_path(tmp_path / "nothing.sql")


def _copy_data(folder: Path) -> None:
    folder.mkdir(parents=True)
    shutil.copy(TASKS, folder / TASKS.name)
    shutil.copy(DUMP, folder / DUMP.name)


def _run(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> Result:
    """The CLI in this process (its SQL workers are reused across tests), from ``cwd``."""
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(main, args)


def test_campaign_on_own_tasks_paths_relative_to_the_campaign_file(tmp_path: Path, cache: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _copy_data(tmp_path / "project" / "data")
    cfg = tmp_path / "project" / "own.toml"
    cfg.write_text(CAMPAIGN.format(env='tasks = "data/own_tasks.json"\ndump = "data/own_dump.sql"'))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = _run(["run", str(cfg), "--store", "s.duckdb"], elsewhere, monkeypatch)
    assert out.exit_code == 0, out.output
    assert "1 of 6 gold queries do not run" in out.stderr and FAILING_GOLD in out.stderr
    reader = SnapshotStore(elsewhere / "s.duckdb")
    try:
        tasks = reader.query("SELECT task_id, db, question FROM tasks ORDER BY task_id").to_pylist()
        stored = json.loads(reader.get_meta("campaign"))
    finally:
        reader.close()
    assert [(t["task_id"], t["db"]) for t in tasks] == \
        [(f"own_tasks/{i}", "clinic" if i >= 4 else "library") for i in range(6)]
    # absolute, so the stored campaign resumes from any folder, on the same data only
    assert stored["env.tasks"] == str((tmp_path / "project" / "data" / "own_tasks.json").resolve())
    dump = tmp_path / "project" / "data" / "own_dump.sql"
    dump.write_text(dump.read_text().replace("'Ada', 3", "'Ada', 4"))
    changed = _run(["resume", str(elsewhere / "s.duckdb"), "--set", "budget.generations=2"], tmp_path, monkeypatch)
    assert changed.exit_code == 2 and "changed since the campaign started" in changed.stderr, changed.output


def test_set_paths_are_relative_to_the_working_directory(tmp_path: Path, cache: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _copy_data(tmp_path / "data")
    cfg = tmp_path / "conf" / "own.toml"
    cfg.parent.mkdir()
    cfg.write_text(CAMPAIGN.format(env=""))
    missing = _run(["run", str(cfg), "--store", "bad.duckdb", "--set", "env.tasks=own_tasks.json"], tmp_path,
                   monkeypatch)
    assert missing.exit_code == 2 and missing.stderr.count("\n") == 1
    assert re.search(r"--set: key 'env.tasks': no such file .*own_tasks.json", missing.stderr), missing.stderr
    assert not (tmp_path / "bad.duckdb").exists()
    out = _run(["run", str(cfg), "--store", "s.duckdb", "--set", "env.tasks=data/own_tasks.json",
                "--set", "env.dump=data/own_dump.sql", "--set", 'tasks.dbs=["clinic"]'], tmp_path, monkeypatch)
    assert out.exit_code == 0, out.output
    assert FAILING_GOLD in out.stderr


def _gold_answers(body: dict) -> dict:
    """A stand-in model that knows the answers: runs the task's gold query, then submits."""
    golds = {t.question: t.gold for t in icdata.load_tasks(TASKS)}
    first = body["messages"][0]["content"]
    text = first if isinstance(first, str) else "\n".join(b.get("text", "") for b in first)
    question = re.search(r"^Question: (.*)$", text, re.M).group(1)  # type: ignore[union-attr]
    if any(m["role"] == "assistant" for m in body["messages"]):
        call = {"name": "submit", "input": {}}
    else:
        call = {"name": "execute_sql", "input": {"query": golds[question]}}
    return {"content": [{"type": "tool_use", "id": "toolu_own", **call}], "stop_reason": "tool_use"}


@pytest.mark.slow  # ~12 s, most of it starting the LLM client; the replay-policy campaigns above run by default
def test_llm_campaign_solves_own_tasks_on_own_database(tmp_path: Path, cache: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "own.toml"
    cfg.write_text(CAMPAIGN.format(env=f'tasks = "{TASKS}"\ndump = "{DUMP}"'))
    with FakeAnthropic(_gold_answers) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
        c = campaign.load(cfg, ['policy.kind="anthropic"', "operators.llm=false", "policy.retry_base_s=0.01",
                                "lambda=1", "budget.generations=0"])
        out = launch.start(c, str(tmp_path / "s.duckdb"))
    assert out.status == "completed"
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)  # the writer is closed: read its file
    try:
        rows = con.execute("SELECT task_id, max(outcome_reward) FROM trajectories GROUP BY ALL").fetchall()
    finally:
        con.close()
    assert dict(rows) == {f"own_tasks/{i}": (0.0 if i == 5 else 1.0) for i in range(6)}
