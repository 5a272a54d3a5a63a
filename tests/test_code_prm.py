"""A learned PRM on code trajectories: rm train / rm eval split by task, the prm reward on env.kind = code."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from evoagent import campaign, launch
from evoagent.cli import main
from evoagent.errors import UserError
from evoagent.rm.labels import episodes, prefix, store_tasks
from evoagent.rm.text import prefix_text
from stores import open_reader

IDS = [f"HumanEval/{i}" for i in range(10)]
CODE_TOML = Path(__file__).resolve().parent.parent / "experiments" / "code.toml"
# experiments/code.toml on 10 tasks, one round, searched and selected by the hidden tests (the labels' source)
SETS = ["name=code-prm-test", "seed=3", "lambda=3", "concurrency=2", f"tasks.ids={json.dumps(IDS)}",
        "search.reward=oracle", "fitness.reward=env", "budget.generations=0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(campaign file, a store of one small code campaign, a CPU model trained on it, 30% of tasks held out)."""
    tmp = tmp_path_factory.mktemp("code-prm")
    store = tmp / "train.duckdb"
    assert launch.start(campaign.load(CODE_TOML, SETS), str(store)).status == "completed"
    out = CliRunner().invoke(main, ["rm", "train", str(store), "--labels", "oracle", "--holdout", "0.3",
                                    "--out", str(tmp / "prm")])
    assert out.exit_code == 0, out.output
    assert "3 tasks; labels: oracle" in out.output and "held-out ROC-AUC" in out.output
    return CODE_TOML, store, tmp / "prm"


def test_rm_train_splits_code_tasks_and_eval_scores_only_held_out_ones(trained: tuple[Path, Path, Path]) -> None:
    _, store, folder = trained
    config = json.loads((folder / "config.json").read_text())
    train_ids, held = set(config["training"]["tasks"]), set(config["split"]["holdout_tasks"])
    assert train_ids | held == set(IDS) and not train_ids & held and len(held) == 3
    out = CliRunner().invoke(main, ["rm", "eval", str(folder), "--store", str(store), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["heldout_tasks"] == 3 and report["steps"]["n"] > 0
    with open_reader(str(store)) as r:
        assert report["trajectories"] == len(episodes(r, held)) < len(episodes(r))


def _hidden_lines_shown(task, text: str) -> list[str]:
    """The hidden tests' asserts that ``text`` shows and the prompt does not (docstring examples may be both)."""
    prompt = " ".join(task.question.split())
    hidden = [" ".join(line.split()) for line in task.gold.splitlines() if line.strip().startswith("assert")]
    return [line for line in hidden if line not in prompt and line in text]


def test_code_prefix_texts_show_programs_and_visible_feedback_never_the_hidden_tests(
        trained: tuple[Path, Path, Path]) -> None:
    _, store, _ = trained
    with open_reader(str(store)) as r:
        tasks, eps = store_tasks(r), episodes(r)
    assert eps
    for ep in eps:
        task = tasks[ep.task_id]
        for i in range(len(ep.actions)):
            text = prefix_text(task, *prefix(ep, i))
            assert "def check(" not in text and f"step {i + 1} observation: " in text
            assert not _hidden_lines_shown(task, text), ep.task_id
    task = tasks[eps[0].task_id]  # the check can fail: an observation holding the hidden tests is caught
    assert _hidden_lines_shown(task, prefix_text(task, ["def f(): pass"], [task.gold]))


def test_a_code_campaign_searches_with_the_prm_on_held_out_tasks_and_refuses_training_ones(
        trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    c_file, _, folder = trained
    config = json.loads((folder / "config.json").read_text())
    held, seen = config["split"]["holdout_tasks"], config["training"]["tasks"]
    sets = [*SETS, "search.reward=prm", "fitness.reward=prm", f"rewards.prm.path={folder}", "lambda=2"]
    with pytest.raises(UserError, match="trained on 1 of this campaign's tasks"):
        launch.start(campaign.load(c_file, [*sets, f'tasks.ids=["{held[0]}", "{seen[0]}"]']),
                     str(tmp_path / "refused.duckdb"))
    assert list(tmp_path.iterdir()) == []
    store = tmp_path / "prm.duckdb"
    assert launch.start(campaign.load(c_file, [*sets, f"tasks.ids={json.dumps(held)}"]), str(store)).status == "completed"
    with open_reader(str(store)) as r:
        sources = {x["reward_source"] for x in r.query("SELECT DISTINCT reward_source FROM rewards").to_pylist()}
    assert any(s.startswith("prm(") for s in sources), sources


def test_rm_train_reads_a_store_of_imported_humaneval_and_mbpp_logs(tmp_path: Path) -> None:
    from evoagent.envs.code.data import DATA
    from evoagent.envs.code.recorded import import_logs

    store = tmp_path / "logs.duckdb"
    import_logs([DATA / "lats/test_dfs__humaneval-py._dfs_8_gpt-3.5-turbo_pass_at_k_1_py.jsonl.gz",
                 DATA / "lats/test_dfs__mbpp-py._dfs_8_gpt-3.5-turbo_pass_at_k_1_py.jsonl.gz"], "lats", str(store))
    out = CliRunner().invoke(main, ["rm", "train", str(store), "--out", str(tmp_path / "prm")])
    assert out.exit_code == 0, out.output  # no campaign in the store: its tasks are the environment's bundled ones
    config = json.loads((tmp_path / "prm" / "config.json").read_text())
    ids = set(config["training"]["tasks"]) | set(config["split"]["holdout_tasks"])
    assert {i.split("/")[0] for i in ids} == {"HumanEval", "MBPP"} and len(ids) > 500
    assert not set(config["training"]["tasks"]) & set(config["split"]["holdout_tasks"])
