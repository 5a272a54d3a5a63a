"""Training data for TRL: each export loads with `datasets` and its rows match the store."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from evoagent import campaign, launch
from evoagent.cli import main
from evoagent.envs.intercode_sql.data import load_tasks
from evoagent.envs.intercode_sql.prompt import AGENT
from evoagent.training_data import export_training
from evoagent.trajectory import Step, Trajectory, trajectory_id
from stores import DuckDBStore, SnapshotStore
from stores.base import Candidate, ItemResult, WorkItem
from tests.conftest import SMALL

SOURCE, OTHER = "mc(aggregate=mean,k=5,seed=0)", "judge(model=x)"


def _load(path: str, cache: Path):
    """``datasets.load_dataset("parquet", ...)``, offline, cache in a temporary folder."""
    import datasets

    return datasets.load_dataset("parquet", data_files=path, split="train", cache_dir=str(cache))


@pytest.fixture(autouse=True)
def offline_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


@pytest.fixture(scope="module")
def campaign_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small replay campaign (oracle search signal: per-step rewards in the store)."""
    d = tmp_path_factory.mktemp("campaign")
    (d / "c.toml").write_text(SMALL)
    overrides = ["budget.generations=1", "mu=2", "lambda=2", 'tasks.ids=["sql/0", "sql/42"]']
    out = launch.start(campaign.load(d / "c.toml", overrides), str(d / "c.duckdb"))
    assert out.status == "completed"
    return d / "c.duckdb"


def _step(i: int, action: str) -> Step:
    return Step(i, action, f"rows of {action}", 0.0)


A, B, C, D, E = "SELECT 1", "SELECT 2", "SELECT 3", "SELECT 4", "SELECT 5"


def _cand(task: str, k: int, prefix: tuple[str, ...], action: str, reward: float, accepted: bool, rank: int,
          traj_id: str, source: str = SOURCE) -> Candidate:
    return Candidate("rro", task, traj_id, k, trajectory_id(task, prefix), trajectory_id(task, prefix + (action,)),
                     action, f"rows of {action}", None, reward, None, source, accepted, rank)


@pytest.fixture
def search_store(tmp_path: Path) -> Path:
    """A store with step-level candidates and step scores, committed as a search strategy would."""
    path = tmp_path / "search.duckdb"
    tasks = {t.task_id: t for t in load_tasks()}
    task = "sql/0"
    traj = Trajectory(task, (_step(0, A), _step(1, D)), 1.0, "anthropic")
    other = Trajectory("sql/7", (_step(0, B),), 0.0, "anthropic")
    cands = (
        _cand(task, 0, (), A, 0.8, True, 0, traj.traj_id), _cand(task, 0, (), B, 0.3, False, 1, traj.traj_id),
        _cand(task, 0, (), C, 0.8, False, 2, traj.traj_id),  # as good as the chosen: no pair
        _cand(task, 1, (A,), D, 1.0, True, 0, traj.traj_id), _cand(task, 1, (A,), E, 0.0, False, 1, traj.traj_id),
        _cand(task, 1, (A,), E, 0.9, True, 0, traj.traj_id, OTHER),  # another source
        _cand(task, 1, (A,), D, 0.1, False, 1, traj.traj_id, OTHER),
        # a prefix neither the item's trajectory nor other candidates lead to
        _cand(task, 2, (C, C), A, 1.0, True, 0, traj.traj_id), _cand(task, 2, (C, C), B, 0.0, False, 1, traj.traj_id),
    )
    with DuckDBStore(str(path), snapshot_every_s=1e9) as s:
        s.add_tasks([tasks[task], tasks["sql/7"]])
        items = [WorkItem(0, 0, "rro", task, (), 1), WorkItem(0, 1, "rro", "sql/7", (), 2)]
        s.plan_generation(0, items)
        s.commit_items([ItemResult(items[0], traj, candidates=cands), ItemResult(items[1], other)], campaign="c")
        s.write_rewards(SOURCE, [(trajectory_id(task, [A]), 0, 0.8), (trajectory_id(task, [A, D, "submit"]), 1, 1.0)])
    return path


def test_dpo_pairs_are_candidates_at_one_prefix(search_store: Path, tmp_path: Path) -> None:
    out = export_training(str(search_store), "dpo", str(tmp_path / "t"), jsonl=True)
    assert out.reward_source == OTHER and out.rows == 1  # the first source, alphabetically
    out = export_training(str(search_store), "dpo", str(tmp_path / "t"), reward_source=SOURCE, jsonl=True)
    assert out.rows == 2 and out.skipped == {"prefixes whose steps are not in the store": 1}
    ds = _load(out.paths[0], tmp_path / "cache")
    rows = sorted(ds, key=lambda r: r["step_idx"])
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"], r["margin"]) for r in rows] == [
        (A, B, pytest.approx(0.5)), (D, E, pytest.approx(1.0))]
    task = {t.task_id: t for t in load_tasks()}["sql/0"]
    first, second = rows[0]["prompt"], rows[1]["prompt"]
    assert [m["role"] for m in first] == ["system", "user"] and task.question in first[1]["content"]
    assert second[2:] == [{"role": "assistant", "content": A}, {"role": "user", "content": f"rows of {A}"}]
    assert task.gold not in json.dumps(rows) and all(r["source"] == "rro" and r["task_id"] == "sql/0" for r in rows)
    lines = [json.loads(x) for x in Path(out.paths[1]).read_text().splitlines()]
    assert sorted(lines, key=lambda r: r["step_idx"]) == rows
    # a margin threshold leaves the smaller pair out
    out = export_training(str(search_store), "dpo", str(tmp_path / "t"), reward_source=SOURCE, threshold=0.6)
    assert out.rows == 1


def test_a_failed_jsonl_write_leaves_no_new_parquet(search_store: Path, tmp_path: Path) -> None:
    """Both files are staged before either is renamed: no new .parquet beside an old or missing .jsonl."""
    out = tmp_path / "t"
    out.mkdir()
    (out / f".dpo.jsonl.partial-{os.getpid()}").mkdir()  # the JSONL staging file cannot be written
    with pytest.raises(IsADirectoryError):
        export_training(str(search_store), "dpo", str(out), jsonl=True)
    assert sorted(p.name for p in out.iterdir()) == [f".dpo.jsonl.partial-{os.getpid()}"]


def test_prm_labels_every_step_from_one_source(search_store: Path, tmp_path: Path) -> None:
    out = export_training(str(search_store), "prm", str(tmp_path / "t"), reward_source=SOURCE, threshold=0.9)
    assert out.rows == 1 and out.skipped == {"trajectories with unscored steps": 1}
    row = _load(out.paths[0], tmp_path / "cache")[0]
    assert row["completions"] == [f"{A}\nObservation: rows of {A}", f"{D}\nObservation: rows of {D}"]
    assert row["actions"] == [A, D] and row["observations"] == [f"rows of {A}", f"rows of {D}"]
    assert row["labels"] == [False, True] and row["values"] == [0.8, 1.0]
    assert row["prompt"].startswith(AGENT.system.format(max_steps=10))
    with pytest.raises(Exception, match="--reward-source 'nope'"):
        export_training(str(search_store), "prm", str(tmp_path / "t"), reward_source="nope")


def test_sft_and_prm_of_a_campaign_match_the_store(campaign_store: Path, tmp_path: Path) -> None:
    out = export_training(str(campaign_store), "sft", str(tmp_path / "t"))
    sft = _load(out.paths[0], tmp_path / "cache")
    r = SnapshotStore(campaign_store)
    try:
        solved = r.query("SELECT DISTINCT traj_id FROM trajectories WHERE solved").column(0).to_pylist()
        assert sorted(sft["traj_id"]) == sorted(solved) and len(solved) > 0
        tasks = {t.task_id: t for t in load_tasks()}
        for row in sft:
            steps = r.query("SELECT action, observation FROM steps WHERE traj_id = ? ORDER BY idx",
                            [row["traj_id"]]).to_pylist()
            m = row["messages"]
            assert m[0] == {"role": "system", "content": AGENT.system.format(max_steps=10)}
            assert m[1]["role"] == "user" and tasks[row["task_id"]].question in m[1]["content"]
            assert "Tables:\n- " in m[1]["content"] and tasks[row["task_id"]].gold not in json.dumps(m)
            assert [x["content"] for x in m[2::2]] == [s["action"] for s in steps] + ["submit"]
            assert [x["content"] for x in m[3::2]] == [s["observation"][:2000] for s in steps]
            assert {x["role"] for x in m[2::2]} == {"assistant"} and {x["role"] for x in m[3::2]} == {"user"}
        out = export_training(str(campaign_store), "prm", str(tmp_path / "t"))
        assert out.reward_source == "oracle" and out.rows > 0
        for row in _load(out.paths[0], tmp_path / "cache2"):
            want = r.query("SELECT process_reward FROM steps WHERE traj_id = ? ORDER BY idx",
                           [row["traj_id"]]).column(0).to_pylist()
            assert row["values"] == want and row["labels"] == [v >= 0.5 for v in want]
    finally:
        r.close()


def test_cli_writes_training_data_and_refuses_mixed_options(search_store: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["export", str(search_store), "--format", "dpo", "--out", str(tmp_path / "o"),
                                    "--reward-source", SOURCE, "--jsonl"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == [str(tmp_path / "o" / "dpo.parquet"), str(tmp_path / "o" / "dpo.jsonl"),
                                       (f"dpo: 2 rows (reward source {SOURCE}), left out: 1 prefixes whose "
                                        "steps are not in the store")]
    for args in (["--format", "sft", "--table", "steps"], ["--jsonl"], ["--format", "prm", "--threshold", "nan"],
                 ["--format", "sft", "--threshold", "0.5"]):
        res = CliRunner().invoke(main, ["export", str(search_store), "--out", str(tmp_path / "p"), *args])
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, (args, res.output)
    assert not (tmp_path / "p").exists()  # nothing written on a refusal


@pytest.mark.slow  # a real RRO campaign (~10 s loaded); `pytest -m slow`
def test_dpo_from_an_rro_campaign_pairs_its_candidates(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(SMALL)
    overrides = ['strategy.kind="rro"', "budget.generations=0", "mu=2", "lambda=2",
                 'tasks.ids=["sql/0", "sql/42", "sql/7"]']
    assert launch.start(campaign.load(tmp_path / "c.toml", overrides), str(tmp_path / "r.duckdb")).status == "completed"
    out = export_training(str(tmp_path / "r.duckdb"), "dpo", str(tmp_path / "t"))
    rows = list(_load(out.paths[0], tmp_path / "cache"))
    assert rows and out.rows == len(rows) and out.skipped == {"prefixes whose steps are not in the store": 0}
    r = SnapshotStore(tmp_path / "r.duckdb")
    try:
        for row in rows:
            cands = r.query("SELECT action, reward, accepted FROM candidates WHERE prefix_id = ? AND reward_source = ?",
                            [row["prefix_id"], row["reward_source"]]).to_pylist()
            chosen = [c for c in cands if c["action"] == row["chosen"][0]["content"]]
            rejected = [c for c in cands if c["action"] == row["rejected"][0]["content"]]
            assert chosen and rejected and any(c["accepted"] for c in chosen) == any(c["accepted"] for c in cands)
            assert chosen[0]["reward"] - rejected[0]["reward"] == pytest.approx(row["margin"]) and row["margin"] > 0
            # the prompt ends with the prefix's steps: as many assistant turns as the step index
            assert sum(m["role"] == "assistant" for m in row["prompt"]) == row["step_idx"]
    finally:
        r.close()
