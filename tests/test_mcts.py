"""The ``mcts`` strategy: UCT selection and virtual loss, the tree as facts, determinism, kill/resume."""
from __future__ import annotations

import json
import math
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from evoagent import campaign, launch
from evoagent.errors import UserError
from evoagent.loop import Runner
from evoagent.rewards import build_signals
from evoagent.rollout import Context
from evoagent.strategies.mcts import Tree, plan_simulations, select
from evoagent.trajectory import trajectory_id
from stores import DuckDBStore

MCTS = ["strategy.kind=mcts", "strategy.mcts.parallel=3", "budget.generations=1",
        'tasks.ids=["sql/42", "sql/100", "sql/333"]']


def tree_of(children: dict[str, list[tuple[str, int, float, bool]]], visits: dict[str, tuple[int, float]]) -> Tree:
    """A hand-built tree: parent -> [(child, rank, prior, terminal)], node -> (visits, value sum)."""
    tree = Tree("R")
    for parent, kids in children.items():
        for kid, rank, prior, terminal in kids:
            tree.add(parent, kid, f"do {kid}", rank, prior, terminal)
    for node, (n, total) in visits.items():
        tree.visits[node], tree.total[node] = n, total
    return tree


def uct(total: float, n: int, n_parent: int, c: float) -> float:
    return total / n + c * math.sqrt(math.log(n_parent) / n)


def test_unvisited_children_first_by_evaluation_then_uct() -> None:
    tree = tree_of({"R": [("a", 0, 0.9, False), ("b", 1, 0.1, False), ("c", 2, 0.2, False), ("d", 3, 0.5, False)]},
                   {"R": (4, 3.4), "a": (3, 2.4), "b": (1, 1.0)})
    paths = plan_simulations(tree, 10, 1.0)
    # d and c are unvisited (d evaluated higher); then b's UCT beats a's, each leaf taken once
    assert uct(1.0, 1, 6, 1.0) > uct(2.4, 3, 6, 1.0)
    assert paths == [["R", "d"], ["R", "c"], ["R", "b"], ["R", "a"]]
    assert plan_simulations(tree, 2, 1.0) == paths[:2]


def test_virtual_loss_spreads_parallel_simulations() -> None:
    tree = tree_of({"R": [("a", 0, 0.0, False), ("b", 1, 0.0, False)],
                    "a": [("a1", 0, 0.0, False), ("a2", 1, 0.0, False)],
                    "b": [("b1", 0, 0.0, False), ("b2", 1, 0.0, False)],
                    "a1": [("a11", 0, 0.0, False)], "a2": [("a21", 0, 0.0, False)],
                    "b1": [("b11", 0, 0.0, False)], "b2": [("b21", 0, 0.0, False)]},
                   {"R": (10, 6.6), "a": (6, 4.2), "b": (4, 2.4), "a1": (3, 2.4), "a2": (3, 1.8),
                    "b1": (2, 1.2), "b2": (2, 1.2), "a11": (3, 2.4), "a21": (3, 1.8), "b11": (2, 1.2),
                    "b21": (2, 1.2)})
    c = 0.5
    assert uct(4.2, 6, 10, c) > uct(2.4, 4, 10, c)  # alone, a wins at the root
    assert uct(4.2, 7, 11, c) < uct(2.4, 4, 11, c)  # with one pending pass through a (a loss), b does
    first = select(tree, c, set(), Counter())
    assert first == ["R", "a", "a1", "a11"]
    paths = plan_simulations(tree, 2, c)
    assert paths[0] == first and paths[1][:2] == ["R", "b"]
    # without the virtual loss the second pass would descend through a again
    assert select(tree, c, {"a11"}, Counter())[:2] == ["R", "a"]


def test_terminal_nodes_are_never_expanded_and_an_exhausted_tree_plans_nothing() -> None:
    tree = tree_of({"R": [("a", 0, 1.0, True), ("b", 1, 0.0, False)], "b": [("b1", 0, 0.0, True)]},
                   {"R": (2, 1.0), "b": (1, 0.0), "b1": (1, 0.0)})
    assert plan_simulations(tree, 4, 1.0) == []
    tree.add("R", "c", "do c", 2, 0.0, False)
    assert plan_simulations(tree, 4, 1.0) == [["R", "c"]]
    assert tree.actions("b1") == ["do b", "do b1"]


def test_campaign_mistakes_are_one_line(campaign_file: Path) -> None:
    with pytest.raises(UserError, match="--set: key 'budget.generations': strategy 'mcts' needs at least 1 round"):
        campaign.load(campaign_file, MCTS + ["budget.generations=0"])
    with pytest.raises(UserError, match="key 'strategy.mcts.parallel': must be within 1..100, got 0"):
        campaign.load(campaign_file, MCTS + ["strategy.mcts.parallel=0"])
    assert campaign.load(campaign_file, MCTS).get("strategy.mcts.children") == 5


def test_reflections_are_facts_of_their_simulation_even_on_a_repeated_trajectory(campaign_file: Path,
                                                                                   tmp_path: Path) -> None:
    """Two passes ending in the same trajectory: each one's reflection is seen (a trajectory is stored once)."""
    from evoagent.strategies.mcts import MCTS as Strategy
    from evoagent.trajectory import Step, Trajectory
    from stores.base import ItemResult, Simulation, WorkItem

    c = campaign.load(campaign_file, MCTS)
    traj = Trajectory("sql/42", (Step(0, "SELECT 1", "[(1,)]", 0.0),), 0.0, "replay")
    path = (trajectory_id("sql/42", ()), traj.traj_id)
    items = [WorkItem(0, i, "mcts", "sql/42", (), i, json.dumps({"path": path[:1], "actions": []})) for i in range(4)]
    with DuckDBStore(tmp_path / "r.duckdb") as s:
        s.plan_generation(0, items)
        s.commit_items([ItemResult(item, traj, simulations=(Simulation("sql/42", path, 0.0, True, note),))
                        for item, note in zip(items, ("first", "", "second", "third"))], campaign="c")
        assert s.scalar("SELECT count(*) FROM trajectories") == 1
        got = Strategy(c, s, ["sql/42", "sql/100"]).reflections(1)
    assert got == {"sql/42": ["third", "second", "first"]}  # newest first, the empty one is none


def search(c: campaign.Campaign, store_path: Path, ctx: Context) -> None:
    """Run campaign ``c`` into a new store through the runner, sharing the policy in ``ctx``
    between runs (``launch.start`` without its start-up steps: loading the recordings, the bound)."""
    with DuckDBStore(store_path) as store:
        store.put_meta("campaign", c.to_json())
        store.add_tasks(list(ctx.tasks.values()))
        ctx.search, ctx.fitness = build_signals(c, ctx, store)
        try:
            assert Runner(c, store, ctx).run().status == "completed"
        finally:
            ctx.close()


def tables(path: Path) -> dict[str, list[dict]]:
    """What the search committed, without the times of writing."""
    with DuckDBStore(path) as s:
        return {name: s.query(sql).to_pylist() for name, sql in {
            "population": "SELECT generation, task_id, traj_id, rank FROM population ORDER BY ALL",
            "candidates": "SELECT * EXCLUDE (created_at) FROM candidates ORDER BY generation, item_id, rank",
            "simulations": "SELECT * EXCLUDE (created_at) FROM simulations ORDER BY generation, item_id",
            "plan": "SELECT generation, item_id, operator, task_id, seed, args, status, traj_id FROM work_items "
                    "ORDER BY generation, item_id",
            "generations": "SELECT generation, success_rate, nevals FROM generations ORDER BY generation",
        }.items()}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same oracle-searched campaign at concurrency 1 and 4."""
    from conftest import SMALL

    tmp = tmp_path_factory.mktemp("mcts")
    (tmp / "small.toml").write_text(SMALL)
    one, four = tmp / "c1.duckdb", tmp / "c4.duckdb"
    c = campaign.load(tmp / "small.toml", MCTS + ["concurrency=1"])
    ctx = launch.build_context(c, launch.select_tasks(c))
    search(c, one, ctx)
    search(campaign.load(tmp / "small.toml", MCTS + ["concurrency=4"]), four, ctx)
    return one, four


def test_the_tree_is_facts_and_visits_count_simulations(two_runs: tuple[Path, Path]) -> None:
    t = tables(two_runs[0])
    sims, cands, plan = t["simulations"], t["candidates"], t["plan"]
    assert len(sims) == len(plan) and all(p["status"] == "done" for p in plan)
    assert len(plan) > 3  # more than the three root expansions
    by_item = {(s["generation"], s["item_id"]): s for s in sims}
    expanded: set[str] = set()
    for p in plan:
        args, sim = json.loads(p["args"]), by_item[(p["generation"], p["item_id"])]
        path, actions = args["path"], args["actions"]
        # node ids are content ids of prefixes: the path walks the leaf's actions from the root
        assert path == [trajectory_id(p["task_id"], actions[:i]) for i in range(len(actions) + 1)]
        mine = [c for c in cands if (c["generation"], c["item_id"]) == (p["generation"], p["item_id"])]
        assert mine and {c["prefix_id"] for c in mine} == {path[-1]} and {c["step_idx"] for c in mine} == {len(actions)}
        assert [c["rank"] for c in mine] == list(range(len(mine)))
        assert len({c["node_id"] for c in mine}) == len(mine)  # duplicates are one child
        chosen = [c for c in mine if c["accepted"]]
        assert len(chosen) == 1 and chosen[0]["reward"] == max(c["reward"] for c in mine)
        assert sim["path"] == path + [chosen[0]["node_id"]] and sim["value"] == chosen[0]["reward"]
        assert path[-1] not in expanded  # a leaf is expanded once
        expanded.add(path[-1])
    assert {c["reward_source"] for c in cands} == {"oracle"}
    with DuckDBStore(two_runs[0]) as s:
        visits = {(r["task_id"], r["node_id"]): r["visits"] for r in s.query("SELECT * FROM search_nodes").to_pylist()}
        roots = s.query("SELECT task_id, count(*) AS n FROM work_items GROUP BY ALL").to_pylist()
        rates = s.query("SELECT success_rate FROM generations ORDER BY generation").column(0).to_pylist()
    through = Counter((s["task_id"], n) for s in sims for n in s["path"])
    assert visits == dict(through)
    assert {r["task_id"]: visits[(r["task_id"], trajectory_id(r["task_id"], ()))] for r in roots} == \
        {r["task_id"]: r["n"] for r in roots}
    assert rates[0] < rates[-1] == 1.0  # the search finds what the root expansions did not


def test_results_do_not_depend_on_concurrency(two_runs: tuple[Path, Path]) -> None:
    one, four = (tables(p) for p in two_runs)
    for name in one:
        assert one[name] == four[name], name


@pytest.mark.slow  # a soak: 4 kills and resumes (~1 min); in .ci/run's slow step
def test_killed_and_resumed_mcts_equals_the_uninterrupted_search(tmp_path: Path) -> None:
    from crash_soak import soak

    report = soak(tmp_path, kills=4, tasks=4, generations=8, seed=5,
                  extra='strategy.kind = "mcts"\nstrategy.mcts.parallel = 3\nstrategy.mcts.children = 3')
    assert report.kills == 4 and report.double_commits == 0, report.moments
    assert any(m.startswith("mid-generation") for m in report.moments), report.moments
    ref, crashed = tables(tmp_path / "reference.duckdb"), tables(tmp_path / "crashed.duckdb")
    assert ref["simulations"] and ref["candidates"]
    for name in ref:
        assert crashed[name] == ref[name], name


def sampling(responder: Any) -> Any:
    """The fake model answering a repeated prompt anew each time, as a model sampling at temperature 1
    does (the fake server's own answers are a function of the request), so expansions can branch."""
    from evoagent.testing.fake_wire import request_key

    drawn: Counter[str] = Counter()
    lock = threading.Lock()

    def respond(body: dict[str, Any]) -> Any:
        if any(t["name"] == "execute_sql" for t in body.get("tools") or []):
            with lock:
                drawn[request_key(body)] += 1
                body = {**body, "metadata": {"user_id": f"draw-{drawn[request_key(body)]}"}}
        return responder(body)

    return respond


@pytest.mark.slow  # an LLM campaign against the loopback fake server (~10 s): in .ci/run's slow step
def test_llm_reflections_on_failed_leaves_reach_later_expansions(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import SMALL

    from evoagent.envs.intercode_sql.fake_agent import intercode_responder
    from evoagent.testing.fake_server import FakeAnthropic

    (tmp_path / "c.toml").write_text(SMALL)
    c = campaign.load(tmp_path / "c.toml", MCTS + ['policy.kind="anthropic"', "policy.retry_base_s=0.01",
                                                    "strategy.mcts.max_depth=3", "budget.generations=4"])
    with FakeAnthropic(sampling(intercode_responder())) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
        assert launch.start(c, str(tmp_path / "llm.duckdb")).status == "completed"
    with DuckDBStore(tmp_path / "llm.duckdb") as s:
        kept = s.query("SELECT generation, task_id, reflection FROM simulations WHERE reflection <> '' "
                       "ORDER BY generation, item_id").to_pylist()
        plans = s.query("SELECT generation, task_id, args FROM work_items ORDER BY generation, item_id").to_pylist()
        asked = s.query("SELECT generation, request FROM raw.llm_calls WHERE template LIKE 'agent/%' "
                        "AND status = 'ok'").to_pylist()
        reflected = s.scalar("SELECT count(*) FROM llm_calls WHERE template LIKE 'operator/revise/%'")
    assert kept and reflected >= len({(k["task_id"], k["generation"]) for k in kept})
    lesson = kept[0]["reflection"]
    assert lesson.startswith("The query did not match")  # the fake reviewer's diagnosis
    # a task's reflections go with its later items, never with earlier ones
    first = min(k["generation"] for k in kept)
    carried = [p for p in plans if "reflections" in json.loads(p["args"])]
    assert carried and min(p["generation"] for p in carried) > first
    assert all(lesson in json.loads(p["args"])["reflections"] for p in carried)
    # ...and into the policy's prompts of those expansions
    shown = [a for a in asked if "lessons from failed attempts at this task: " + lesson[:40] in a["request"]]
    assert shown and min(a["generation"] for a in shown) > first
