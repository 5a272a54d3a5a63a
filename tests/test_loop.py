"""The generational loop: journal, determinism, resume, operators on real tasks."""
from __future__ import annotations

import math
from concurrent.futures import Executor, Future
import random
from pathlib import Path

import pytest

from evoagent import campaign, launch
from evoagent.envs.intercode_sql.walk import ReplayPolicy
from evoagent.policies import Guidance
from evoagent.rollout import rollout
from evoagent.trajectory import Step, Task
from operators.recombine import recombine
from operators.refine import refine
from operators.revise import revise
from operators.revise import first_wrong_step
from stores import SnapshotStore


def run(campaign_file: Path, store: Path, *overrides: str):
    return launch.start(campaign.load(campaign_file, list(overrides)), str(store))


def populations(path: Path) -> list[tuple]:
    s = SnapshotStore(path)
    try:
        return s.query("SELECT generation, task_id, traj_id, rank FROM population ORDER BY ALL").to_pylist()
    finally:
        s.close()


def test_campaign_journal_and_views(tmp_path: Path, campaign_file: Path) -> None:
    store = tmp_path / "c.duckdb"
    out = run(campaign_file, store)
    assert out.status == "completed" and out.last_generation == 3
    s = SnapshotStore(store)
    gens = s.frame("SELECT * FROM generations ORDER BY generation")
    assert gens["status"].to_list() == ["committed"] * 4
    # mu (then lambda) items per task, plus the fill-up items of tasks left below mu
    planned = s.frame("SELECT generation, count(*) AS n FROM work_items GROUP BY ALL ORDER BY ALL")
    assert gens["n_items"].to_list() == planned["n"].to_list()
    assert [n - base for n, base in zip(planned["n"], [6 * 3, 6 * 4, 6 * 4, 6 * 4])] == [1, 0, 0, 0]
    # mu members per task in every generation, each a stored trajectory
    per = s.frame("SELECT generation, task_id, count(*) AS n FROM population GROUP BY ALL")
    assert set(per["n"].to_list()) <= {1, 2, 3} and per.height == 4 * 6
    assert s.scalar("SELECT count(*) FROM population p ANTI JOIN trajectories t USING (traj_id)") == 0
    assert s.scalar("SELECT count(*) FROM work_items WHERE status <> 'done'") == 0
    # every campaign trajectory knows its generation and operator; every child has lineage
    # (its first production) or was a re-discovery of a stored trajectory
    assert s.scalar("SELECT count(*) FROM trajectories WHERE generation IS NULL OR operator IS NULL") == 0
    orphans = s.scalar(
        "SELECT count(*) FROM work_items w WHERE len(w.parents) > 0 AND NOT EXISTS "
        "(SELECT 1 FROM lineage l WHERE l.generation = w.generation AND l.item_id = w.item_id) AND NOT EXISTS "
        "(SELECT 1 FROM rediscoveries r WHERE r.generation = w.generation AND r.item_id = w.item_id)")
    assert orphans == 0
    # (mu + lambda) keeps the best: the success rate never drops
    rates = gens["success_rate"].to_list()
    assert all(b >= a for a, b in zip(rates, rates[1:]))
    s.close()


def test_results_do_not_depend_on_concurrency(tmp_path: Path, campaign_file: Path) -> None:
    run(campaign_file, tmp_path / "a.duckdb", "concurrency=1")
    run(campaign_file, tmp_path / "b.duckdb", "concurrency=4")
    assert populations(tmp_path / "a.duckdb") == populations(tmp_path / "b.duckdb")


def test_budget_stop_then_resume_equals_uninterrupted(tmp_path: Path, campaign_file: Path) -> None:
    run(campaign_file, tmp_path / "full.duckdb")
    part = tmp_path / "part.duckdb"
    out = run(campaign_file, part, "budget.env_steps=150")
    assert out.status == "stopped: budget.env_steps"
    out = launch.resume(str(part), ["budget.env_steps=0"])
    assert out.status == "completed"
    assert populations(part) == populations(tmp_path / "full.duckdb")
    with pytest.raises(Exception, match="on resume only these can change: budget"):
        launch.resume(str(part), ["mu=9"])


def test_nsga2_and_comma_replacement_run(tmp_path: Path, campaign_file: Path) -> None:
    out = run(campaign_file, tmp_path / "n.duckdb", "selection.kind=nsga2",
              "selection.objectives=['reward', 'steps', 'cost']", "replacement.kind=comma",
              "budget.generations=2")
    assert out.status == "completed"


# -- operators on a real task ------------------------------------------------------
@pytest.fixture(scope="module")
def ctx():
    c = campaign.build({"name": "t", "mu": 2, "lambda": 2, "env": {"kind": "intercode_sql"},
                        "policy": {"kind": "replay"}, "budget": {"generations": 1},
                        "tasks": {"ids": ["sql/0", "sql/42"]}})
    return launch.build_context(c, launch.select_tasks(c))


def test_policy_never_sees_rewards_or_the_gold_answer(ctx) -> None:
    seen: list[Step] = []
    tasks_seen: list = []
    inner = ctx.policy

    class Spy:
        name = "spy"

        def next_action(self, task, history, guidance, rng):
            seen.extend(history)
            tasks_seen.append(task)
            return inner.next_action(task, history, guidance, rng)

    ctx2 = type(ctx)(tasks=ctx.tasks, policy=Spy(), make_env=ctx.make_env, max_steps=4)
    assert ctx.tasks["sql/0"].gold
    rollout(ctx2, ctx.tasks["sql/0"], random.Random(1))
    assert seen and all(math.isnan(s.reward) for s in seen)
    assert tasks_seen and all(t.gold == "" and t.task_id == "sql/0" for t in tasks_seen)


def test_revise_keeps_prefix_and_avoids_the_failure(ctx) -> None:
    task = ctx.tasks["sql/0"]
    parent = rollout(ctx, task, random.Random(0), prefix=["SHOW TABLES", "SELECT nope FROM people"],
                     guidance=Guidance(stop_after_prefix=True)).trajectory
    k = first_wrong_step(parent.steps, parent.outcome_reward)
    assert k == 1
    child = revise(parent, random.Random(5), ctx).trajectory
    assert child.actions[:1] == ("SHOW TABLES",)
    assert "SELECT nope FROM people" not in child.actions[1:]


def test_refine_is_verified_and_shorter(ctx) -> None:
    task = ctx.tasks["sql/0"]
    gold_like = ("SELECT T1.Name FROM people AS T1 JOIN poker_player AS T2 ON T1.People_ID = T2.People_ID "
                 "ORDER BY T2.Final_Table_Made")
    parent = rollout(ctx, task, random.Random(0), prefix=["SHOW TABLES", "SELECT x", gold_like, "SHOW TABLES"],
                     guidance=Guidance(stop_after_prefix=True)).trajectory
    child = refine(parent, random.Random(0), ctx).trajectory
    assert child.outcome_reward == 1.0 >= parent.outcome_reward
    assert child.n_steps < parent.n_steps and gold_like in child.actions


def test_recombine_needs_same_task(ctx) -> None:
    a = rollout(ctx, ctx.tasks["sql/0"], random.Random(0)).trajectory
    b = rollout(ctx, ctx.tasks["sql/42"], random.Random(0)).trajectory
    with pytest.raises(Exception, match="same task"):
        recombine([a, b], random.Random(0), ctx)
    c = rollout(ctx, ctx.tasks["sql/0"], random.Random(9)).trajectory
    child = recombine([a, c], random.Random(0), ctx).trajectory
    assert child.task_id == "sql/0" and child.n_steps >= 1


def test_replay_policy_is_deterministic_per_seed() -> None:
    pol = ReplayPolicy.from_bundled(["gpt-4", "gpt-3.5"], explore=0.3)
    task = Task("sql/5", "intercode_sql", "q")
    hist: list[Step] = []
    a = [pol.next_action(task, hist, Guidance(), random.Random(s)).text for s in range(20)]
    b = [pol.next_action(task, hist, Guidance(), random.Random(s)).text for s in range(20)]
    assert a == b and set(a) <= set(pol.pool("sql/5"))


class Inline(Executor):
    """Runs each item at submission, in the caller's thread: the executor is swappable."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        f: Future = Future()
        f.set_result(fn(*args, **kwargs))
        return f


@pytest.mark.slow  # long: CI's slow step runs it (the default run stays under 3 minutes)
def test_runner_with_another_executor_gives_the_same_population(tmp_path: Path, campaign_file: Path) -> None:
    from evoagent.loop import Runner
    from evoagent.rewards import build_signals
    from stores import DuckDBStore

    run(campaign_file, tmp_path / "threads.duckdb")
    c = campaign.load(campaign_file)
    ctx = launch.build_context(c, launch.select_tasks(c))
    with DuckDBStore(tmp_path / "inline.duckdb") as store:
        store.put_meta("campaign", c.to_json())
        store.add_tasks(list(ctx.tasks.values()))
        ctx.search, ctx.fitness = build_signals(c, ctx, store)
        used: list[int] = []
        out = Runner(c, store, ctx, executor=lambda n: used.append(n) or Inline()).run()
    ctx.close()
    assert out.status == "completed" and len(used) >= 4 and set(used) == {c.get("concurrency")}
    assert populations(tmp_path / "inline.duckdb") == populations(tmp_path / "threads.duckdb")
