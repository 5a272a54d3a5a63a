"""Learned process reward models: prefix text, labels, rm train / rm eval, the prm reward kind."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from evoagent import campaign, launch
from evoagent.cli import main
from evoagent.errors import UserError
from evoagent.rewards import Scorer
from evoagent.rewards.prm import LearnedPRM
from evoagent.rewards.signal import queries
from evoagent.rm import load_model, prefix_text
from evoagent.rm.features import features, parse
from evoagent.rm.labels import Episode, examples, step_labels
from evoagent.rm.text import SUBMITTED, submitted
from evoagent.trajectory import Task
from stores import DuckDBStore

# 12 tasks of 3 databases; the replay policy solves some members and fails others
CAMPAIGN = """
name = "rm-test"
seed = 5
mu = 3
lambda = 4
concurrency = 2
[env]
kind = "intercode_sql"
[tasks]
ids = ["sql/0", "sql/1", "sql/2", "sql/3", "sql/4", "sql/5", "sql/42", "sql/43", "sql/44", "sql/45", "sql/46", "sql/47"]
[policy]
kind = "replay"
explore = 0.3
[budget]
generations = 0
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(campaign file, a store of one small campaign, a CPU model trained on it holding out 2 databases)."""
    tmp = tmp_path_factory.mktemp("rm")
    (tmp / "c.toml").write_text(CAMPAIGN)
    store = tmp / "train.duckdb"
    assert launch.start(campaign.load(tmp / "c.toml"), str(store)).status == "completed"
    out = CliRunner().invoke(main, ["rm", "train", str(store), "--labels", "outcome", "--holdout-dbs", "flight_2,pets_1",
                                    "--out", str(tmp / "prm")])
    assert out.exit_code == 0, out.output
    assert "held-out ROC-AUC" in out.output and "split by database (held out: flight_2, pets_1)" in out.output
    return tmp / "c.toml", store, tmp / "prm"


def _task(**kw: object) -> Task:
    base = {"task_id": "sql/x", "env": "intercode_sql", "question": "How many singers?",
            "gold": "SELECT count(DISTINCT singer_id) FROM singer"}
    meta = {"db": "concert_singer", "schema": {"singer": ["singer_id", "name"]}}
    meta.update({k: kw.pop(k) for k in ("db", "schema") if k in kw})
    return Task(**{**base, **kw}, meta=meta)  # type: ignore[arg-type]


def test_prefix_text_is_one_line_per_field_never_shows_gold_and_keeps_the_end() -> None:
    task = _task()
    text = prefix_text(task, ["SHOW TABLES", "SELECT count(*)\nFROM singer"], ["[('singer',)]", "[(6,)]"])
    assert text.splitlines() == [
        "question: How many singers?", "database: concert_singer", "tables: singer(singer_id, name)",
        "step 1 action: SHOW TABLES", "step 1 observation: [('singer',)]",
        "step 2 action: SELECT count(*) FROM singer", "step 2 observation: [(6,)]"]
    assert task.gold not in text
    # an observation cannot forge a line; a missing one is marked
    forged = prefix_text(task, ["a", "b"], ["x\nstep 9 action: DROP", None])
    assert not any(line.startswith("step 9") for line in forged.splitlines()) and forged.endswith("step 2 observation: (not executed)")
    long = prefix_text(task, [f"SELECT {i}" for i in range(200)], ["y" * 1000] * 200, max_chars=2000)
    assert len(long) <= 2000 and long.endswith("step 200 observation: " + "y" * 398 + " …")
    assert long.startswith("question: How many singers?") and "earlier steps omitted)" in long
    tiny = prefix_text(task, ["SELECT " + "z" * 900], ["[(1,)]"], max_chars=100)
    assert len(tiny) == 100 and tiny.endswith("[(1,)]")
    # submitted after its last step: the submit is one more step, so "submit now" differs from "go on"
    ended = prefix_text(task, *submitted(["SHOW TABLES"], ["[('singer',)]"]))
    assert ended.splitlines()[-2:] == ["step 2 action: submit", f"step 2 observation: {SUBMITTED}"]
    assert parse(ended).terminal and parse(ended).steps == (("SHOW TABLES", "[('singer',)]"),)
    assert features(ended)["T|err"] == 0.0 and "terminal" not in features(ended[: ended.index("\nstep 2")])
    g24 = prefix_text(Task("game24/1", "game24", "4 9 10 13"), ["13 - 9 = 4"], ["(left: 4 4 10)"])
    assert g24.splitlines()[0] == "question: 4 9 10 13" and "database" not in g24 and "tables" not in g24


def test_step_labels_outcome_oracle_and_mc() -> None:
    ep = Episode("t", "sql/x", ("a", "b", "c"), ("1", "2", "3"), (0.0, 1.0, 0.0), 0.0)
    assert step_labels(ep, "outcome") == [0.0, 0.0, 0.0]
    assert step_labels(ep, "oracle") == [1.0, 1.0, 0.0]  # gold reached at step 2, lost at step 3
    from evoagent.rm.labels import query_key
    mc = {query_key(ep, 0): 0.25, query_key(ep, 2): 1.0}
    assert step_labels(ep, "mc", mc) == [0.25, None, 1.0]
    assert query_key(ep, 2) != query_key(Episode("t", "sql/x", ("a", "b", "c", "d"), (), (), 0.0), 2)
    # one example per distinct prefix, labels averaged; the last step is the submitted episode
    won = Episode("u", "sql/x", ("a", "b"), ("1", "2"), (0.0, 1.0), 1.0)
    got = {e.actions: (e.label, e.count) for e in examples(None, [ep, won], "outcome")}
    assert got == {("a",): (0.5, 2), ("a", "b"): (0.0, 1), ("a", "b", "submit"): (1.0, 1),
                   ("a", "b", "c", "submit"): (0.0, 1)}


def test_model_directory_describes_itself_and_reloads_to_identical_scores(trained: tuple[Path, Path, Path]) -> None:
    _, _, folder = trained
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "evoagent-prm" and config["backbone"] == "hashed-logistic"
    assert config["labels"] == "outcome" and config["split"]["holdout_dbs"] == ["flight_2", "pets_1"]
    assert set(config["split"]["holdout_tasks"]) == {"sql/1", "sql/42", "sql/44", "sql/45"}  # every task of them
    assert config["training"]["n_tasks"] == 8 and len(config["training"]["data_digest"]) == 16
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["heldout"]["n"] > 0 and 0.0 <= metrics["heldout"]["roc_auc"] <= 1.0
    texts = [prefix_text(_task(), ["SELECT count(*) FROM singer"], ["[(6,)]"]),
             prefix_text(_task(), ["SELECT nme FROM singer"], ["Error executing query: no column nme"])]
    a, b = load_model(folder), load_model(folder)
    assert a.score_texts(texts) == b.score_texts(texts) and a.digest == b.digest and len(a.digest) == 12
    assert all(0.0 < s < 1.0 for s in a.score_texts(texts)) and a.score_texts(texts) != [0.5, 0.5]
    copy = folder.parent / "prm-copy"
    shutil.copytree(folder, copy)
    with np.load(copy / "weights.npz") as z:
        coef, intercept = z["coef"].copy(), z["intercept"]
    coef[:] *= 2  # retrained (here: changed) weights are another model, with another cache key
    np.savez_compressed(copy / "weights.npz", coef=coef, intercept=intercept)
    assert load_model(copy).digest != a.digest


def test_eval_prints_heldout_auc_reliability_and_best_of_n(trained: tuple[Path, Path, Path]) -> None:
    _, store, folder = trained
    out = CliRunner().invoke(main, ["rm", "eval", str(folder), "--store", str(store)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith("held-out tasks: 4, ") and lines[1].startswith("ROC-AUC: 0.")
    assert " ROC-AUC on the " in lines[1] and " tasks without a twin: " in lines[1]  # beside the overall figure
    assert sum(line.startswith("| 0.") for line in lines) == 10  # the reliability bins
    picks = {line.split(" | ")[0] for line in lines if line.startswith(("| model", "| random", "| oracle"))}
    assert picks == {"| model (top-ranked)", "| random (expected)", "| oracle (any of N solved)"}
    got = json.loads(CliRunner().invoke(main, ["rm", "eval", str(folder), "--store", str(store), "--json"]).output)
    b = got["rerank"]
    assert b["tasks"] >= 2 and b["random"] <= b["oracle"] and b["model"] <= b["oracle"]
    assert sum(r["n"] for r in got["reliability"]) == got["steps"]["n"]


def test_a_campaign_scored_by_prm_writes_each_score_once_and_resume_recomputes_nothing(
        trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    c_file, _, folder = trained
    sets = ["search.reward=prm", "fitness.reward=prm", f"rewards.prm.path={folder}", "tasks.ids=[\"sql/42\", \"sql/44\"]"]
    store = tmp_path / "p.duckdb"
    assert launch.start(campaign.load(c_file, sets), str(store)).status == "completed"
    model = load_model(folder)
    source = f"prm(model={model.digest})"
    with DuckDBStore(store) as s:
        n, k = s.query("SELECT count(*), count(DISTINCT (traj_id, step_idx)) FROM rewards WHERE reward_source = ?",
                       [source]).to_pylist()[0].values()
        assert n == k > 0
        assert s.scalar("SELECT count(*) FROM steps WHERE process_reward IS NULL") == 0
        assert s.scalar("SELECT count(*) FROM rewards WHERE reward_source = 'oracle'") == 0
        members = s.scalar("SELECT list(traj_id) FROM population WHERE generation = 0")
        trajs = list(s.load_trajectories(members).values())
        ctx = launch.build_context(campaign.load(c_file, sets), launch.select_tasks(campaign.load(c_file, sets)))
        scorer = Scorer(LearnedPRM(ctx, model), s, batch_size=64, wait_s=0.0)
        asked = [q for t in trajs for q in queries(t)]
        assert len(members) >= 2 and len(asked) >= 4
        values = scorer.score(asked)
        assert scorer.stats.computed == 0 and scorer.stats.hits == len({q.key for q in asked})
        scorer.close()
    # the same prefixes without observations: executed once each to read them (counted), same values
    fresh = [type(q)(q.task_id, q.actions, terminal=q.terminal) for q in asked[:5]]
    scored = LearnedPRM(ctx, model).score(fresh)
    assert [sc.value for sc in scored] == pytest.approx(values[:5])
    assert [sc.env_steps for sc in scored] == [len(q.actions) for q in fresh]


def test_damaged_or_foreign_model_directories_are_one_line_exit_2(trained: tuple[Path, Path, Path],
                                                                   tmp_path: Path) -> None:
    c_file, store, folder = trained
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "weights.npz").write_bytes(b"PK\x03\x04 not a zip")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"format": "something-else"}))
    bad_split = tmp_path / "bad_split"
    shutil.copytree(folder, bad_split)
    config = json.loads((bad_split / "config.json").read_text())
    (bad_split / "config.json").write_text(json.dumps({**config, "split": {"holdout_tasks": 5}}))
    for model_dir, why in ((broken, "damaged model"), (foreign, "not an evoagent process reward model"),
                           (bad_split, "'split' must be an object"), (tmp_path / "none", "no model directory")):
        out = CliRunner().invoke(main, ["rm", "eval", str(model_dir), "--store", str(store)])
        assert out.exit_code == 2 and len(out.output.strip().splitlines()) == 1 and why in out.output, out.output
    out = CliRunner().invoke(main, ["run", str(c_file), "--store", str(tmp_path / "x.duckdb"), "--set",
                                    "search.reward=prm", "--set", f"rewards.prm.path={foreign}"])
    assert out.exit_code == 2 and "rewards.prm.path" in out.output and not (tmp_path / "x.duckdb").exists()
    from evoagent.errors import UserError
    from evoagent.rewards.prm import check_prm
    with pytest.raises(UserError, match="rewards.prm.path"):  # what launch can check before a store exists
        check_prm(campaign.load(c_file, ["fitness.reward=prm"]))
    check_prm(campaign.load(c_file, ["fitness.reward=prm", f"rewards.prm.path={folder}"]))
    out = CliRunner().invoke(main, ["rm", "train", str(store), "--out", str(tmp_path / "m"), "--holdout-dbs", "nope"])
    assert out.exit_code == 2 and "no task of database 'nope'" in out.output and not (tmp_path / "m").exists()


@pytest.mark.slow  # fine-tunes MiniLM for a few steps on the CPU (~1 minute)
def test_minilm_backbone_trains_a_few_steps_and_reloads(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("torch")
    _, store, _ = trained
    out = CliRunner().invoke(main, ["rm", "train", str(store), "--backbone", "minilm", "--max-steps", "3",
                                    "--batch-size", "4", "--max-chars", "600", "--holdout-dbs", "flight_2",
                                    "--out", str(tmp_path / "mini")])
    assert out.exit_code == 0, out.output
    config = json.loads((tmp_path / "mini" / "config.json").read_text())
    assert config["backbone"] == "transformer" and (tmp_path / "mini" / "hf" / "model.safetensors").is_file()
    texts = [prefix_text(_task(), ["SELECT count(*) FROM singer"], ["[(6,)]"]), prefix_text(_task(), ["x"], ["y"])]
    a, b = load_model(tmp_path / "mini"), load_model(tmp_path / "mini")
    assert a.score_texts(texts) == pytest.approx(b.score_texts(texts), abs=1e-6)
    assert all(0.0 < s < 1.0 for s in a.score_texts(texts))
    hf_config = tmp_path / "mini" / "hf" / "config.json"
    hf_config.write_text(json.dumps({**json.loads(hf_config.read_text()), "intermediate_size": 10**7}))
    from evoagent.errors import UserError
    with pytest.raises(UserError, match="declares .* parameters; the weights hold"):  # not allocated
        load_model(tmp_path / "mini")


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def _npz(path: Path, arrays: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """A weights.npz whose members declare (dtype, shape) in their headers but hold 8 bytes of data."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, (dtype, shape) in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
            zf.writestr(f"{name}.npy", buf.getvalue() + b"\0" * 8)


def test_weights_whose_header_declares_another_array_are_refused_before_loading(
        trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from evoagent.errors import UserError

    bits = json.loads((trained[2] / "config.json").read_text())["bits"]
    model = _copy(trained[2], tmp_path / "m")
    for arrays, why in (({"coef": ("<f4", (10**11,)), "intercept": ("<f8", (1,))}, r"\(100000000000,\)"),
                        ({"coef": ("<i8", (1 << bits,)), "intercept": ("<f8", (1,))}, "int64"),
                        ({"coef": ("<f4", (1 << bits,))}, "exactly the arrays")):
        _npz(model / "weights.npz", arrays)
        with pytest.raises(UserError, match="damaged model .*" + why):  # not a 400 GB allocation
            load_model(model)


def test_safetensors_headers_are_checked_against_the_file(tmp_path: Path) -> None:
    import struct

    save_file = pytest.importorskip("safetensors.numpy").save_file  # the [gpu] extra's; CI installs it

    from evoagent.rm.transformer import safetensors_size

    good = tmp_path / "good.safetensors"
    save_file({"a": np.zeros((3, 4), np.float32), "b": np.zeros(5, np.int64)}, str(good))
    assert safetensors_size(good) == (17, 2)

    def forged(header: dict, data: bytes = b"\0" * 8, length: int | None = None) -> Path:
        raw = json.dumps(header).encode()
        path = tmp_path / f"bad{len(list(tmp_path.iterdir()))}.safetensors"
        path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
        return path

    for path, why in ((forged({"w": {"dtype": "F32", "shape": [10**11], "data_offsets": [0, 4 * 10**11]}}), "declares"),
                      (forged({"w": {"dtype": "F32", "shape": [10**11], "data_offsets": [0, 8]}}), "numbers in 8 bytes"),
                      (forged({}, length=1 << 40), "exceeds the file"),
                      (forged({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                               "v": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}), "overlap"),
                      (forged({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}), "not described")):
        with pytest.raises(ValueError, match=why):
            safetensors_size(path)


def test_a_model_directory_with_a_link_or_too_many_bytes_is_refused(trained: tuple[Path, Path, Path],
                                                                   tmp_path: Path, monkeypatch) -> None:
    import evoagent.rm.model as rm_model
    from evoagent.errors import UserError

    outside = tmp_path / "secret.txt"
    outside.write_text("not the model's")
    linked = _copy(trained[2], tmp_path / "linked")
    (linked / "extra").symlink_to(outside)  # would be hashed into the digest, read from outside
    with pytest.raises(UserError, match="symbolic link"):
        load_model(linked)
    nested = _copy(trained[2], tmp_path / "nested")
    (nested / "sub").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UserError, match="symbolic link"):
        load_model(nested)
    monkeypatch.setattr(rm_model, "MAX_MODEL_BYTES", 1000)  # every file counts toward one total
    with pytest.raises(UserError, match="more than 0 GiB of files"):
        load_model(trained[2])


def test_rm_train_never_replaces_a_folder_it_did_not_write(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, store, _ = trained
    ckpt = tmp_path / "ckpt"  # a Hugging Face checkpoint has a config.json too
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"model_type": "bert"}')
    (ckpt / "model.safetensors").write_bytes(b"weights")
    out = CliRunner().invoke(main, ["rm", "train", str(store), "--out", str(ckpt)])
    assert out.exit_code == 2 and "is not a model directory written by evoagent rm train" in out.output, out.output
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json", "model.safetensors"]


def test_rm_train_swaps_a_previous_model_in_whole(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from evoagent.rm.train import TrainOptions, train

    _, store, folder = trained
    out = _copy(folder, tmp_path / "prm")
    (out / "stale.txt").write_text("from the old model")
    train(str(store), out, TrainOptions(holdout_dbs=("flight_2", "pets_1")))
    assert not (out / "stale.txt").exists() and load_model(out).digest == load_model(folder).digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prm"]  # no staging or old folder left


def test_prm_refuses_the_tasks_it_was_trained_on_unless_told(trained: tuple[Path, Path, Path], tmp_path: Path,
                                                             monkeypatch) -> None:
    from evoagent.errors import UserError
    from evoagent.rewards.prm import check_unseen

    c_file, _, folder = trained
    config = json.loads((folder / "config.json").read_text())
    assert set(config["training"]["tasks"]) == {"sql/0", "sql/2", "sql/3", "sql/4", "sql/5", "sql/43", "sql/46",
                                                "sql/47"}  # every task but the held-out databases'
    sets = ["search.reward=prm", f"rewards.prm.path={folder}", 'tasks.ids=["sql/42", "sql/0"]']
    with pytest.raises(UserError, match=r"trained on 1 of this campaign's tasks or on tasks with the same gold "
                                        r"\(0 of them twins: e.g. 'sql/0'\)"):
        launch.start(campaign.load(c_file, sets), str(tmp_path / "s.duckdb"))
    assert list(tmp_path.iterdir()) == []
    told = sets + ["rewards.prm.allow_seen_tasks=true"]
    tasks = launch.select_tasks(campaign.load(c_file, told))
    check_unseen(campaign.load(c_file, told), tasks)  # the user knows: scored, as gold
    with pytest.raises(UserError, match="best_of_n picks by gold"):
        check_unseen(campaign.load(c_file, told + ["fitness.reward=prm", "strategy.kind=best_of_n"]), tasks)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "unused")
    with pytest.raises(UserError, match="would show its values in prompts"):
        check_unseen(campaign.load(c_file, told + ["policy.kind=anthropic"]), tasks)
    old = _copy(folder, tmp_path / "old")
    del config["training"]["tasks"]
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="does not record its training tasks"):
        check_unseen(campaign.load(c_file, [*sets[:1], f"rewards.prm.path={old}", 'tasks.ids=["sql/42"]']), tasks)


def test_prm_refuses_a_task_whose_gold_twin_it_was_trained_on(trained: tuple[Path, Path, Path],
                                                              tmp_path: Path) -> None:
    """Issue 19 item 8: the refusal went by task id only; a paraphrase with the same gold passed."""
    from evoagent.envs.intercode_sql.data import load_tasks
    from evoagent.rm.leakage import class_id

    c_file, _, folder = trained
    config = json.loads((folder / "config.json").read_text())
    every = load_tasks()
    trained_ids = set(config["training"]["tasks"])
    gold = {class_id(t) for t in every if t.task_id in trained_ids}
    assert set(config["training"]["gold_classes"]) == gold
    twin = next(t for t in every if t.task_id not in trained_ids and class_id(t) in gold)
    sets = ["search.reward=prm", f"rewards.prm.path={folder}", f'tasks.ids=["{twin.task_id}"]']
    with pytest.raises(UserError, match=rf"1 of them twins: e.g. '{twin.task_id}', whose gold is a training task's"):
        launch.start(campaign.load(c_file, sets), str(tmp_path / "s.duckdb"))
    assert list(tmp_path.iterdir()) == []


def test_prm_http_and_judge_read_a_query_through_one_rendering(trained: tuple[Path, Path, Path]) -> None:
    from evoagent.rewards.base import Query
    from evoagent.rm.text import observed, render_queries

    c_file, _, folder = trained
    c = campaign.load(c_file)
    ctx = launch.build_context(c, launch.select_tasks(c))
    model = load_model(folder)
    asked = [Query("sql/0", ("SHOW TABLES", "SELECT count(*) FROM poker_player")),
             Query("sql/0", ("SHOW TABLES",), terminal=True, observations=("[('singer',)]",))]
    texts, steps = render_queries(ctx, asked, model.max_chars, "prm")
    assert steps == [2, 0] and texts[1].endswith(f"step 2 observation: {SUBMITTED}")
    seen, spent = observed(ctx, asked[0], "judge")  # the judge's half of the same function
    assert spent == 2 and texts[0].endswith(f"step 2 observation: {seen[1]}") and None not in seen
    scores = LearnedPRM(ctx, model).score(asked)
    assert [s.value for s in scores] == pytest.approx(model.score_texts(texts)) and [s.env_steps for s in scores] == steps


def test_rm_train_splits_by_gold_class_so_no_twin_is_on_both_sides() -> None:
    """Issue 19 item 8 / issue 20 item 6: a seeded split by task put paraphrase twins (same gold) on both sides."""
    from evoagent.envs.intercode_sql.data import load_tasks
    from evoagent.rm.leakage import classes, twinless
    from evoagent.rm.train import TrainOptions, split_by, split_tasks

    tasks = {t.task_id: t for t in load_tasks()}
    assert len(tasks) - len(twinless(tasks)) == 966  # tasks sharing their normalised gold with another
    train_ids, held = split_tasks(tasks, TrainOptions(holdout=0.2, seed=0))
    of = classes(tasks.values())
    assert not {of[i] for i in train_ids} & {of[i] for i in held}
    assert 0.1 < len(held) / len(tasks) < 0.3 and split_by(TrainOptions()) == "gold_class"
    assert split_by(TrainOptions(holdout_dbs=("pets_1",))) == "database"


def test_tasks_without_gold_text_are_each_their_own_class() -> None:
    """Game of 24 tasks carry no gold text: each puzzle is its own class, and the split is the task draw."""
    import random

    from evoagent.envs.game24.data import load_tasks
    from evoagent.rm.leakage import classes
    from evoagent.rm.train import TrainOptions, split_tasks

    tasks = {t.task_id: t for t in load_tasks()}
    assert len(set(classes(tasks.values()).values())) == len(tasks)
    _, held = split_tasks(tasks, TrainOptions(holdout=0.2, seed=0))
    assert held == set(random.Random(0).sample(sorted(tasks), round(len(tasks) * 0.2)))
