"""RRO and IPR within a budget of executions per task (issue 20): a bench cell must not run far over B.

Before ``strategy.<kind>.executions_per_task`` the bench gave them ``floor(B / (c L))`` trajectories
from an assumed ``c`` candidates a step, and RRO ran at 3.14 B on the 205 held-out tasks.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from evoagent import campaign, launch, registry
from evoagent.bench.search import methods
from evoagent.strategies.per_task import goes_on
from stores import DuckDBStore


def test_another_trajectory_while_it_is_expected_to_end_nearer_the_budget() -> None:
    # B = 50: 30 used by one trajectory -> 30 + 15 < 50, one more (expected to end at 60, 10 over,
    # against 20 under now); 36 used by one -> 36 + 18 >= 50, stop (expected 72: 22 over, 14 under)
    assert goes_on(1, 30, 1, 100, 50) and not goes_on(1, 36, 1, 100, 50)
    assert not goes_on(2, 30, 2, 2, 50)  # at most n trajectories
    assert not goes_on(0, 0, 1, 100, 50)  # nothing finished yet: the wave is not over
    assert goes_on(3, 0, 3, 100, 50)  # trajectories that cost nothing: on, up to n


@pytest.mark.slow  # two small campaigns, about 10 s: `pytest -m slow`
@pytest.mark.parametrize("kind", ["rro", "ipr"])
def test_a_budget_per_task_stops_each_task_nearest_b(campaign_file: Path, tmp_path: Path, kind: str) -> None:
    budget = 25
    c = campaign.load(campaign_file, [f"strategy.kind={kind}", f"strategy.{kind}.n=40",
                                      f"strategy.{kind}.executions_per_task={budget}", "search.reward=oracle",
                                      "fitness.reward=oracle", "operators.ipr.k=3", "operators.rro.max_candidates=3",
                                      'tasks.ids=["sql/0", "sql/7", "sql/42"]'])
    store = tmp_path / f"{kind}.duckdb"
    launch.start(c, str(store))
    with DuckDBStore(store) as s:
        rows = s.query("SELECT task_id, item_id, env_steps FROM work_items WHERE generation = 0 "
                       "ORDER BY task_id, item_id").to_pylist()
        members = s.query("SELECT count(DISTINCT task_id) AS n FROM population").to_pylist()[0]["n"]
    per_task: dict[str, list[int]] = {}
    for r in rows:
        assert r["env_steps"] is not None, r  # every planned item ran: waves are planned as they are needed
        per_task.setdefault(r["task_id"], []).append(r["env_steps"])
    assert len(per_task) == 3 and members == 3
    for task, steps in per_task.items():
        for j in range(1, len(steps) + 1):  # another trajectory while used + mean / 2 < B, then stop
            used = sum(steps[:j])
            another = used + used / (2 * j) < budget  # the rule, restated
            assert another == (j < len(steps)), (task, steps)
    assert any(len(s) >= 2 for s in per_task.values())  # some task took more than one wave
    first_wave = {min(r["item_id"] for r in rows if r["task_id"] == t) for t in per_task}
    assert first_wave == set(range(3))  # item ids (seeds) in wave order: wave 0 is items 0..2


def test_the_bench_gives_step_searches_a_budget_per_task_not_a_guessed_count() -> None:
    b = registry.BenchBudget(budget=50, per_rollout=3.0, n_tasks=205)
    for kind in ("rro", "ipr"):
        keys = dict(s.split("=", 1) for s in methods()[kind].settings(b))
        assert keys[f"strategy.{kind}.executions_per_task"] == "50" and keys[f"strategy.{kind}.n"] == "50"
