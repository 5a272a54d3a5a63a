"""Untrusted text (agent actions, model thoughts, observations) on its way into a stored trajectory.

A policy can emit text that is not valid Unicode, e.g. a lone surrogate from a JSON ``\\ud800``
escape. The environment answers it (it sees the original text); what is stored must be text that
DuckDB, Parquet and Arrow accept, or the work item fails at commit and the episode is lost.
Imported runs bring steps with no text at all: actions the recorder never executed (``blocked``)
have a null observation and reward, which policies and operators must read as such.
"""
from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from evoagent import campaign, launch
from evoagent.envs.intercode_sql.data import load_recorded
from evoagent.envs.intercode_sql.executor import ERROR_PREFIX
from evoagent.loop import Runner
from evoagent.policies.base import SUBMIT, Action, Guidance
from evoagent.envs.intercode_sql.walk import ReplayPolicy
from evoagent.rollout import rollout
from evoagent.trajectory import Step, Task, storable
from evoagent.prompts import render_steps
from operators.revise import revise
from stores import DuckDBStore, SnapshotStore

BAD_ACTION = "SELECT Name FROM people WHERE Name = '\ud800'"
CAMPAIGN = """
name = "untrusted"
seed = 1
mu = 2
lambda = 2
concurrency = 2
[env]
kind = "intercode_sql"
[tasks]
ids = ["sql/0"]
[policy]
kind = "replay"
[budget]
generations = 1
"""


class SurrogatePolicy:
    """A real policy whose first action and thought hold lone surrogates, as a model's JSON can."""

    name = "surrogates"

    def next_action(self, task: Task, history: Sequence[Step], guidance: Guidance,
                    rng: random.Random) -> Action:
        plan = [Action(BAD_ACTION, thought="a broken escape: \udfff"),
                Action("SELECT Name FROM people ORDER BY Name LIMIT 1", thought="pair \ud83d\ude00 halves")]
        return plan[len(history)] if len(history) < len(plan) else Action(SUBMIT)


def test_storable_replaces_lone_surrogates_only() -> None:
    assert storable("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert storable("\ud83d\ude00 é") == "\U0001F600 é"  # a pair written as two code points is one character
    assert storable("plain ascii") == "plain ascii"
    step = Step(0, "x\ud800", "y\udc00", 0.0, "z\udbff")
    assert (step.action, step.observation, step.thought) == ("x\ufffd", "y\ufffd", "z\ufffd")
    assert Step(0, "blocked", None, None, valid=False).observation is None  # never executed: stays null


def test_rollout_stores_storable_text_while_the_env_sees_the_original(campaign_env) -> None:
    ctx, task = campaign_env
    out = rollout(ctx, task, random.Random(0))
    first = out.trajectory.steps[0]
    assert first.action == BAD_ACTION.replace("\ud800", "\ufffd") and first.thought == "a broken escape: \ufffd"
    # the environment got the lone surrogate itself and said so, as MySQL would
    assert first.observation == ERROR_PREFIX + "Invalid utf8mb4 character string: '\\ud800'" and not first.valid
    assert out.trajectory.steps[1].thought == "pair \U0001F600 halves"
    for s in out.trajectory.steps:
        for text in (s.action, s.observation, s.thought):
            text.encode("utf-8")
    assert len(out.trajectory.traj_id) == 32


def test_campaign_with_surrogate_actions_commits_every_item(tmp_path: Path, campaign_env) -> None:
    ctx, _ = campaign_env
    c = campaign.load(tmp_path / "c.toml")
    path = tmp_path / "s.duckdb"
    with DuckDBStore(path) as store:
        store.put_meta("campaign", c.to_json())
        store.add_tasks(list(ctx.tasks.values()))
        out = Runner(c, store, ctx).run()
    assert out.status == "completed"
    s = SnapshotStore(path)
    try:
        assert s.scalar("SELECT count(*) FROM work_items WHERE status <> 'done'") == 0
        assert s.scalar("SELECT count(*) FROM work_items") >= 4  # generation 0 and 1, revise/refine too
        actions = s.query("SELECT action FROM steps WHERE idx = 0").column(0).to_pylist()
        assert BAD_ACTION.replace("\ud800", "\ufffd") in actions  # (refine's children drop it: an error step)
        assert s.scalar("SELECT count(*) FROM steps WHERE thought LIKE '%\ufffd%'") >= 1
    finally:
        s.close()
    parts = list((tmp_path / "s.duckdb.snapshot" / "raw" / "steps").glob("*.parquet"))
    assert parts and BAD_ACTION.replace("\ud800", "\ufffd") in pq.read_table(parts).column("action").to_pylist()


# -- imported actions that were never executed ------------------------------------------------------
def _recording_with_blocked(tmp_path: Path) -> Path:
    """A recording in InterCode's format, as its harness writes it when the provider gives no answer:
    the action ``blocked`` and its reward are logged, no observation."""
    doc = {
        "0": {"turn_history": {"actions": ["SHOW TABLES", "blocked", "SELECT Name FROM people ORDER BY Name"],
                               "observations": ["('people',)('poker_player',)", "('Aleksey Ostapenko',)"],
                               "rewards": [0, 0, 0]}, "summary": {"max_reward": 0}},
        "7": {"turn_history": {"actions": ["blocked"], "observations": [], "rewards": [0]}},
    }
    path = tmp_path / "palm_multiturn_10.json"
    path.write_text(json.dumps(doc))
    return path


def test_replay_policy_never_proposes_a_never_executed_action(tmp_path: Path) -> None:
    runs = load_recorded(_recording_with_blocked(tmp_path))
    assert [s.observation for s in runs[0].steps][1] is None  # what the importer stores
    policy = ReplayPolicy(runs, explore=1.0)
    assert policy.pool("sql/0") == ["SELECT Name FROM people ORDER BY Name", "SHOW TABLES"]
    assert policy.pool("sql/7") == []
    task = Task("sql/0", "intercode_sql", "q")
    history = (Step(0, "SHOW TABLES", "[('people',)]", 0.0),)
    for seed in range(40):  # as the agent went on after its blocked turn, and with every jump
        for hist in ((), history):
            assert policy.next_action(task, hist, Guidance(), random.Random(seed)).text != "blocked"
    assert policy.next_action(task, history, Guidance(), random.Random(0)).text in (
        "SELECT Name FROM people ORDER BY Name", SUBMIT)
    assert policy.next_action(Task("sql/7", "intercode_sql", "q"), (), Guidance(), random.Random(0)).text == SUBMIT


def test_operators_read_never_executed_steps(tmp_path: Path, campaign_env) -> None:
    ctx, task = campaign_env
    parent = load_recorded(_recording_with_blocked(tmp_path))[0]
    text = render_steps(parent.steps, show_rewards=True)
    assert "[1] blocked\n    -> (never executed)" in text and "(reward 0)" in text
    child = revise(parent, random.Random(0), ctx).trajectory  # the blocked step is the first wrong one
    assert child.actions[0] == "SHOW TABLES" and "blocked" not in child.actions
    assert all(s.observation is not None and s.reward is not None for s in child.steps)


@pytest.fixture
def campaign_env(tmp_path: Path):
    (tmp_path / "c.toml").write_text(CAMPAIGN)
    c = campaign.load(tmp_path / "c.toml")
    ctx = launch.build_context(c, launch.select_tasks(c))
    ctx.policy = SurrogatePolicy()
    yield ctx, ctx.tasks["sql/0"]
    ctx.close()
