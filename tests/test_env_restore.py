"""Environment snapshot/restore: a prefix executed once, continued many times, with unchanged results."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from evoagent import campaign, launch
from evoagent.envs.base import Restorable
from evoagent.envs.intercode_sql.env import InterCodeSQLEnv
from evoagent.rewards.base import Query
from evoagent.rewards.mc import MonteCarlo
from evoagent.rollout import Context, begin, rollout
from evoagent.testing.runs import WithoutRestore, run_in_new_store, without_restore
from stores import DuckDBStore

PREFIX = ("SHOW TABLES", "SELECT count(*) FROM singer")


def _ctx(campaign_file: Path, *overrides: str) -> tuple[campaign.Campaign, Context]:
    c = campaign.load(campaign_file, list(overrides))
    return c, launch.build_context(c, launch.select_tasks(c))


def test_a_restored_environment_answers_as_one_that_re_executed(campaign_file: Path) -> None:
    _, ctx = _ctx(campaign_file)
    task = ctx.tasks["sql/7"]  # concert_singer
    a, b, c = InterCodeSQLEnv(), InterCodeSQLEnv(), InterCodeSQLEnv()
    assert isinstance(a, Restorable) and not isinstance(WithoutRestore(a), Restorable)
    prefix = PREFIX + ("USE car_1",)  # the episode's database changes: part of the state
    a.reset(task)
    for act in prefix:
        a.step(act)
    state = a.snapshot()
    a.step("USE pets_1")  # a's later steps do not change the snapshot
    a.step("submit")
    b.reset(ctx.tasks["sql/0"])  # b was elsewhere: another task, database and result
    b.step("SELECT * FROM poker_player")
    b.restore(state)
    c.reset(task)
    for act in prefix:
        c.step(act)
    assert b.submit() == c.submit() == 0.0  # the last result (a count) is not the gold's
    b.restore(state)
    c.reset(task)
    for act in prefix:
        c.step(act)
    later = ("SHOW TABLES", "SELECT count(*) FROM singer", "USE concert_singer",
             "SELECT count(*) FROM singer", "submit")
    for act in later:
        assert b.step(act) == c.step(act)
    assert b.step("SELECT 1")[2] is True  # the episode is over in both
    with pytest.raises(ValueError, match="same database"):
        InterCodeSQLEnv(dialect="duckdb").restore(state)
    with pytest.raises(RuntimeError):
        InterCodeSQLEnv().snapshot()


def test_rollouts_from_a_begun_prefix_equal_re_executed_ones_and_count_only_their_steps(
        campaign_file: Path) -> None:
    _, ctx = _ctx(campaign_file)
    task = ctx.tasks["sql/7"]
    start = begin(ctx, task, PREFIX)
    assert start.state is not None and start.env_steps == len(PREFIX) == len(start.steps)
    for seed in range(6):
        fresh = rollout(ctx, task, random.Random(seed), prefix=PREFIX, operator="mc")
        restored = rollout(ctx, task, random.Random(seed), start=start, operator="mc")
        assert restored.trajectory == fresh.trajectory
        assert restored.env_steps == fresh.env_steps - len(PREFIX)
    without_restore(ctx)
    plain = begin(ctx, task, PREFIX)
    assert plain.state is None and plain.env_steps == 0 and plain.steps == ()
    again = rollout(ctx, task, random.Random(3), start=plain, operator="mc")
    assert again == rollout(ctx, task, random.Random(3), prefix=PREFIX, operator="mc")
    # further given actions after a start: the same episode as the whole prefix, counting only them
    more = rollout(ctx, task, random.Random(2), start=begin(ctx, task, PREFIX[:1]), prefix=PREFIX[1:])
    assert more == rollout(ctx, task, random.Random(2), prefix=PREFIX)
    with pytest.raises(ValueError):
        rollout(ctx, ctx.tasks["sql/0"], random.Random(0), start=start)


def test_mc_values_are_unchanged_and_the_prefix_runs_once(campaign_file: Path) -> None:
    _, ctx = _ctx(campaign_file)
    qs = [Query("sql/7", PREFIX), Query("sql/0", ("SHOW TABLES",)),
          Query("sql/7", PREFIX[:1] + ("SELECT 1",), terminal=True)]
    k = 4
    restored = MonteCarlo(ctx, k=k, aggregate="mean", seed=1).score(qs)
    without_restore(ctx)
    plain = MonteCarlo(ctx, k=k, aggregate="mean", seed=1).score(qs)
    assert [s.value for s in restored] == [s.value for s in plain]
    # the prefix's steps: k executions without restore, one with it; the terminal query re-executes
    assert [p.env_steps - r.env_steps for p, r in zip(plain, restored)] == [(k - 1) * 2, (k - 1) * 1, 0]


def _campaign(c: campaign.Campaign, ctx: Context, path: Path) -> tuple[list, list, int]:
    def read(store: DuckDBStore) -> tuple[list, list]:
        return (store.query("SELECT reward_source, traj_id, step_idx, value FROM rewards ORDER BY ALL").to_pylist(),
                store.query("SELECT generation, task_id, traj_id, rank FROM population ORDER BY ALL").to_pylist())

    out, (rewards, population) = run_in_new_store(c, ctx, path, read)
    assert out.status == "completed"
    return rewards, population, out.env_steps


@pytest.mark.slow  # long: CI's slow step runs it (the default run stays under 3 minutes)
def test_an_mc_campaign_with_restore_equals_one_without(tmp_path: Path, campaign_file: Path) -> None:
    keys = ["search.reward=mc", "fitness.reward=mc", "fitness.aggregate=mean", "rewards.mc.k=3",
            "budget.generations=1", 'tasks.ids=["sql/7", "sql/42"]', "mu=2", "lambda=2"]
    c, ctx = _ctx(campaign_file, *keys)
    with_restore = _campaign(c, ctx, tmp_path / "restore.duckdb")
    c, ctx = _ctx(campaign_file, *keys)
    without_restore(ctx)
    without = _campaign(c, ctx, tmp_path / "plain.duckdb")
    assert with_restore[0] == without[0] and len(with_restore[0]) > 10  # every score, value for value
    assert with_restore[1] == without[1]  # the same population, generation by generation
    assert with_restore[2] < without[2]  # fewer environment steps: prefixes ran once each
