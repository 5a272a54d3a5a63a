"""Import of the recorded LATS and Reflexion runs, their pass rates by SQL, and the faithfulness replay."""
from __future__ import annotations

import gzip
import json

import duckdb
import pytest
from click.testing import CliRunner

from evoagent.cli import main
from evoagent.envs.code.data import DATA, bundled_files, load_tasks, read_recorded, visible_tests

# rows marked solved per bundled file, as ../shared/data/code/README.md states them
README_SOLVED = {"lats-mcts-gpt-4": 149, "lats-mcts-gpt-3.5": 124, ("reflexion-gpt-4", "humaneval"): 150,
                 ("gpt-4-simple", "humaneval"): 141, ("reflexion-gpt-4", "mbpp"): 306,
                 ("gpt-4-simple", "mbpp"): 318, "gpt-4-simple-b": 320}


def test_tasks_and_visible_tests():
    humaneval, mbpp = load_tasks("humaneval"), load_tasks("mbpp")
    assert (len(humaneval), len(mbpp)) == (164, 397)
    assert all(visible_tests(t) for t in humaneval)  # docstring examples, else GPT-4's recorded tests
    assert visible_tests(humaneval[0])[0] == "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False"
    assert all(t.gold.rstrip().endswith(")") and "def check(candidate)" in t.gold for t in humaneval)


def test_bundled_counts_match_the_readme():
    for path in bundled_files():
        rec = read_recorded(path, path.parent.name)
        solved = sum(r.solved for r in rec.rows)
        expected = README_SOLVED.get(rec.source, README_SOLVED.get((rec.source, rec.task_set)))
        if expected is not None:
            assert solved == expected, rec.source


def _write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _lats_rows(n):
    with gzip.open(DATA / "lats/test_mcts_hard_acc_full_4tst_temp_gpt4__humaneval-py._mcts_8_gpt-4_pass_at_k_1_py"
                   ".jsonl.gz", "rt") as handle:
        return [json.loads(line) for line in handle][:n]


def test_import_and_pass_rate_by_sql(tmp_path):
    logs = tmp_path / "lats.jsonl"
    rows = _lats_rows(12)
    _write_rows(logs, rows)
    store = tmp_path / "s.duckdb"
    result = CliRunner().invoke(main, ["import", "lats", str(logs), "--store", str(store)])
    assert result.exit_code == 0, result.output
    with duckdb.connect(str(store), read_only=True) as con:
        con.execute("SET search_path = 'main'")
        got = con.execute("SELECT count(*), count(*) FILTER (WHERE outcome_reward = 1.0) FROM raw.trajectories").fetchone()
        steps = con.execute("SELECT count(*), count(*) FILTER (WHERE thought <> '') FROM raw.steps").fetchone()
    solved = sum(1 for r in rows if r.get("is_solved", r.get("acc") == 1.0))
    assert got == (12, solved)
    assert steps[0] == sum(len(r.get("implementations", [])) for r in rows) and steps[1] > 0


@pytest.mark.parametrize("bad, message", [
    ("{not json\n", "row 2: not JSON"),
    ('{"name": "HumanEval_0_x", "test": "", "entry_point": "f", "implementations": "oops"}\n',
     "row 2: `implementations` is not a list of strings"),
    ('{"name": "nothing"}\n', "row 2: no task name"),
])
def test_malformed_file_is_one_line_and_writes_nothing(tmp_path, bad, message):
    logs = tmp_path / "bad.jsonl"
    logs.write_text(json.dumps(_lats_rows(1)[0]) + "\n" + bad)
    store = tmp_path / "s.duckdb"
    result = CliRunner().invoke(main, ["import", "lats", str(logs), "--store", str(store)])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and str(logs) in result.output and message in result.output
    assert not store.exists()


def test_faithfulness_replay(tmp_path):
    logs = tmp_path / "lats.jsonl"
    rows = _lats_rows(8)
    rows[5] = dict(rows[5], is_solved=not rows[5]["is_solved"])  # a recorded verdict we cannot reproduce
    _write_rows(logs, rows)
    result = CliRunner().invoke(main, ["replay", "lats", str(logs)])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("agreement: ") and last.endswith("%)")
    name = rows[5]["name"].split("_")
    assert f"HumanEval/{name[1]}: row 6 final program" in result.output


def test_a_lone_surrogate_is_refused_like_every_importer_does(tmp_path):
    """One rule for lone surrogates in recorded files (as `import intercode|game24`): the file is
    refused with one line naming it and the row, never stored as U+FFFD behind the user's back."""
    row = _lats_rows(1)[0]
    row["reflections"] = ["\ud800 half of a pair"]
    logs = tmp_path / "lone.jsonl"
    logs.write_text(json.dumps(row) + "\n")  # json escapes it as \ud800
    store = tmp_path / "s.duckdb"
    result = CliRunner().invoke(main, ["import", "lats", str(logs), "--store", str(store)])
    assert result.exit_code == 2, result.output
    assert "row 1" in result.output and "lone surrogate" in result.output and result.output.strip().count("\n") == 0
    assert not store.exists()


def test_one_import_is_bounded_across_its_files(tmp_path, monkeypatch):
    """Each file within its own bound can still add up: the command's totals stop it, nothing written."""
    import evoagent.envs.code.data as data

    rows = _lats_rows(3)
    files = []
    for i in range(3):
        logs = tmp_path / f"part{i}.jsonl"
        _write_rows(logs, rows)
        files.append(str(logs))
    monkeypatch.setattr(data, "MAX_IMPORT_ROWS", 7)  # 3 files x 3 rows = 9 rows > 7
    store = tmp_path / "s.duckdb"
    result = CliRunner().invoke(main, ["import", "lats", *files, "--store", str(store)])
    assert result.exit_code == 2, result.output
    assert "part2.jsonl" in result.output and "across its files" in result.output
    assert not store.exists()
