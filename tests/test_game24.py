"""Game of 24: exact rules, the oracle, GPT-4's recorded runs and values, offline and LLM campaigns."""
from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from evoagent import campaign, launch
from evoagent.envs import make_env
from evoagent.envs.game24 import rules
from evoagent.envs.game24.data import load_tasks
from evoagent.envs.game24.env import advance
from evoagent.envs.game24.solver import solvable
from evoagent.errors import UserError
from evoagent.trajectory import Task, trajectory_id
from stores import SnapshotStore

PUZZLE = Task("game24/901", "game24", "4 5 6 10")
CAMPAIGN = """
name = "g24"
seed = 1
mu = 2
lambda = 3
concurrency = 2
[env]
kind = "game24"
[tasks]
ranks = [{lo}, {hi}]
[policy]
kind = "{policy}"
[budget]
generations = 1
"""


def fresh(task: Task = PUZZLE) -> Any:
    env = make_env("game24")
    env.reset(task)
    return env


def F(*xs: Any) -> tuple[Fraction, ...]:
    return tuple(sorted(Fraction(x) for x in xs))


# -- rules: every malformed or wrong action is an error observation, never an exception ----------
@pytest.mark.parametrize("action, kind", [
    ("4 + 5 = 10 (left: 6 10 10)", "arithmetic"),
    ("4 + 5 = 9 (left: 6 9 11)", "left"),
    ("4 + 5 = 9 (left: 9 10)", "left"),
    ("4 + 7 = 11 (left: 5 6 10 11)", "operand"),
    ("4 + 4 = 8 (left: 5 6 8 10)", "operand"),  # 4 appears once
    ("4 / (0) = 0 (left: 0)", "operand"),
    ("hello", "format"),
    ("", "format"),
    ("4 + 5 = 9 (left: 6 9 10)" + " " * 400 + "x", "too_long"),
    ("1" * 5000, "too_long"),
    ("4 + 5 = 9 (left: 6 9 10)\n6 + 9 = 15 (left: 10 15)", "format"),
    ("4 + 5 = 9999999999999999999999999999999 (left: 6 10 9)", "arithmetic"),
    ("Answer: (4 + ) * 6 = 24", "answer_format"),
    ("Answer: 10 / (5 - 5) * 4 * 6 = 24", "division_by_zero"),
    ("Answer: None", "answer_format"),
    ("Answer: " + "(" * 60 + "4" + ")" * 60 + " = 24", "answer_format"),
    ("Answer: 4 ** 5 + 6 + 10 = 24", "answer_format"),
    ("Answer: __import__('os').system('true') = 24", "answer_format"),
])
def test_bad_actions_are_error_observations(action: str, kind: str) -> None:
    env = fresh()
    obs, reward, done, info = env.step(action)
    assert (info["valid"], info["error"], reward, done) == (False, kind, 0.0, False)
    assert obs.startswith("Error: ") and obs.endswith("(left: 4 5 6 10)")
    assert env.snapshot().state == F(4, 5, 6, 10)  # unchanged


def test_non_text_actions_and_division_by_zero() -> None:
    env = fresh(Task("t", "game24", "0 3 4 6"))
    assert env.step("3 / 0 = 0 (left: 0 4 6)")[3]["error"] == "division_by_zero"
    assert env.step(["4 + 5"])[3]["error"] == "format"  # type: ignore[arg-type]
    assert env.step(None)[3]["error"] == "format"  # type: ignore[arg-type]


def test_exact_fractions_negatives_and_printed_decimals() -> None:
    env = fresh()
    obs, _, done, info = env.step("10 / 6 = 1.666 (left: 1.666 4 5)")  # truncated decimal: 5/3
    assert info["valid"] and info["inexact"] and obs == "left: 5/3 4 5" and not done
    assert env.snapshot().state == F("5/3", 4, 5)
    assert env.step("(5/3) * 4 = 6.5 (left: 5 6.5)")[3]["error"] == "arithmetic"  # 20/3 is 6.666...
    assert env.step("(5/3) * 4 = 6.66 (left: 5 6.66)")[3]["inexact"]  # truncated: stands for 20/3
    env = fresh()
    assert env.step("4 - 5 = -1 (left: -1 6 10)")[3]["valid"]
    assert env.step("6 + (-1) = 5 (left: 5 10)")[0] == "left: 5 10"
    env = fresh()
    assert env.step("6 / 4 = 3/2 (left: 3/2 5 10)")[3] == {"valid": True, "error": "", "inexact": False,
                                                             "answer": False}
    env = fresh(Task("t", "game24", "2 5 8 11"))
    env.step("8 / 11 = 0.727 (left: 0.727 2 5)")
    # GPT-4 multiplied the rounded decimal: the exact result is 64/11 = 5.818..., not 5.816
    assert env.step("0.727 * 8 = 5.816 (left: 5.816 2 5)")[3]["error"] == "operand"  # 8 was used


def test_an_episode_ends_at_one_number_and_scores_24_exactly() -> None:
    env = fresh()
    steps = ["4 * 5 = 20 (left: 6 10 20)", "10 - 6 = 4 (left: 4 20)", "4 + 20 = 24 (left: 24)"]
    rewards = [env.step(a)[1:3] for a in steps]
    assert rewards == [(1.0, False), (1.0, False), (1.0, True)]
    assert env.step("24 + 0 = 24 (left: 24)")[3]["error"] == "over"
    assert env.submit() == 1.0
    env = fresh()
    assert env.step("4 + 5 = 9 (left: 6 9 10)")[1] == 0.0  # 6 9 10 cannot make 24
    env.step("6 + 9 = 15 (left: 10 15)")
    env.step("10 + 15 = 25 (left: 25)")
    assert env.submit() == 0.0


def test_answers_need_the_puzzles_numbers_and_exactly_24() -> None:
    env = fresh()
    _, reward, done, info = env.step("Answer: (4 * 5) + (10 - 6) = 24")
    assert (reward, done, info["answer"]) == (1.0, True, True) and env.submit() == 1.0
    env = fresh()
    assert env.step("Answer: (10 - 6) * 6 = 24")[1:3] == (0.0, True)  # 5 unused
    env = fresh()
    assert env.step("Answer: (10 - 4) * (6 - 5) = 24")[1] == 0.0  # equals 6
    env = fresh()
    assert env.step("(4 * 5) + (10 - 6) = 24")[1] == 1.0  # GPT-4's standard samples omit "Answer:"
    env = fresh(Task("t", "game24", "3 3 8 8"))
    assert env.step("Answer: 8 / (3 - 8 / 3) = 24")[1] == 1.0  # exact: 8 / (1/3)


def test_solvability_of_known_puzzles() -> None:
    assert solvable(F(1, 1, 4, 6)) and solvable(F(3, 3, 8, 8)) and solvable(F(4, 5, 6, 10))
    assert not solvable(F(1, 1, 1, 1)) and not solvable(F(1, 1, 1, 2)) and not solvable(F(6, 9, 10))
    assert solvable(F(24)) and not solvable(F(25)) and solvable(F("8/3", 9))
    tasks = load_tasks()
    assert len(tasks) == 1362 and tasks[0].question == "1 1 4 6" and tasks[900].task_id == "game24/901"
    assert tasks[900].question == "4 5 6 10"  # ToT's log idx 900 is rank 901
    assert [t.task_id for t in load_tasks([901, 903])] == ["game24/901", "game24/902", "game24/903"]
    with pytest.raises(UserError, match="tasks.ranks"):
        load_tasks([0, 5])


def test_every_legal_move_is_valid_and_moves_keep_the_oracle_exact() -> None:
    state = F(4, 5, 6, 10)
    lines = rules.moves(state)
    assert len(lines) == len(set(lines)) > 20
    for line in lines:
        env = fresh()
        obs, reward, _, info = env.step(line)
        assert info["valid"], (line, obs)
        assert reward == float(solvable(env.snapshot().state))
    assert any(rules.moves(F("5/3", 4, 5)))  # fractions print as (5/3) and parse back


# -- campaigns ---------------------------------------------------------------------------------
def run(tmp_path: Path, policy: str, *overrides: str, lo: int = 1, hi: int = 4) -> SnapshotStore:
    cfg = tmp_path / "g.toml"
    cfg.write_text(CAMPAIGN.format(lo=lo, hi=hi, policy=policy))
    out = launch.start(campaign.load(cfg, list(overrides)), str(tmp_path / "g.duckdb"))
    assert out.status == "completed"
    return SnapshotStore(tmp_path / "g.duckdb")


def test_enumerate_campaign_runs_offline_and_steps_are_judged(tmp_path: Path) -> None:
    r = run(tmp_path, "enumerate", "search.reward=solvable")
    assert r.scalar("SELECT count(*) FROM tasks WHERE env = 'game24'") == 4
    assert r.scalar("SELECT count(*) FROM steps WHERE NOT valid") == 0  # legal moves only
    # the env's per-step reward is the exact solvability of the state after the step
    rows = r.query("SELECT action, observation, reward FROM steps").to_pylist()
    assert len(rows) > 20
    for row in rows:
        left = rules.parse_state(row["observation"].removeprefix("left: "))
        assert row["reward"] == float(solvable(left)), row
    assert r.scalar("SELECT max(outcome_reward) FROM trajectories") == 1.0  # rank 1..4 are easy


def test_game24_keys_are_checked(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text(CAMPAIGN.format(lo=1, hi=4, policy="enumerate"))
    with pytest.raises(UserError, match="tasks.ranks"):
        campaign.load(cfg, ["tasks.ranks=[5, 1]"])
    with pytest.raises(UserError, match="intercode_sql"):
        launch.select_tasks(campaign.load(cfg, ['tasks.hardness=["easy"]']))
    with pytest.raises(UserError, match="tasks.ranks"):
        launch.select_tasks(campaign.load(cfg, ["tasks.ranks=[1, 2000]"]))
    with pytest.raises(UserError, match="game24"):
        launch.select_tasks(campaign.load(cfg, ['env.kind="intercode_sql"']))
    c = campaign.load(cfg, ['tasks.ids=["game24/3"]', 'policy.kind="replay"'])
    assert [t.task_id for t in launch.select_tasks(c)] == ["game24/3"]


# -- GPT-4's recorded runs -------------------------------------------------------------------------
def test_recorded_values_are_the_logged_ones() -> None:
    from evoagent.envs.game24.recorded import bundled
    from evoagent.envs.game24.values import RecordedValues, Solvable, recorded_table
    from evoagent.rewards import Query

    task = load_tasks([901, 901])[0]
    model = RecordedValues({task.task_id: task})
    tot = bundled(["gpt-4-tot"])[0]
    first = [p for p in tot.proposals if p.task_id == task.task_id and p.step == 0]
    assert first[0].lines == ("4 + 5 = 9 (left: 6 9 10)",) and first[0].value == 3.0
    got = model.score([Query(task.task_id, p.lines) for p in first])
    assert [s.value for s in got] == [p.value / 60 for p in first]  # sure/likely/impossible sums / 60
    # the log's last step: GPT-4 judged the answer "sure" three times (60)
    win = ("4 * 5 = 20 (left: 6 10 20)", "10 - 6 = 4 (left: 4 20)", "4 + 20 = 24 (left: 24)",
           "Answer: (4 * 5) + (10 - 6) = 24")
    assert model.score([Query(task.task_id, win)])[0].value == 1.0
    assert model.missing == 0
    table = recorded_table()
    unvalued = [m for m in rules.moves(advance(task, ()).state)
                if (task.task_id, "state", advance(task, (m,)).state) not in table]
    assert unvalued and model.score([Query(task.task_id, (unvalued[0],))])[0].value == 0.0
    assert model.missing == 1  # a state GPT-4 never valued: 0, counted
    assert Solvable({task.task_id: task}).score([Query(task.task_id, win[:2])])[0].value == 1.0


def test_replay_follows_gpt4_and_falls_back_to_legal_moves() -> None:
    import random

    from evoagent.envs.game24.policies import ReplayPolicy
    from evoagent.policies import Guidance

    policy = ReplayPolicy(["gpt-4-tot"], explore=0.0)
    task = load_tasks([901, 901])[0]
    start = set(policy.recorded(task, ()))
    assert "4 + 5 = 9 (left: 6 9 10)" in start and len(start) == 12  # ToT's 12 proposals at the start
    rng = random.Random(0)
    assert all(policy.next_action(task, (), Guidance(), rng).text in start for _ in range(20))
    from evoagent.trajectory import Step

    done = [Step(i, a, "", 0.0) for i, a in enumerate(
        ("4 * 5 = 20 (left: 6 10 20)", "10 - 6 = 4 (left: 4 20)", "4 + 20 = 24 (left: 24)"))]
    assert policy._table[(task.task_id, F(24))]  # ToT recorded answers in this state...
    assert policy.next_action(task, done, Guidance(), rng).text == "submit"  # ...but the episode is over
    other = load_tasks([5, 5])[0]  # no recording: a random legal move
    action = policy.next_action(other, (), Guidance(), rng)
    assert action.text in rules.moves(advance(other, ()).state) and "never reached" in action.thought


@pytest.mark.slow  # replays all 63,669 recorded actions (~15 s on a loaded 2-core machine)
def test_every_recorded_action_replays_and_errors_are_as_reported() -> None:
    from evoagent.envs.game24.recorded import bundled, tally

    tallies = {rec.source: tally(rec) for rec in bundled()}
    assert {s: (t.actions, t.valid, t.runs, t.verdict_agrees) for s, t in tallies.items()} == {
        "gpt-4-cot": (43260, 33658, 10000, 10000),
        "gpt-4-standard": (10000, 9995, 10000, 10000),
        "gpt-4-tot": (10409, 6853, 500, 497),
    }
    assert dict(tallies["gpt-4-tot"].errors) == TOT_ERRORS


TOT_ERRORS = {"over": 1296, "left": 543, "format": 115, "operand": 56, "arithmetic": 34, "answer_format": 2}


@pytest.mark.slow  # imports 20,500 recorded answers (~10 s)
def test_import_and_one_query_reproduce_the_logs_success_rates(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from evoagent.cli import main

    res = CliRunner().invoke(main, ["import", "game24", "--bundled", "--store", str(tmp_path / "l.duckdb")])
    assert res.exit_code == 0, res.output
    rows = SnapshotStore(tmp_path / "l.duckdb").query(SUCCESS_SQL).to_pylist()
    assert [(r["source"], r["answers"], r["success_pct"], r["puzzles_solved_pct"]) for r in rows] == [
        ("gpt-4-cot", 10000, 4.0, 49.0), ("gpt-4-standard", 10000, 7.3, 33.0), ("gpt-4-tot", 500, 23.8, 69.0)]


@pytest.mark.parametrize("step", ["abc", [1], -1, True, 10**9])
def test_a_bad_tot_step_is_one_line_and_nothing_is_written(tmp_path: Path, step: Any) -> None:
    import json

    from click.testing import CliRunner

    from evoagent.cli import main

    log = tmp_path / "gpt-4_0.7_propose1_value3_greedy5_start900_end901.json"
    log.write_text(json.dumps([{"idx": 900, "ys": ["Answer: (4 + 5 - 6) * 8 = 24"], "infos": [{"r": 0}],
                                "steps": [{"step": step, "new_ys": ["4 + 5 = 9 (left: 6 9 10)"], "values": [1.0]}]}]))
    res = CliRunner().invoke(main, ["import", "game24", str(log), "--store", str(tmp_path / "l.duckdb")])
    assert res.exit_code == 2, res.output
    assert "steps[].step must be a whole number 0..50" in res.output and len(res.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [log]


SUCCESS_SQL = (
    "WITH answers AS (SELECT traj_id, source, item_id FROM trajectories UNION "
    "SELECT traj_id, source, item_id FROM rediscoveries) "
    "SELECT source, count(*) AS answers, round(100 * avg(outcome_reward), 1) AS success_pct, "
    "round(100 * count(DISTINCT task_id) FILTER (WHERE solved) / count(DISTINCT task_id), 1) AS puzzles_solved_pct "
    "FROM answers JOIN trajectories USING (traj_id, source) GROUP BY source ORDER BY source")


@pytest.mark.slow  # the replay table reads all three logs (~5 s)
def test_replay_campaign_with_recorded_values_runs_offline(tmp_path: Path) -> None:
    r = run(tmp_path, "replay", "search.reward=recorded", "fitness.reward=recorded", lo=901, hi=910)
    assert r.scalar("SELECT count(DISTINCT task_id) FROM trajectories") == 10
    assert r.scalar("SELECT count(*) FROM rewards WHERE reward_source = 'recorded(gpt-4-tot)'") > 0
    assert r.scalar("SELECT count(*) FROM steps WHERE NOT valid") > 0  # GPT-4's own mistakes replayed


# -- an LLM policy through the official SDK, against the loopback fake server -------------------------
def solver_responder(body: dict[str, Any]) -> dict[str, Any]:
    """Plays perfectly from the numbers the prompt shows: the first move that keeps 24 reachable."""
    last = body["messages"][-1]["content"]
    text = " ".join(b.get("text", "") if b.get("type") == "text" else str(b.get("content", "")) for b in last)
    found = re.search(r"left: ([-0-9/ ]+)$", text) or re.search(r"Input: ([0-9 ]+)", text)
    assert found, text
    state = rules.parse_state(found.group(1))
    line = next((m for m in rules.moves(state) if solvable(advance_line(state, m))), rules.moves(state)[0])
    return {"content": [{"type": "text", "text": "Next step."},
                        {"type": "tool_use", "id": "toolu_x", "name": "step", "input": {"line": line}}],
            "stop_reason": "tool_use"}


def advance_line(state: tuple[Fraction, ...], line: str) -> tuple[Fraction, ...]:
    return rules.judge(state, line, state).state


@pytest.mark.slow  # an LLM campaign through the SDK (~10 s on a loaded machine)
def test_llm_policy_plays_through_the_fake_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evoagent.testing.fake_server import FakeAnthropic

    with FakeAnthropic(solver_responder) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        r = run(tmp_path, "anthropic", "policy.batch=false", "budget.generations=0", "mu=1", "lambda=1",
                "policy.retry_base_s=0.01", lo=1, hi=3)
    assert r.scalar("SELECT count(*) FROM llm_calls WHERE template = 'agent/game24/v1'") == 9  # 3 steps x 3 puzzles
    assert r.scalar("SELECT min(outcome_reward) FROM trajectories") == 1.0
    assert r.scalar("SELECT count(*) FROM steps WHERE NOT valid") == 0


@pytest.mark.slow  # step-level search over GPT-4's replayed proposals (~8 s)
def test_step_search_with_replay_never_fails_an_item(tmp_path: Path) -> None:
    # an accepted answer line or a last number ends the episode; the policy then submits
    r = run(tmp_path, "replay", "strategy.kind=ipr", "budget.generations=0", "fitness.reward=oracle",
            "policy.explore=0.0", lo=901, hi=915)
    assert r.scalar("SELECT count(*) FROM work_items WHERE status <> 'done'") == 0
    assert r.scalar("SELECT count(*) FROM candidates WHERE action LIKE 'Answer:%'") > 0


# -- step-level search when an accepted step ends the episode -----------------------------------------
AFTER_THE_END = "4 + 5 = 9 (left: 6 9 10)"


class PlaysOn:
    """Never submits: keeps 24 reachable while numbers are left (or writes ``answer`` at once),
    then writes lines after the episode has ended, as an LLM policy may."""

    name = "plays_on"

    def __init__(self, answer: str = "") -> None:
        self.answer = answer

    def next_action(self, task: Task, history: Any, guidance: Any, rng: Any) -> Any:
        from evoagent.policies.base import Action

        episode = advance(task, [s.action for s in history])
        if self.answer and not history:
            return Action(self.answer)
        return Action(AFTER_THE_END if episode.done else keeping_24(episode.state))


def keeping_24(state: tuple[Fraction, ...]) -> str:
    """The first legal move after which 24 is still reachable."""
    return next(m for m in rules.moves(state) if solvable(advance_line(state, m)))


@pytest.fixture
def playing_on(tmp_path: Path) -> Any:
    """A game24 context on puzzle 901 (4 5 6 10) with ``PlaysOn`` and the oracle as search.reward."""
    from evoagent.rewards import build_signals
    from stores import DuckDBStore

    cfg = tmp_path / "g.toml"
    cfg.write_text(CAMPAIGN.format(lo=901, hi=901, policy="enumerate"))
    opened = []

    def make(*overrides: str, answer: str = "") -> Any:
        c = campaign.load(cfg, list(overrides))
        ctx = launch.build_context(c, launch.select_tasks(c))
        ctx.policy, ctx.settings = PlaysOn(answer), dict(c.values)
        store = DuckDBStore(tmp_path / f"s{len(opened)}.duckdb")
        opened.append((ctx, store))
        ctx.search, ctx.fitness = build_signals(c, ctx, store)
        return c, ctx, store

    yield make
    for ctx, store in opened:
        ctx.close()
        store.close()


@pytest.mark.parametrize("answer", ["", "Answer: 5 * (10 - 6) + 4 = 24"], ids=["last-number", "answer-line"])
@pytest.mark.parametrize("method", ["rro", "ipr"])
def test_step_search_stops_when_the_accepted_step_ends_the_episode(playing_on: Any, method: str, answer: str) -> None:
    import random

    from operators.ipr import ipr
    from operators.rro import rro

    _, ctx, _ = playing_on(answer=answer)
    out = (rro if method == "rro" else ipr)(ctx.tasks["game24/901"], random.Random(1), ctx)
    assert out.trajectory.outcome_reward == 1.0
    assert out.trajectory.n_steps == (1 if answer else 3) == len({c.step_idx for c in out.candidates})
    assert AFTER_THE_END not in out.trajectory.actions


def test_mcts_treats_a_node_whose_action_ended_the_episode_as_terminal(playing_on: Any) -> None:
    import random

    from evoagent.loop import Runner
    from evoagent.strategies.mcts_pass import mcts

    c, ctx, store = playing_on("strategy.kind=mcts", "strategy.mcts.children=2", "budget.generations=4",
                               "mu=1")
    task = ctx.tasks["game24/901"]
    line: list[str] = []  # PlaysOn's 3 moves to the last number, 24
    for _ in range(3):
        line.append(keeping_24(advance(task, line).state))
    path = [trajectory_id("game24/901", line[:i]) for i in range(4)]
    child = mcts(task, random.Random(1), ctx, args={"path": path[:3], "actions": line[:2]})
    assert [c.action for c in child.candidates] == [line[2]]
    assert child.simulations[0].terminal and child.simulations[0].value == 1.0  # the last number: terminal
    # a leaf whose episode has ended is not expanded: its value is backed up as a terminal node's
    leaf = mcts(task, random.Random(1), ctx, args={"path": path, "actions": line})
    assert leaf.candidates == () and leaf.simulations[0].path == tuple(path) and leaf.simulations[0].terminal
    # a campaign: one child per expansion; the node that ended the episode is never expanded
    store.put_meta("campaign", c.to_json())
    store.add_tasks(list(ctx.tasks.values()))
    assert Runner(c, store, ctx).run().status == "completed"
    done = store.query("SELECT status, args FROM work_items ORDER BY generation").to_pylist()
    assert [(d["status"], json.loads(d["args"])["actions"]) for d in done] == [
        ("done", line[:i]) for i in range(3)]


def test_a_log_that_unfolds_into_millions_of_answers_is_refused_small(tmp_path: Path) -> None:
    """A few KB of gzip can list millions of answers: refused in one line, nothing written."""
    import gzip

    from click.testing import CliRunner

    from evoagent.cli import main

    log = tmp_path / "gpt-4_0.7_naive_cot_sample_100_start900_end901.json.gz"
    n = 200_001
    log.write_bytes(gzip.compress(('[{"idx": 900, "ys": [' + ",".join(['"x"'] * n) + '], "accs": ['
                                   + ",".join(["1"] * n) + "]}]").encode()))
    res = CliRunner().invoke(main, ["import", "game24", str(log), "--store", str(tmp_path / "l.duckdb")])
    assert res.exit_code == 2, res.output
    assert "more than 100,000 answers in one file" in res.output and len(res.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [log]


def test_under_the_oracle_a_cut_off_episode_is_not_ranked_with_a_solved_one(playing_on: Any) -> None:
    """Ranked by a step-level signal (``fitness.reward = "oracle"``, last step), a member is
    valued as the episode submitted there: one move that keeps 24 reachable, then cut off,
    scores its outcome (0), not the value of the state it stopped in (1)."""
    from evoagent.rollout import execute

    _, ctx, _ = playing_on("search.reward=oracle", "fitness.reward=oracle")
    task = ctx.tasks["game24/901"]
    line: list[str] = []
    for _ in range(3):
        line.append(keeping_24(advance(task, line).state))
    cut, solved = (execute(ctx, task, acts, "refine").trajectory for acts in (line[:1], line))
    assert cut.steps[-1].reward == 1.0 and cut.outcome_reward == 0.0 and solved.outcome_reward == 1.0
    assert ctx.fitness.trajectory_score(cut) == 0.0
    assert ctx.fitness.trajectory_score(solved) == 1.0


def test_revise_re_rolls_from_the_move_into_a_dead_end(playing_on: Any) -> None:
    """Game of 24's step reward values the state (24 reachable or not): a failed episode whose
    first move made 24 unreachable went wrong at step 0, though its value never rose (the rule
    for SQL's rewards would blame the last step and re-roll only the last move, from a dead end)."""
    import random

    from evoagent.rollout import execute
    from operators.revise import first_wrong_step, revise

    _, ctx, _ = playing_on("search.reward=oracle", "fitness.reward=oracle")
    task = ctx.tasks["game24/901"]
    state = advance(task, []).state
    dead = next(m for m in rules.moves(state) if not solvable(advance_line(state, m)))
    actions = [dead]
    while not advance(task, actions).done:
        actions.append(rules.moves(advance(task, actions).state)[0])
    parent = execute(ctx, task, actions, "sample").trajectory
    assert [s.reward for s in parent.steps] == [0.0, 0.0, 0.0] and parent.outcome_reward == 0.0
    child = revise(parent, random.Random(1), ctx).trajectory  # PlaysOn keeps 24 reachable from where it starts
    assert child.actions[0] != dead and child.outcome_reward == 1.0
    values = [1.0, 1.0, 0.0]
    steps = [s.__class__(**{**s.__dict__, "reward": v}) for s, v in zip(parent.steps, values)]
    assert first_wrong_step(steps, 0.0, dead_ends=True) == 2  # the last move lost it
    assert first_wrong_step(steps[:1], 0.0, dead_ends=True) == 1  # cut off on a live path: go on
    assert first_wrong_step(steps, 0.0) == 1  # SQL's rule is unchanged
