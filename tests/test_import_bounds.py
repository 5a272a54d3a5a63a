"""Imports are bounded per command (not only per file), follow one rule for lone surrogates, and
never go into a store that holds a campaign."""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from evoagent.cli import main
from evoagent.envs import files
from evoagent.envs.game24 import data as g24
from evoagent.envs.intercode_sql import data as icdata
from stores import DuckDBStore


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def _one_line_error(out, *words: str) -> str:
    assert out.exit_code == 2, out.output
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert "Traceback" not in out.output
    return lines[0]


def _tot_log(path: Path, answers_per_puzzle: int, puzzles: int = 1362, text: str = "1 + 2 = 3 (left: 3 4 8)") -> Path:
    path.write_text(json.dumps([{"idx": i, "ys": [text] * answers_per_puzzle, "infos": [{"r": 0}] * answers_per_puzzle}
                                for i in range(puzzles)]))
    return path


@pytest.fixture(scope="module")
def gpt4_episodes() -> dict:
    with gzip.open(icdata.bundled_runs()["gpt-4"], "rt") as fh:
        runs = json.load(fh)
    return {k: runs[k] for k in list(runs)[:12]}


@pytest.mark.slow  # parses two files of 50,000 answers (~10 s)
def test_two_game24_logs_within_the_per_file_bound_are_refused_together(tmp_path: Path) -> None:
    per_puzzle = g24.MAX_ANSWERS // 1362 // 2 + 1  # each file holds a little over half the bound
    a, b = _tot_log(tmp_path / "a.json", per_puzzle), _tot_log(tmp_path / "b.json", per_puzzle)
    assert g24.read_log(a).runs  # alone, each is accepted
    store = tmp_path / "s.duckdb"
    out = CliRunner().invoke(main, ["import", "game24", str(a), str(b), "--store", str(store)])
    _one_line_error(out, "b.json", "answers", f"{g24.MAX_IMPORT_ANSWERS:,}")
    assert not store.exists()


def test_action_lines_are_bounded_per_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(g24, "MAX_IMPORT_LINES", 1000)
    a = _tot_log(tmp_path / "a.json", 1, puzzles=600, text="1 + 2 = 3\n3 * 8 = 24")  # 1,200 lines
    out = CliRunner().invoke(main, ["import", "game24", str(a), "--store", str(tmp_path / "s.duckdb")])
    _one_line_error(out, "a.json", "1,000 action lines")


def test_bytes_are_bounded_per_import(tmp_path: Path, gpt4_episodes: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(gpt4_episodes))
    b.write_text(json.dumps(gpt4_episodes))
    monkeypatch.setattr(files, "MAX_IMPORT_BYTES", a.stat().st_size * 3 // 2)  # the limit every importer reads
    store = tmp_path / "s.duckdb"
    out = CliRunner().invoke(main, ["import", "intercode", str(a), str(b), "--store", str(store)])
    _one_line_error(out, "b.json", "bytes across its files")
    assert not store.exists()


def test_a_lone_surrogate_is_refused_by_every_importer(tmp_path: Path, gpt4_episodes: dict) -> None:
    log = tmp_path / "tot.json"
    log.write_text(json.dumps([{"idx": 3, "ys": ["1 + 2 = 3 \ud800"], "infos": [{"r": 0}]}]))
    store = tmp_path / "s.duckdb"
    out = CliRunner().invoke(main, ["import", "game24", str(log), "--store", str(store)])
    _one_line_error(out, "tot.json", "lone surrogate")
    first = next(iter(gpt4_episodes))
    doc = json.loads(json.dumps(gpt4_episodes))
    doc[first]["turn_history"]["thoughts"] = ["a \udc00 b"] * len(doc[first]["turn_history"]["actions"])
    rec = tmp_path / "ic.json"
    rec.write_text(json.dumps(doc))
    out = CliRunner().invoke(main, ["import", "intercode", str(rec), "--store", str(store)])
    _one_line_error(out, "ic.json", "lone surrogate")
    assert not store.exists()
    pair = tmp_path / "pair.json"  # a well-formed pair is one character, not a lone surrogate
    pair.write_text(json.dumps([{"idx": 3, "ys": ["1 + 2 = 3 \U0001F600"], "infos": [{"r": 0}]}]))
    assert g24.read_log(pair).runs[0].lines == ("1 + 2 = 3 \U0001F600",)


@pytest.mark.parametrize("kind", ["intercode", "game24"])
def test_import_refuses_a_store_that_holds_a_campaign(tmp_path: Path, gpt4_episodes: dict, kind: str) -> None:
    store = tmp_path / "c.duckdb"
    with DuckDBStore(str(store)) as s:
        s.put_meta("campaign", json.dumps({"name": "main", "mu": 3}))
    before = _digest(store)
    src = tmp_path / "in.json"
    if kind == "intercode":
        src.write_text(json.dumps(gpt4_episodes))
    else:
        _tot_log(src, 1, puzzles=3)
    out = CliRunner().invoke(main, ["import", kind, str(src), "--store", str(store)])
    _one_line_error(out, str(store), "holds a campaign", "store of its own")
    assert _digest(store) == before


def test_import_into_a_store_of_imports_still_adds(tmp_path: Path, gpt4_episodes: dict) -> None:
    store = tmp_path / "i.duckdb"
    src = tmp_path / "in.json"
    src.write_text(json.dumps(gpt4_episodes))
    assert CliRunner().invoke(main, ["import", "intercode", str(src), "--store", str(store)]).exit_code == 0
    _tot_log(tmp_path / "g.json", 1, puzzles=3)
    out = CliRunner().invoke(main, ["import", "game24", str(tmp_path / "g.json"), "--store", str(store)])
    assert out.exit_code == 0, out.output


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_env_tasks_that_is_not_a_regular_file_is_one_line(tmp_path: Path, campaign_file: Path, kind: str) -> None:
    import os

    target = {"device": Path("/dev/zero"), "fifo": tmp_path / "tasks.fifo", "folder": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(target)
    store = tmp_path / "s.duckdb"
    out = CliRunner().invoke(main, ["run", str(campaign_file), "--store", str(store), "--set", f'env.tasks="{target}"'])
    line = _one_line_error(out, "env.tasks", "not a regular file")
    assert "no such file" not in line and not store.exists()
