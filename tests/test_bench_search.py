"""``evoagent bench search`` (issue 20): bad input writes nothing; finished cells are never run twice."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from evoagent.cli import main


@pytest.mark.parametrize("args, says", [
    (["--budgets", "0"], "--budgets: positive integers only"),
    (["--budgets", "10,-5"], "--budgets: positive integers only"),
    (["--budgets", "ten"], "--budgets: positive integers only"),
    (["--methods", "sample,beam"], "--methods: unknown 'beam'"),
    (["--rewards", "oracle,vibes"], "--rewards: unknown 'vibes'"),
    (["--rewards", "prm"], "--rewards prm needs --prm PATH"),
    (["--seeds", "0", "--rewards", "oracle"], "--seeds: a positive integer"),
    (["--env", "chess", "--rewards", "oracle"], "--env: 'chess' declares no benchmark"),
    (["--tasks", "everything", "--rewards", "oracle"], "--tasks: intercode_sql has no task set 'everything'"),
    (["--env", "game24", "--methods", "sample", "--rewards", "oracle,vibes"], "--rewards: unknown 'vibes'"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, args: list[str], says: str) -> None:
    out = tmp_path / "bench"
    r = CliRunner().invoke(main, ["bench", "search", "--out", str(out), *args])
    assert r.exit_code == 2, r.output
    assert says in r.output and len(r.output.strip().splitlines()) == 1
    assert not out.exists()


def test_a_prm_trained_on_benchmark_tasks_is_refused(tmp_path: Path, prm_dir: Path) -> None:
    out = tmp_path / "bench"  # the tiny PRM was trained on GPT-4's runs of sql/0.. (poker_player among them)
    r = CliRunner().invoke(main, ["bench", "search", "--out", str(out), "--set", 'tasks.dbs=["poker_player"]',
                                  "--rewards", "prm", "--prm", str(prm_dir), "--methods", "best_of_n"])
    assert r.exit_code == 2 and "trained on" in r.output, r.output
    assert not out.exists()


def test_cells_land_in_the_bench_table_and_finished_ones_are_not_run_again(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    common = ["bench", "search", "--out", str(out), "--set", 'tasks.dbs=["pets_1"]', "--sample", "2", "--budgets", "10",
              "--rewards", "oracle", "--seeds", "1"]
    first = CliRunner().invoke(main, [*common, "--methods", "sample"])
    assert first.exit_code == 0, first.output
    assert "reference---B8-s0" in first.output and "sample---B10-s0" in first.output
    con = duckdb.connect(str(out / "bench.duckdb"), read_only=True)
    before = con.execute("SELECT * FROM bench ORDER BY ALL").fetchall()
    con.close()
    assert {r[0] for r in before} == {"reference---B8-s0", "sample---B10-s0"} and len(before) == 4
    second = CliRunner().invoke(main, [*common, "--methods", "sample,best_of_n"])
    assert second.exit_code == 0, second.output
    ran = [line for line in second.output.splitlines() if line.startswith("[")]
    assert ran == ["[3/3] best_of_n-oracle-B10-s0"]  # the finished cells are skipped
    con = duckdb.connect(str(out / "bench.duckdb"), read_only=True)
    after = con.execute("SELECT * FROM bench WHERE cell <> 'best_of_n-oracle-B10-s0' ORDER BY ALL").fetchall()
    n_bon = con.execute("SELECT count(*) FROM bench WHERE cell = 'best_of_n-oracle-B10-s0'").fetchone()[0]
    con.close()
    assert after == before and n_bon == 2
    assert "| best_of_n | random pick | 10 |" in second.output and "| sample | - | 10 |" in second.output


def test_an_environment_declares_its_benchmark_and_the_strategies_their_rows(tmp_path: Path) -> None:
    """Game of 24 through the same command: its own campaign file, task set and policy (enumerate),
    no database filter; the rows are the ones the strategies declare."""
    from evoagent.bench.search import methods

    assert {"reference", "sample", "best_of_n", "evolution", "rro", "ipr", "mcts"} <= set(methods())
    out = tmp_path / "bench"
    r = CliRunner().invoke(main, ["bench", "search", "--out", str(out), "--env", "game24", "--sample", "2",
                                  "--budgets", "10", "--rewards", "oracle", "--methods", "sample", "--seeds", "1"])
    assert r.exit_code == 0, r.output
    con = duckdb.connect(str(out / "bench.duckdb"), read_only=True)
    got = con.execute("SELECT cell, count(*), min(env_executions) FROM bench GROUP BY cell ORDER BY cell").fetchall()
    con.close()
    assert [g[:2] for g in got] == [("reference---B8-s0", 2), ("sample---B10-s0", 2)]
    assert got[1][2] >= 3  # a rollout of enumerate: three moves (four numbers to one), then its verdict
    assert "| sample | - | 10 |" in r.output
