"""Reading a store: untrusted snapshot folders, --out paths, fresh readers, faithful output, exports.

Issue 8, items 2 (manifest is untrusted input), 3 (--out never clobbers the store), 10 (a
reader always gets an answer), 11 (every value renders in every format) and 18 (every
exported view reads back in Polars and PyArrow). The stores here are real DuckDB files
written through ``DuckDBStore``; "a writer holds the file" is a real second process.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from evoagent.cli import main
from evoagent.trajectory import Step, Task, Trajectory
from stores import (
    VIEWS, DuckDBStore, FileStore, ItemResult, SnapshotStore, StoreError, WorkItem, open_reader,
)
from stores.snapshot import MANIFEST, snapshot_dir

ROOT = Path(__file__).resolve().parent.parent
HOLD = ("import sys; from stores import DuckDBStore; s = DuckDBStore(sys.argv[1], snapshot_every_s=1e9); "
        "print('ready', flush=True); sys.stdin.read(); s.close()")


def _traj(task: str, actions: list[str], reward: float, generation: int, parents: tuple[str, ...] = ()) -> Trajectory:
    steps = tuple(Step(idx=i, action=a, observation=f"[/] :x: {a}", reward=reward) for i, a in enumerate(actions))
    return Trajectory(task_id=task, steps=steps, outcome_reward=reward, source="replay", generation=generation,
                      operator="sample" if not parents else "revise", parents=parents, seed=len(actions))


def make_store(path: Path, campaign: str = "c1") -> Path:
    """A closed store with a committed generation 0 and a planned, half-done generation 1."""
    a = _traj("t1", ["SELECT 1"], 1.0, 0)
    b = _traj("t2", ["SELECT 2", "SELECT 3"], 0.0, 0)
    child = _traj("t2", ["SELECT 2", "SELECT 4"], 1.0, 1, parents=(b.traj_id,))
    with DuckDBStore(path, snapshot_every_s=1e9) as s:
        s.add_tasks([Task("t1", "intercode_sql", "Q1?", meta={"db": "d"}), Task("t2", "intercode_sql", "Q2?", meta={"db": "d"})])
        s.put_meta("campaign", json.dumps({"name": campaign, "mu": 1, "budget.generations": 1}))
        items0 = [WorkItem(0, 0, "sample", "t1", (), 1), WorkItem(0, 1, "sample", "t2", (), 2)]
        s.plan_generation(0, items0)
        s.snapshot()  # several parts per table; some columns null only in later parts
        s.commit_items([ItemResult(items0[0], a, env_steps=1), ItemResult(items0[1], b, env_steps=2)], campaign)
        s.commit_generation(0, [("t1", a.traj_id, 0), ("t2", b.traj_id, 0)],
                            {"max": 1.0, "avg": 0.5, "success_rate": 0.5, "nevals": 2, "env_steps": 3})
        items1 = [WorkItem(1, 0, "revise", "t2", (b.traj_id,), 3), WorkItem(1, 1, "revise", "t1", (a.traj_id,), 4)]
        s.plan_generation(1, items1)
        s.commit_items([ItemResult(items1[0], child, env_steps=2)], campaign)
    return path


def tree_digest(*paths: Path) -> dict[str, str]:
    """sha256 of every file under the given paths (files or folders), by path."""
    out = {}
    for p in paths:
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()) if p.exists() else []
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def listing(*folders: Path) -> set[str]:
    return {str(f) for d in folders if d.exists() for f in d.rglob("*")}


@contextlib.contextmanager
def writer_holding(path: Path) -> Iterator[subprocess.Popen]:
    """Another process holds the store open for writing (idle) until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read()
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def run(*args: str) -> tuple[int, str]:
    out = CliRunner().invoke(main, [str(a) for a in args])
    return out.exit_code, out.output


def one_line_error(code: int, output: str, words: str) -> None:
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], output


# -- item 2: the manifest is untrusted input ---------------------------------------------
def _manifest(path: Path) -> dict:
    return json.loads((snapshot_dir(path) / MANIFEST).read_text())


def _write_manifest(path: Path, manifest: object) -> None:
    (snapshot_dir(path) / MANIFEST).write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))


def test_manifest_part_names_cannot_inject_sql(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = copy_store(built, tmp_path)
    monkeypatch.chdir(tmp_path)
    m = _manifest(path)
    good = m["tables"]["tasks"]["parts"][0]
    m["tables"]["tasks"]["parts"] = [good + "']); COPY (SELECT 42) TO 'pwned.csv'; SELECT (['x"]
    _write_manifest(path, m)
    with pytest.raises(StoreError, match="damaged.*evoagent migrate"):
        SnapshotStore(path)
    assert not (tmp_path / "pwned.csv").exists()


def _outside_part(path: Path, m: dict) -> dict:
    outside = path.parent / "elsewhere" / "raw" / "tasks"
    outside.mkdir(parents=True)
    part = snapshot_dir(path) / m["tables"]["tasks"]["parts"][0]
    (outside / "part-00000009.parquet").write_bytes(part.read_bytes())
    m["tables"]["tasks"]["parts"] = ["raw/tasks/../../../elsewhere/raw/tasks/part-00000009.parquet"]
    return m


def _symlinked_part(path: Path, m: dict) -> dict:
    link = snapshot_dir(path) / "raw" / "tasks" / "part-00000077.parquet"
    link.symlink_to(path)  # the live store file, pretending to be a part
    m["tables"]["tasks"]["parts"] = ["raw/tasks/part-00000077.parquet"]
    return m


def _part_of(table: str, path: Path, m: dict, data: bytes | None) -> dict:
    rel = m["tables"][table]["parts"][0]
    if data is None:
        (snapshot_dir(path) / rel).unlink()
    else:
        (snapshot_dir(path) / rel).write_bytes(data)
    return m


def _swap_parts(path: Path, m: dict) -> dict:
    # a part of another table (valid Parquet, wrong columns) under the table's name pattern
    src = snapshot_dir(path) / m["tables"]["steps"]["parts"][0]
    dst = snapshot_dir(path) / "raw" / "tasks" / "part-00000055.parquet"
    dst.write_bytes(src.read_bytes())
    m["tables"]["tasks"]["parts"] = ["raw/tasks/part-00000055.parquet"]
    return m


def _set(path: Path, m: dict, *keys_and_value: object) -> dict:
    *keys, value = keys_and_value
    target = m
    for k in keys[:-1]:
        target = target[k]
    target[keys[-1]] = value
    return m


DAMAGE = {
    "not json": lambda p, m: "{ this is not json",
    "not utf-8": lambda p, m: b"\xff\xfe\x00".decode("latin-1"),
    "a list": lambda p, m: [1, 2, 3],
    "deeply nested": lambda p, m: "[" * 100_000 + "]" * 100_000,
    "seq a string": lambda p, m: _set(p, m, "seq", "7"),
    "version a bool": lambda p, m: _set(p, m, "schema_version", True),
    "tables a list": lambda p, m: _set(p, m, "tables", []),
    "parts not a list": lambda p, m: _set(p, m, "tables", "tasks", "parts", "raw/tasks/part-00000001.parquet"),
    "max_rowid a string": lambda p, m: _set(p, m, "tables", "tasks", "max_rowid", "9"),
    "unknown table": lambda p, m: _set(p, m, "tables", "../../etc", {"max_rowid": 0, "parts": []}),
    "absolute part": lambda p, m: _set(p, m, "tables", "tasks", "parts", [str(p)]),
    "part outside": _outside_part,
    "symlinked part": _symlinked_part,
    "missing part": lambda p, m: _part_of("steps", p, m, None),
    "truncated part": lambda p, m: _part_of("steps", p, m, b"PAR1 not really"),
    "wrong columns": _swap_parts,
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("built") / "s.duckdb")


def copy_store(built: Path, to: Path) -> Path:
    """A private copy of the module's store (file and snapshot), cheaper than writing one."""
    shutil.copy(built, to / built.name)
    shutil.copytree(snapshot_dir(built), snapshot_dir(to / built.name))
    return to / built.name


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_snapshot_is_one_line_and_a_writer_rebuilds_it(built: Path, tmp_path: Path, damage: str) -> None:
    path = copy_store(built, tmp_path)
    before = SnapshotStore(path).query("SELECT * FROM steps ORDER BY ALL").to_pylist()
    _write_manifest(path, DAMAGE[damage](path, _manifest(path)))
    with pytest.raises(StoreError, match=r"damaged .*evoagent migrate .*evoagent resume") as err:
        SnapshotStore(path)
    assert "\n" not in str(err.value)
    DuckDBStore(path).close()  # what `evoagent resume` / `migrate` open: the snapshot is published anew
    assert SnapshotStore(path).query("SELECT * FROM steps ORDER BY ALL").to_pylist() == before


def test_damaged_snapshot_through_the_cli_then_migrate(built: Path, tmp_path: Path) -> None:
    path = copy_store(built, tmp_path)
    with writer_holding(path):  # `evoagent sql` reads the snapshot while a campaign runs
        _write_manifest(path, _set(path, _manifest(path), "tables", "tasks", "parts",
                                   ["raw/tasks/part-00000001.parquet']); COPY (SELECT 1) TO 'x.csv'; --"]))
        one_line_error(*run("sql", path, "SELECT count(*) FROM steps"), "damaged")
        one_line_error(*run("status", path), "damaged")
    _write_manifest(path, "{ not json")
    code, out = run("migrate", path)
    assert code == 0, out
    code, out = run("sql", path, "SELECT count(*) AS n FROM steps", "--format", "json")
    assert code == 0 and json.loads(out) == {"n": 5}, out
    assert SnapshotStore(path).scalar("SELECT count(*) FROM steps") == 5


# -- item 3: --out never overwrites the store or its snapshot --------------------------------
def test_out_paths_inside_the_store_are_refused(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = copy_store(built, tmp_path)
    snap = snapshot_dir(path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alias.duckdb").symlink_to(path)
    os.link(path, tmp_path / "hard.duckdb")
    digest = tree_digest(path, snap)
    part = snap / _manifest(path)["tables"]["steps"]["parts"][0]
    for out in [path, Path(f"{path}.wal"), snap / MANIFEST, part, "alias.duckdb", "hard.duckdb",
                "s.duckdb", "./s.duckdb.snapshot/manifest.json"]:
        for fmt in ("csv", "parquet", "json", "table"):
            one_line_error(*run("sql", path, "SELECT * FROM steps", "--format", fmt, "--out", out), "refusing")
    for out in [snap, snap / "raw", Path(f"{path}.tmp")]:
        one_line_error(*run("export", path, "--out", out), "refusing")
    # a store whose name is a view's: exporting beside it would replace it
    other = make_store(tmp_path / "steps")
    one_line_error(*run("export", other, "--table", "steps", "--out", tmp_path), "refusing")
    assert tree_digest(path, snap) == digest
    assert run("sql", path, "SELECT 1 AS x", "--format", "csv", "--out", tmp_path / "ok.csv")[0] == 0
    assert (tmp_path / "ok.csv").read_text().split() == ['"x"', "1"]


# -- item 10: a reader always gets an answer ---------------------------------------------------
KILLED = ("import os, sys; from evoagent.trajectory import Step, Trajectory; "
          "from stores import DuckDBStore, TrajectoryBatch; s = DuckDBStore(sys.argv[1], snapshot_every_s=1e9); "
          "s.write(TrajectoryBatch.from_trajectories([Trajectory(task_id='t', steps=(Step(0, 'SELECT 1', 'ok', 1.0),), "
          "outcome_reward=1.0, source='killed')])); os._exit(9)")


def test_new_store_has_a_snapshot_at_once(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    w = DuckDBStore(path, snapshot_every_s=1e9)
    try:
        r = SnapshotStore(path)
        assert r.scalar("SELECT count(*) FROM trajectories") == 0 and r.get_meta("campaign") is None
        r.close()
        assert isinstance(open_reader(path), SnapshotStore)  # this process writes: the snapshot
    finally:
        w.close()


def test_store_killed_before_its_first_snapshot_is_read_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "killed.duckdb"
    subprocess.run([sys.executable, "-c", KILLED, str(path)], cwd=ROOT, check=False, timeout=60)
    for case in ("empty snapshot", "no snapshot at all (stores from before snapshots at creation)"):
        if case.startswith("no snapshot"):
            (snapshot_dir(path) / MANIFEST).unlink()
        digest = tree_digest(path, Path(f"{path}.wal"))
        before = listing(tmp_path)
        code, out = run("sql", path, "SELECT source, outcome_reward FROM trajectories", "--format", "json")
        assert code == 0 and json.loads(out) == {"source": "killed", "outcome_reward": 1.0}, (case, out)
        code, out = run("status", path)
        assert code == 0 and "error" not in out, (case, out)
        reader = open_reader(path)
        assert isinstance(reader, FileStore) and reader.scalar("SELECT count(*) FROM steps") == 1, case
        reader.close()
        assert tree_digest(path, Path(f"{path}.wal")) == digest and listing(tmp_path) == before, case


def test_readers_use_the_snapshot_while_a_writer_holds_the_file(built: Path, tmp_path: Path) -> None:
    path = copy_store(built, tmp_path)
    with writer_holding(path):
        r = open_reader(path)
        assert isinstance(r, SnapshotStore) and r.scalar("SELECT count(*) FROM trajectories") == 3
        r.close()
        code, out = run("status", path)
        assert code == 0 and "campaign 'c1'" in out, out
    r = open_reader(path)
    assert isinstance(r, FileStore) and r.scalar("SELECT count(*) FROM trajectories") == 3
    r.close()
    DuckDBStore(path).close()  # a reader closed releases the file


# -- item 11: every value renders, faithfully, in every format -----------------------------------
ZOO = ("SELECT '[/]' AS \"[bold]h\", ':x: [red]no[/red]' AS markup, [1, 2] AS list, {'k': 'v,\"'} AS struct, "
       "INTERVAL '1 month 2 days 00:00:03' AS iv, 'nan'::DOUBLE AS nan, 'infinity'::DATE AS inf_date, "
       "'\\xAA\\x00'::BLOB AS blob, '2024-01-01 00:00:00.123456789'::TIMESTAMP_NS AS ns, NULL AS nothing, "
       "'' AS empty, 170141183460469231731687303715884105727::HUGEINT AS huge, union_value(n := 1) AS u, "
       "e'bell\\x07' AS ctl")


def test_every_format_renders_lists_intervals_and_markup(built: Path, tmp_path: Path) -> None:
    import polars as pl

    path = copy_store(built, tmp_path)
    q = "SELECT parents, committed_at - started_at AS took FROM work_items, generations ORDER BY ALL"
    for fmt in ("table", "csv", "json"):
        code, out = run("sql", path, q, "--format", fmt)
        assert code == 0 and "error" not in out, (fmt, out)
    code, out = run("sql", path, ZOO, "--format", "json")
    assert code == 0, out
    row = json.loads(out)
    assert row == {"[bold]h": "[/]", "markup": ":x: [red]no[/red]", "list": [1, 2], "struct": {"k": 'v,"'},
                   "iv": "1 month 2 days 00:00:03", "nan": "NaN", "inf_date": "infinity", "blob": "\\xAA\\x00",
                   "ns": "2024-01-01 00:00:00.123456789", "nothing": None, "empty": "",
                   "huge": 170141183460469231731687303715884105727, "u": {"n": 1}, "ctl": "bell\x07"}
    code, out = run("sql", path, ZOO, "--format", "csv")
    assert code == 0, out
    header, line = out.splitlines()
    assert line == ('"[/]",":x: [red]no[/red]","[1,2]","{""k"":""v,\\""""}","1 month 2 days 00:00:03",nan,'
                    '"infinity","\\xAA\\x00","2024-01-01 00:00:00.123456789",,"",'
                    '170141183460469231731687303715884105727,"{""n"":1}","bell\x07"')
    code, out = run("sql", path, ZOO.split(", [1, 2]")[0] + ", NULL AS n, e'bell\\x07' AS ctl", "--format", "table")
    assert code == 0, out
    for text in ("[bold]h", "[/]", ":x: [red]no[/red]", "NULL", "bell\\x07"):
        assert text in out, text
    assert "\x07" not in out and "❌" not in out
    code, out = run("sql", path, ZOO, "--format", "parquet", "--out", tmp_path / "zoo.parquet")
    assert code == 0, out
    got = pl.read_parquet(tmp_path / "zoo.parquet")
    assert got["iv"].to_list() == ["1 month 2 days 00:00:03"] and got["list"].to_list() == [[1, 2]]


# -- item 18: exported views read back in Polars and PyArrow ----------------------------------------
def test_every_exported_view_reads_back_including_empty_ones(tmp_path: Path) -> None:
    import polars as pl
    import pyarrow.dataset as ds

    path = make_store(tmp_path / "s.duckdb", campaign="odd/name=x y")
    out = tmp_path / "exports"
    code, printed = run("export", path, "--out", out)
    assert code == 0, printed
    targets = printed.split()
    assert len(targets) == len(VIEWS)
    reader = SnapshotStore(path)
    empty = 0
    for target, view in zip(targets, VIEWS):
        n = reader.scalar(f"SELECT count(*) FROM {view}")
        empty += n == 0
        frame = pl.read_parquet(target, hive_partitioning=True) if Path(target).is_dir() else pl.read_parquet(target)
        dataset = ds.dataset(target, format="parquet", partitioning="hive" if Path(target).is_dir() else None)
        assert frame.height == n == dataset.count_rows(), view
        assert set(frame.columns) == set(reader.query(f"SELECT * FROM {view} LIMIT 0").column_names), view
        if Path(target).is_dir():  # the README's glob works too
            assert pl.read_parquet(f"{target}/**/*.parquet", hive_partitioning=True).height == n
    assert empty >= 3  # e.g. llm_calls, llm_costs, rediscoveries: empty in this store
    camp = pl.read_parquet(out / "trajectories", hive_partitioning=True)["campaign"].unique().to_list()
    assert camp == ["odd/name=x y"]
    # a second export replaces the first whole; a folder that is not an export is left alone
    (out / "population").mkdir(exist_ok=True)
    assert run("export", path, "--out", out, "--table", "steps")[0] == 0
    (out / "llm_calls").mkdir(exist_ok=True) if not (out / "llm_calls").exists() else None
    (out / "llm_calls" / "notes.txt").write_text("mine")
    one_line_error(*run("export", path, "--out", out, "--table", "llm_calls"), "not an evoagent export")
    assert (out / "llm_calls" / "notes.txt").read_text() == "mine"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left behind
