"""`evoagent sql STORE QUERY` and `evoagent status STORE`, typed plainly, answer without loading click
(evoagent/cli/fast.py); with any option they go through click. Same output, errors and exit statuses."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stores import DuckDBStore

SCRIPT = Path(sys.executable).with_name("evoagent")
pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="the evoagent console script is not installed")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("fast") / "s.duckdb"
    DuckDBStore(str(path)).close()
    return str(path)


def run(*args: str) -> tuple[int, str, list[str]]:
    """Exit status, stdout, and the modules the command imported (from Python's import-time log)."""
    got = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    modules = [ln.rsplit("|", 1)[1].strip() for ln in got.stderr.splitlines() if ln.startswith("import time:")]
    errors = [ln for ln in got.stderr.splitlines() if not ln.startswith("import time:")]
    return got.returncode, got.stdout + "".join(e + "\n" for e in errors), modules


def test_plain_sql_and_status_load_no_click(store: str) -> None:
    code, out, modules = run("sql", store, "SELECT 42 AS answer")
    assert code == 0 and "answer" in out and "│ 42 " in out, out
    assert "click" not in modules  # (the worker's imports are logged here too: it shares stderr)
    code, out, modules = run("status", store)
    assert code == 0 and "no campaign (imported data only)" in out, out
    assert "click" not in modules


def test_mistakes_are_one_line_and_exit_2_on_the_fast_path(store: str, tmp_path: Path) -> None:
    code, out, modules = run("sql", store, "DELETE FROM raw.meta")
    assert code == 2 and out.strip().splitlines() == [out.strip()] and out.startswith("error: ") and "read-only" in out
    (tmp_path / "notes.txt").write_text("not a store")
    code, out, _ = run("status", str(tmp_path / "notes.txt"))
    assert code == 2 and out.strip() == f"error: {tmp_path / 'notes.txt'} is not an evoagent store (not a DuckDB file)"
    assert "click" not in modules


def test_any_option_goes_through_click(store: str) -> None:
    code, out, modules = run("sql", store, "SELECT 42 AS answer", "--format", "csv")
    assert code == 0 and out.split() == ['"answer"', "42"] and "click" in modules
