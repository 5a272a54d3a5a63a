"""The command line: examples in every --help, one-line errors with exit 2, live reads."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from evoagent.cli import main
from stores import SnapshotStore
from tests.conftest import cli, cli_env


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,)


@pytest.mark.parametrize("path", list(all_commands(main)), ids=" ".join)
def test_every_command_has_an_example(path: tuple[str, ...]) -> None:
    out = CliRunner().invoke(main, [*path, "--help"])
    assert out.exit_code == 0
    assert "Example:" in out.output and "evoagent " + " ".join(path) in out.output


@pytest.mark.parametrize("args, words", [
    (["import", "intercode", "missing.json", "--store", "{tmp}/s.duckdb"], "missing.json"),
    (["import", "intercode", "{tmp}/bad.json", "--store", "{tmp}/s.duckdb"], "bad.json"),
    (["replay", "intercode", "{tmp}/bad.json"], "bad.json"),
    (["sql", "{tmp}/nothing.duckdb", "SELECT 1"], "no store"),
    (["run", "{tmp}/nothing.toml", "--store", "{tmp}/s.duckdb"], "not found"),
    (["resume", "{tmp}/nothing.duckdb"], "no store"),
])
def test_user_mistakes_are_one_line_and_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    (tmp_path / "bad.json").write_text("{ not json")
    out = CliRunner().invoke(main, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in out.output


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("rec") / "rec.duckdb"
    out = CliRunner().invoke(main, ["import", "intercode", "--bundled", "--store", str(store)])
    assert out.exit_code == 0, out.output
    return store


def test_import_reproduces_the_papers_success_rates(recorded: Path) -> None:
    out = CliRunner().invoke(main, [
        "sql", str(recorded),
        "SELECT source, round(100 * avg(CASE WHEN outcome_reward = 1.0 THEN 1 ELSE 0 END), 1) AS success_pct "
        "FROM trajectories GROUP BY source ORDER BY source", "--format", "json"])
    rows = {r["source"]: r["success_pct"] for r in map(json.loads, out.output.splitlines())}
    assert rows["gpt-4"] == pytest.approx(73.7, abs=0.1)
    assert rows["gpt-3.5"] == pytest.approx(47.3, abs=0.1)


@pytest.mark.parametrize("sql", ["DELETE FROM raw.trajectories", "DROP VIEW steps",
                                 "CREATE TABLE x AS SELECT 1", "COPY raw.tasks TO '/tmp/x.csv'",
                                 "INSERT INTO raw.meta VALUES ('a', 'b', NULL)", "ATTACH '/tmp/y.duckdb'",
                                 "/* x */ EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/evoagent-owned.csv'",
                                 "SELECT 1; -- c\nEXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/evoagent-owned.csv'"])
def test_sql_refuses_modifying_statements(recorded: Path, sql: str) -> None:
    out = CliRunner().invoke(main, ["sql", str(recorded), sql])
    assert out.exit_code == 2 and "read-only" in out.output


def test_sql_formats(recorded: Path, tmp_path: Path) -> None:
    q = "SELECT task_id, hardness FROM tasks ORDER BY task_id LIMIT 3"
    csv = CliRunner().invoke(main, ["sql", str(recorded), q, "--format", "csv"]).output
    assert csv.splitlines()[0] == '"task_id","hardness"' and len(csv.splitlines()) == 4
    out = CliRunner().invoke(main, ["sql", str(recorded), q, "--format", "parquet", "--out", str(tmp_path / "t.parquet")])
    assert out.exit_code == 0 and (tmp_path / "t.parquet").exists()


@pytest.mark.slow  # three CLI processes in a row (~20 s); tests/test_store.py reads beside a writer in the default run
def test_sql_answers_while_a_campaign_runs_and_ctrl_c_resumes(tmp_path: Path, campaign_file: Path) -> None:
    store = tmp_path / "live.duckdb"
    # more generations than any machine finishes before the reader answers: the Ctrl-C ends it
    proc = subprocess.Popen(cli("run", str(campaign_file), "--store", str(store), "--set", "budget.generations=100000"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(), text=True)
    try:
        deadline = time.monotonic() + 60
        answered = None
        while time.monotonic() < deadline and proc.poll() is None:
            r = subprocess.run(cli("sql", str(store), "SELECT count(*) AS n FROM generations", "--format", "json"),
                               capture_output=True, text=True, env=cli_env())
            if r.returncode == 0 and json.loads(r.stdout)["n"] >= 1:
                answered = json.loads(r.stdout)["n"]
                break
            time.sleep(0.2)
        assert proc.poll() is None, "campaign ended before the reader could check"
        assert answered is not None
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and f"evoagent resume {store}" in err
    finally:
        if proc.poll() is None:
            proc.kill()
    done = subprocess.run(cli("resume", str(store), "--set", "budget.generations=3"),
                          capture_output=True, text=True, env=cli_env())
    assert done.returncode == 0, done.stderr
    s = SnapshotStore(store)
    assert s.scalar("SELECT count(*) FROM (SELECT generation, item_id FROM raw.work_results GROUP BY ALL "
                    "HAVING count(*) > 1)") == 0
    s.close()
