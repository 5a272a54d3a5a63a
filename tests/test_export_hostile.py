"""Training exports of awkward data: a multi-line action in a PRM completion, characters other readers
take for line breaks in JSONL, and exports with no rows (refused: datasets cannot load them)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from evoagent.cli import main
from evoagent.envs.intercode_sql.data import load_tasks
from evoagent.training_data import OBSERVATION, export_training
from evoagent.trajectory import Step, Trajectory, trajectory_id
from stores import DuckDBStore, TrajectoryBatch

SOURCE = "mc(aggregate=mean,k=5,seed=0)"
# an action that ends with what looks like an observation, and text holding U+2028/2029/0085
TRICKY = "SELECT 1\nObservation: [(1,)]\nSELECT 2"
BREAKS = "SELECT 'a\u2028b\u2029c\u0085d'"


@pytest.fixture(autouse=True)
def offline_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def _store(path: Path, *, all_scored: bool = True) -> Path:
    task = next(t for t in load_tasks() if t.task_id == "sql/0")
    traj = Trajectory(task.task_id, (Step(0, TRICKY, "[(2,)]", 0.0), Step(1, BREAKS, "x\u2028y", 1.0)), 1.0, "anthropic")
    with DuckDBStore(str(path)) as s:
        s.add_tasks([task])
        s.write(TrajectoryBatch.from_trajectories([traj], campaign="c"))
        s.write_rewards(SOURCE, [(trajectory_id(task.task_id, [TRICKY]), 0, 0.2)]
                        + [(trajectory_id(task.task_id, [TRICKY, BREAKS, "submit"]), 1, 0.9)] * all_scored)
    return path


def _load(path: str, cache: Path):
    import datasets

    return datasets.load_dataset("parquet", data_files=path, split="train", cache_dir=str(cache))


def test_prm_keeps_action_and_observation_apart(tmp_path: Path) -> None:
    out = export_training(str(_store(tmp_path / "s.duckdb")), "prm", str(tmp_path / "t"), reward_source=SOURCE)
    row = _load(out.paths[0], tmp_path / "cache")[0]
    assert row["actions"] == [TRICKY, BREAKS] and row["observations"] == ["[(2,)]", "x\u2028y"]
    assert row["completions"] == [f"{TRICKY}{OBSERVATION}[(2,)]", f"{BREAKS}{OBSERVATION}x\u2028y"]
    assert row["labels"] == [False, True]


@pytest.mark.parametrize("fmt", ["sft", "prm"])
def test_jsonl_lines_survive_splitlines(tmp_path: Path, fmt: str) -> None:
    out = export_training(str(_store(tmp_path / "s.duckdb")), fmt, str(tmp_path / "t"), jsonl=True,
                          **({"reward_source": SOURCE} if fmt == "prm" else {}))
    text = Path(out.paths[1]).read_text(encoding="utf-8")
    assert not any(c in text for c in "\u2028\u2029\u0085")
    lines = text.splitlines()
    assert len(lines) == out.rows == 1
    assert BREAKS in json.dumps(json.loads(lines[0]), ensure_ascii=False)


def test_an_export_with_no_rows_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.duckdb", all_scored=False)  # its one trajectory has an unscored step
    DuckDBStore(str(tmp_path / "empty.duckdb")).close()
    for args in (["export", str(tmp_path / "empty.duckdb"), "--format", "sft", "--out", str(tmp_path / "a")],
                 ["export", str(store), "--format", "prm", "--out", str(tmp_path / "b"), "--jsonl",
                  "--reward-source", SOURCE]):
        got = CliRunner().invoke(main, args)
        assert got.exit_code == 2, got.output
        lines = got.stderr.strip().splitlines()
        assert len(lines) == 1 and "nothing to export" in lines[0] and "0 rows" in lines[0], got.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
