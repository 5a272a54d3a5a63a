"""Method fixes of issue 20: step searches and MCTS sample distinct candidates, RRO does not stop
below its bar while it has another way on, MCTS keeps a solved answer, and prefixes are restored
from the environment's snapshot instead of re-executed (same results, fewer executions).

The reward models here read only the actions (never gold), registered like any other.
"""
from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from evoagent import campaign, launch, registry
from evoagent.envs import make_env
from evoagent.policies.base import SUBMIT, Action, Guidance
from evoagent.rewards import Query, RewardModel, Score, Signal, make_scorer
from evoagent.rollout import Context
from evoagent.testing.runs import run_in_new_store, search_rows, without_restore
from evoagent.trajectory import Step, Task, Trajectory, trajectory_id
from evoagent.strategies.mcts_pass import mcts
from operators.rro import rro
from stores import DuckDBStore
from stores.base import ItemResult, Simulation, WorkItem

VALUES = {"SELECT 1": 0.1, "SELECT 2": 0.15, "SELECT 4": 0.05, SUBMIT: 0.2}


class Low(RewardModel):
    """Known values by the prefix's last action (``submit`` for a submitted prefix); no gold."""

    name, uses_gold = "low_test", False

    @property
    def source(self) -> str:
        return "low_test"

    def score(self, queries: Sequence[Query]) -> list[Score]:
        return [Score(VALUES[SUBMIT if q.terminal else q.actions[-1]]) for q in queries]


class SubmitsOften:
    """Every other call proposes ``submit`` (which no ``avoid`` can exclude), else the first action
    of ``options[step]`` not to avoid: a policy whose re-proposals would fill a step's budget."""

    name = "submits_often"

    def __init__(self, options: Sequence[Sequence[str]]):
        self.options, self.calls = options, 0

    def next_action(self, task: Task, history: Sequence[Step], guidance: Guidance, rng: random.Random) -> Action:
        self.calls += 1
        if self.calls % 2 == 1:
            return Action(SUBMIT)
        todo = self.options[len(history)] if len(history) < len(self.options) else ()
        return Action(next((a for a in todo if a not in guidance.avoid), SUBMIT))


class Stubborn:
    """Proposes the first of ``options`` not to avoid: without ``avoid`` always the same action."""

    name = "stubborn"

    def __init__(self, options: Sequence[str]):
        self.options, self.calls = options, 0

    def next_action(self, task: Task, history: Sequence[Step], guidance: Guidance, rng: random.Random) -> Action:
        self.calls += 1
        return Action(next((a for a in self.options if a not in guidance.avoid), SUBMIT))


@pytest.fixture
def low() -> Iterator[None]:
    registry.register(registry.Part("reward", Low.name, lambda ctx, params, seed: Low(), uses_gold=False))
    yield
    registry.unregister("reward", Low.name)


def _context(campaign_file: Path, store: DuckDBStore, policy: Any, *overrides: str) -> Context:
    c = campaign.load(campaign_file, ["tasks.ids=['sql/0']", *overrides])
    ctx = Context({t.task_id: t for t in launch.select_tasks(c)}, policy,
                  lambda: make_env("intercode_sql", dialect="mysql", timeout_s=5.0), max_steps=10,
                  settings=dict(c.values))
    if c.get("search.reward") != "oracle":
        ctx.search = Signal(make_scorer(c.get("search.reward"), c, ctx, store), "last", annotates=True)
    return ctx


def _rro_with_a_bar_of_half(campaign_file: Path, tmp_path: Path) -> tuple[Any, SubmitsOften]:
    """RRO on sql/0 with 3 candidates a step, a bar of 0.5 from step 0, and ``low_test`` values."""
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        policy = SubmitsOften([["SELECT 1", "SELECT 2", "SELECT 3"], ["SELECT 4"]])
        ctx = _context(campaign_file, store, policy, "search.reward=low_test", "operators.rro.max_candidates=3",
                       "operators.rro.rise_from=0.5")
        out = rro(ctx.tasks["sql/0"], random.Random(1), ctx)
        ctx.close()
    return out, policy


def test_rro_counts_a_re_proposal_once_and_submits_below_the_bar_only_when_every_candidate_was_tried(
        low: None, campaign_file: Path, tmp_path: Path) -> None:
    """Step 0's bar is 0.5: nothing rises. Its repeats are no samples (sql/879: five submits, then
    taken): the search asks again until it has tried its 3 distinct candidates, and only then takes
    the best, here the submit (0.2 against 0.1 and 0.15). Going on instead would walk a prefix the
    model values below stopping until the step limit."""
    out, policy = _rro_with_a_bar_of_half(campaign_file, tmp_path)
    rows = [(c.step_idx, c.rank, c.action, c.reward, c.accepted) for c in out.candidates]
    assert rows == [(0, 0, SUBMIT, 0.2, True), (0, 1, "SELECT 1", 0.1, False), (0, 2, "SELECT 2", 0.15, False)]
    assert out.trajectory.actions == ()
    assert policy.calls == 4  # 3 distinct in 4 asks: the re-proposed submit was asked again, not sampled


def test_rro_goes_on_when_the_submit_only_ties_the_best_other_candidate(
        low: None, campaign_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The submit scores 0.15, as SELECT 2 does: nothing rises over 0.5 and the tie goes to going on."""
    monkeypatch.setitem(VALUES, SUBMIT, 0.15)
    out, policy = _rro_with_a_bar_of_half(campaign_file, tmp_path)
    rows = [(c.step_idx, c.action, c.accepted) for c in out.candidates]
    assert rows[:3] == [(0, SUBMIT, False), (0, "SELECT 1", False), (0, "SELECT 2", True)]
    assert out.trajectory.actions[:1] == ("SELECT 2",)


def test_a_policy_with_nothing_new_ends_the_steps_sampling_within_the_ask_bound(
        low: None, campaign_file: Path, tmp_path: Path) -> None:
    from operators.stepwise import ASKS_PER_CANDIDATE

    with DuckDBStore(tmp_path / "s.duckdb") as store:
        policy = Stubborn([])  # only ever submits
        ctx = _context(campaign_file, store, policy, "search.reward=low_test", "operators.rro.max_candidates=4",
                       "operators.rro.rise_from=0.5")
        out = rro(ctx.tasks["sql/0"], random.Random(1), ctx)
        ctx.close()
    assert [(c.action, c.accepted) for c in out.candidates] == [(SUBMIT, True)]  # nothing else: the submit
    assert policy.calls == ASKS_PER_CANDIDATE * 4 and out.trajectory.actions == ()


def test_mcts_expansion_asks_again_instead_of_merging_a_repeated_child(campaign_file: Path, tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        policy = Stubborn(["SELECT 1", "SELECT 2", "SELECT 3", "SHOW TABLES"])
        ctx = _context(campaign_file, store, policy, "strategy.kind=mcts", "strategy.mcts.children=3")
        root = trajectory_id("sql/0", ())
        out = mcts(ctx.tasks["sql/0"], random.Random(1), ctx, args={"path": [root], "actions": []})
        ctx.close()
    assert [c.action for c in out.candidates] == ["SELECT 1", "SELECT 2", "SELECT 3"]  # 3 distinct children
    assert len({c.node_id for c in out.candidates}) == 3 and policy.calls == 3


def test_mcts_keeps_a_solved_answer_over_an_unsolved_one_with_a_higher_mean(campaign_file: Path,
                                                                          tmp_path: Path) -> None:
    """mu = 1, fitness the mean of step values (sql/294): the solved answer of round 0 (0.6) stays
    ahead of round 1's unsolved one (0.8), since a simulation ended on it with the top value."""
    from evoagent.strategies.mcts import MCTS as Strategy

    c = campaign.load(campaign_file, ["strategy.kind=mcts", "mu=1", "tasks.ids=['sql/42']"])
    source = "mc(aggregate=mean):mean"
    root = trajectory_id("sql/42", ())
    solved = Trajectory("sql/42", (Step(0, "SELECT 1", "[(1,)]", 0.2), Step(1, "SELECT 2", "[(2,)]", 1.0)), 1.0,
                        "replay")
    unsolved = Trajectory("sql/42", (Step(0, "SELECT 3", "[(3,)]", 0.9),), 0.0, "replay")
    with DuckDBStore(tmp_path / "m.duckdb") as s:
        strategy = Strategy(c, s, ["sql/42"], source)
        for round_, traj, value, terminal in ((0, solved, 1.0, True), (1, unsolved, 0.9, False)):
            item = WorkItem(round_, 0, "mcts", "sql/42", (), round_, '{"path": [], "actions": []}')
            s.plan_generation(round_, [item])
            sim = Simulation("sql/42", (root, traj.traj_id), value, terminal, "")
            fitness = 0.6 if traj is solved else 0.8
            s.commit_items([ItemResult(item, traj, rewards=((traj.traj_id, source, fitness, None),),
                                       simulations=(sim,))], campaign="c")
            closed = strategy.close(round_)
            s.commit_generation(round_, closed.population, closed.stats)
        assert [r[1] for r in s.population(1)] == [solved.traj_id]


def _run(c: campaign.Campaign, ctx: Context, path: Path) -> tuple[dict[str, list], int]:
    out, found = run_in_new_store(c, ctx, path, search_rows)
    assert out.status == "completed"
    return found, out.env_steps


@pytest.mark.parametrize("strategy", [
    ["strategy.kind=rro", "operators.rro.max_candidates=3", "budget.generations=0"],
    ["strategy.kind=ipr", "operators.ipr.k=3", "budget.generations=0"],
    ["strategy.kind=mcts", "strategy.mcts.children=3", "strategy.mcts.parallel=2", "strategy.mcts.rollout=true",
     "budget.generations=2"],
], ids=["rro", "ipr", "mcts"])
def test_searches_restore_prefixes_with_the_same_results_and_fewer_executions(
        strategy: list[str], campaign_file: Path, tmp_path: Path) -> None:
    keys = [*strategy, 'tasks.ids=["sql/7", "sql/42"]', "mu=2"]
    c = campaign.load(campaign_file, keys)
    restored = _run(c, launch.build_context(c, launch.select_tasks(c)), tmp_path / "restore.duckdb")
    c = campaign.load(campaign_file, keys)
    ctx = launch.build_context(c, launch.select_tasks(c))
    without_restore(ctx)
    plain = _run(c, ctx, tmp_path / "plain.duckdb")
    assert restored[0] == plain[0] and restored[0]["steps"]  # every row, value for value
    assert restored[1] < plain[1]  # prefixes were restored, not re-executed
