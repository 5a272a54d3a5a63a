"""``evoagent watch``: frames from the snapshot while a writer works; bad stores are one line and exit 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from evoagent.cli import main
from stores import DuckDBStore, ItemResult, WorkItem
from stores.snapshot import MANIFEST, snapshot_dir
from tests.test_snapshot_read import _traj, make_store

ROOT = Path(__file__).resolve().parents[1]


def finish_generation_1(writer: DuckDBStore) -> None:
    """make_store's pending item of generation 1, done."""
    item = WorkItem(1, 1, "revise", "t1", (), 4)
    writer.commit_items([ItemResult(item, _traj("t1", ["SELECT 1", "SELECT 5"], 1.0, 1), env_steps=2)], "c1")


def watch(*args: str) -> tuple[int, str]:
    out = CliRunner().invoke(main, ["watch", *map(str, args)])
    return out.exit_code, " ".join(out.output.split()) + "\n"  # one line, as the terminal's width may wrap it


def test_one_frame_shows_the_curve_and_the_current_generation(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.duckdb")
    code, out = watch(path, "--once")
    assert code == 0, out
    assert "campaign 'c1'" in out and "generation 1 of 0..1:" in out and "items done" in out
    assert "success (best per task) per generation" in out and "committed" in out
    assert "campaign complete" not in out  # generation 1 is half done


def test_frames_come_from_the_snapshot_while_a_writer_holds_the_store(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.duckdb")
    with DuckDBStore(path, snapshot_every_s=0) as writer:  # publishes at every commit
        code, before = watch(path, "--once")
        assert code == 0 and "(its snapshot)" in before and "1/2 items done" in before
        finish_generation_1(writer)
        code, after = watch(path, "--once")  # the watcher never held the file: the writer went on
        assert code == 0 and "2/2 items done" in after


def test_a_log_gets_frames_until_the_campaign_completes(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.duckdb")
    with DuckDBStore(path, snapshot_every_s=0) as writer:
        finish_generation_1(writer)
        writer.commit_generation(1, [], {"success_rate": 1.0})
    proc = subprocess.run([sys.executable, "-m", "evoagent.cli", "watch", str(path), "--every", "0.2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("campaign complete") == 1


def watch_errors(*args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "evoagent.cli", "watch", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr  # one line, no traceback
    return proc.returncode, proc.stderr


def test_not_a_store_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    for target, words in ((tmp_path / "notes.txt", "not an evoagent store"), (tmp_path / "none.duckdb", "no store at"),
                          (tmp_path, "is a folder")):
        code, out = watch_errors(target, "--once")
        assert code == 2 and words in out, out


def test_a_store_being_migrated_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.duckdb")
    manifest = json.loads((snapshot_dir(path) / MANIFEST).read_text())
    manifest["schema_version"] -= 1  # the snapshot a store of the previous version published
    (snapshot_dir(path) / MANIFEST).write_text(json.dumps(manifest))
    code, out = watch_errors(path, "--once")
    assert code == 2 and "evoagent migrate" in out, out
