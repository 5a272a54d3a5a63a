"""Importing recorded InterCode runs: all files checked before one write, hostile files refused
with one line and nothing written, and runs with never-executed (``blocked``) actions imported
as such and skipped by replay."""
from __future__ import annotations

import copy
import gzip
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from evoagent.cli import main
from evoagent.envs.intercode_sql import data as icdata
from evoagent.envs.intercode_sql.replay import replay_file
from evoagent.errors import UserError
from stores import SnapshotStore

BUNDLED = icdata.bundled_runs()


@pytest.fixture(scope="module")
def gpt4() -> dict:
    """The first 12 episodes of the bundled GPT-4 recording, as InterCode wrote them."""
    with gzip.open(BUNDLED["gpt-4"], "rt") as fh:
        runs = json.load(fh)
    return {k: runs[k] for k in list(runs)[:12]}


def _write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


def _import(*args: str):
    return CliRunner().invoke(main, ["import", "intercode", *args])


def _tree_digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for root in paths:
        for p in sorted([root, *root.rglob("*")] if root.is_dir() else [root]):
            if p.is_file():
                h.update(str(p).encode() + p.read_bytes())
    return h.hexdigest()


def _one_line_error(out, *words: str) -> None:
    assert out.exit_code == 2, out.output
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert "Traceback" not in out.output and out.stdout == ""


# -- item 4: atomic, validated -------------------------------------------------------------
def test_two_files_one_bad_writes_nothing(tmp_path: Path, gpt4: dict) -> None:
    good = _write(tmp_path / "good.json", gpt4)
    bad_doc = copy.deepcopy(gpt4)
    bad_doc["3"]["turn_history"]["rewards"][0] = 1e308
    bad = _write(tmp_path / "bad.json", bad_doc)
    store = tmp_path / "s.duckdb"
    _one_line_error(_import(str(good), str(bad), "--store", str(store)), "bad.json", "task 3", "1e+308")
    assert not any(tmp_path.glob("s.duckdb*")), "no store may be created when a file is refused"
    # into an existing store: not a byte changes, the good file's runs included
    assert _import("--bundled", "--store", str(store)).exit_code == 0
    before = _tree_digest(store, tmp_path / "s.duckdb.snapshot")
    _one_line_error(_import(str(good), str(bad), "--store", str(store)), "bad.json")
    assert _tree_digest(store, tmp_path / "s.duckdb.snapshot") == before


def _episode(gpt4: dict, key: str = "3") -> dict:
    return copy.deepcopy(gpt4[key])


def _mutations() -> list[tuple[str, object, str]]:
    """(name, how to damage a copy of the recording, words the error must contain)."""
    def reward(v: object):
        return lambda d: d["3"]["turn_history"]["rewards"].__setitem__(0, v)

    def pop_key(new: str):
        return lambda d: d.__setitem__(new, d.pop("3"))

    return [
        ("reward_1e308", reward(1e308), "outside InterCode's range"),
        ("reward_above_1", reward(1.5), "outside InterCode's range"),
        ("reward_string", reward("1.0"), "must be a number"),
        ("reward_bool", reward(True), "must be a number"),
        ("reward_null", reward(None), "must be a number"),
        ("max_reward_huge", lambda d: d["3"]["summary"].__setitem__("max_reward", 10**400 // 10**399), "outside"),
        ("actions_string", lambda d: d["3"]["turn_history"].__setitem__("actions", "SELECT 1"), "must be a list"),
        ("actions_object", lambda d: d["3"]["turn_history"].__setitem__("actions", {"0": "SELECT 1"}),
         "must be a list"),
        ("action_number", lambda d: d["3"]["turn_history"]["actions"].__setitem__(0, 7), "must be a string"),
        ("observations_missing", lambda d: d["3"]["turn_history"].pop("observations"), "must be a list"),
        ("more_observations", lambda d: d["3"]["turn_history"]["observations"].append("[]"), "observations for"),
        ("missing_observation_unmarked", lambda d: d["3"]["turn_history"]["observations"].pop(),
         "never-executed marker"),
        ("valid_action_string", lambda d: d["3"]["turn_history"]["valid_action"].__setitem__(0, "yes"),
         "true or false"),
        ("no_actions", lambda d: d["3"]["turn_history"].update(actions=[], observations=[], rewards=[],
                                                              valid_action=[]), "no actions"),
        ("key_out_of_range", pop_key("99999"), "not a task index"),
        ("key_word", pop_key("abc"), "not a task index"),
        ("key_negative", pop_key("-1"), "not a task index"),
        ("key_padded", pop_key("03"), "not a task index"),
        ("key_float", pop_key("3.0"), "not a task index"),
        ("key_disagrees_with_task_id", pop_key("5"), "says it is task 3"),
        ("episode_not_object", lambda d: d.__setitem__("3", ["SELECT 1"]), "must be an object"),
        ("lone_surrogate", lambda d: d["3"]["turn_history"]["actions"].__setitem__(0, "SELECT '\ud800'"),
         "lone surrogate"),
    ]


@pytest.mark.parametrize("name, damage, words", _mutations(), ids=[m[0] for m in _mutations()])
def test_hostile_recording_is_one_line_and_nothing_written(tmp_path: Path, gpt4: dict, name: str,
                                                           damage: object, words: str) -> None:
    doc = copy.deepcopy(gpt4)
    damage(doc)
    bad = _write(tmp_path / "bad.json", doc)
    _one_line_error(_import(str(bad), "--store", str(tmp_path / "s.duckdb")), "bad.json", words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


@pytest.mark.parametrize("text, words", [
    ('{"3": {"turn_history": {"rewards": [NaN]}}}', "NaN"),
    ('{"3": {"turn_history": {"rewards": [Infinity]}}}', "Infinity"),
    ('{"3": {"turn_history": {"rewards": [-Infinity]}}}', "Infinity"),
    ('{"3": {}, "3": {}}', "appears twice"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"3": 1' + "0" * 5000 + "}", "not a JSON file"),
    ("\udcff".encode("utf-8", "surrogateescape").decode("latin-1"), "not a JSON file"),
])
def test_malformed_json_is_one_line(tmp_path: Path, text: str, words: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(text, encoding="latin-1")
    _one_line_error(_import(str(bad), "--store", str(tmp_path / "s.duckdb")), "bad.json", words)
    assert not (tmp_path / "s.duckdb").exists()


def test_gzip_bomb_is_refused_after_a_bounded_read(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.json.gz"
    chunk = b" " * 2**20
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        fh.write(b'{"0": ')
        for _ in range(icdata.MAX_JSON_BYTES // len(chunk) + 2):
            fh.write(chunk)
    assert bomb.stat().st_size < 2**20  # a small file that would inflate past the bound
    _one_line_error(_import(str(bomb), "--store", str(tmp_path / "s.duckdb")), "bomb.json.gz", "once decompressed")
    assert not (tmp_path / "s.duckdb").exists()


# -- item 8: actions that were never executed ----------------------------------------------------
def _with_blocked(gpt4: dict) -> tuple[dict, int]:
    """The recording as InterCode's harness writes it when the provider blocks an answer: the
    action ``blocked`` and a reward 0 are logged, no observation and no valid_action."""
    doc = copy.deepcopy(gpt4)
    keys = list(doc)
    for k in keys[:4]:
        th = doc[k]["turn_history"]
        th["actions"].append("blocked")
        th["rewards"].append(0)
    only = doc[keys[4]]["turn_history"]  # blocked at the first turn: one action, no observation
    only.update(actions=["blocked"], observations=[], rewards=[0], valid_action=[])
    doc[keys[4]]["summary"]["max_reward"] = 0
    return doc, 5


def test_blocked_actions_import_flagged(tmp_path: Path, gpt4: dict) -> None:
    doc, n_blocked = _with_blocked(gpt4)
    rec = _write(tmp_path / "palm_multiturn_10.json", doc)
    store = tmp_path / "s.duckdb"
    out = _import(str(rec), "--store", str(store))
    assert out.exit_code == 0, out.output
    assert f"{n_blocked} never executed" in out.stdout
    reader = SnapshotStore(store)
    try:
        rows = reader.query("SELECT s.action, s.observation, s.reward, s.valid FROM steps s JOIN trajectories t "
                            "USING (traj_id) WHERE t.source = 'palm' AND s.observation IS NULL").to_pylist()
        n_traj = reader.scalar("SELECT count(*) FROM trajectories WHERE source = 'palm'")
    finally:
        reader.close()
    assert n_traj == len(doc)
    assert len(rows) == n_blocked
    assert all(r == {"action": "blocked", "observation": None, "reward": None, "valid": False} for r in rows)


def test_replay_skips_blocked_actions_and_counts_them(tmp_path: Path, gpt4: dict) -> None:
    doc, n_blocked = _with_blocked(gpt4)
    rec = _write(tmp_path / "palm_multiturn_10.json", doc)
    report = replay_file(rec)
    steps = [s for t in icdata.load_recorded(rec) for s in t.steps]
    assert report.blocked == n_blocked
    assert report.total + report.format_retries + report.blocked == len(steps)
    assert report.total >= 40 and report.agreed / report.total >= 0.95
    assert report.render().splitlines()[-1].startswith(f"agreement: {report.agreed}/{report.total} executed actions")


def test_rewards_logged_for_executed_actions_only_align(tmp_path: Path, gpt4: dict) -> None:
    doc = copy.deepcopy(gpt4)
    th = doc["3"]["turn_history"]
    th["actions"].append("blocked")  # reward, observation and valid_action logged for executed actions only
    rec = _write(tmp_path / "r.json", doc)
    traj = {t.task_id: t for t in icdata.load_recorded(rec)}["sql/3"]
    assert [s.reward for s in traj.steps] == [float(r) for r in th["rewards"]] + [None]
    assert traj.steps[-1].observation is None and not traj.steps[-1].valid


def test_source_names_of_intercode_result_files() -> None:
    assert icdata.source_name(Path("gpt-4_multiturn_10.json.gz")) == "gpt-4"
    assert icdata.source_name(Path("ic_sql_multiturn_chat-bison-001_10_turns.json")) == "chat-bison-001_10_turns"
    assert icdata.source_name(Path("ic_sql_multiturn_vicuna_10_turns.json")) != \
        icdata.source_name(Path("ic_sql_multiturn_starchat_10_turns.json"))


def test_load_recorded_checks_the_whole_file_before_returning(tmp_path: Path, gpt4: dict) -> None:
    doc = copy.deepcopy(gpt4)
    doc[list(doc)[-1]]["turn_history"]["rewards"][0] = -2  # the last episode is the bad one
    with pytest.raises(UserError, match="outside InterCode's range"):
        icdata.load_recorded(_write(tmp_path / "r.json", doc))


def test_too_many_json_containers_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "lists.json"
    bad.write_text("[" + "[]," * icdata.MAX_JSON_CONTAINERS + "[]]")  # 6 MB that would parse to ~120 MB of lists
    _one_line_error(_import(str(bad), "--store", str(tmp_path / "s.duckdb")), "lists.json", "arrays and objects")
