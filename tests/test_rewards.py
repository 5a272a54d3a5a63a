"""Reward models: store-backed cache, batching across threads, oracle and mc, the two signals."""
from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from deap import tools

from evoagent import campaign, evolution, launch
from evoagent.rewards import Query, RewardModel, Score, Scorer
from evoagent.rewards.mc import MonteCarlo
from evoagent.trajectory import Summary
from stores import DuckDBStore, SnapshotStore


class Counting(RewardModel):
    """A model whose value is a hash of the prefix; counts every query it is sent."""

    name = "counting"

    def __init__(self, fail: bool = False):
        self.sent: list[int] = []
        self.fail = fail

    @property
    def source(self) -> str:
        return "counting(v=1)"

    def score(self, queries: Sequence[Query]) -> list[Score]:
        if self.fail:
            raise RuntimeError("model down")
        self.sent.append(len(queries))
        return [Score(len(q.actions) / 10 + len(q.task_id) / 100) for q in queries]


def _queries(n_tasks: int, depth: int) -> list[Query]:
    return [Query(f"t{t}", tuple(f"a{i}" for i in range(d + 1))) for t in range(n_tasks) for d in range(depth)]


def test_concurrent_requests_are_batched_and_each_key_computed_once(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "r.duckdb")
    model = Counting()
    scorer = Scorer(model, store, batch_size=16, wait_s=0.02)
    everything = _queries(10, 6)  # 60 distinct keys
    rng = random.Random(0)
    asks = [rng.sample(everything, 20) for _ in range(32)]  # 32 items, heavily overlapping
    answers: list[list[float]] = [[] for _ in asks]

    def item(i: int) -> None:
        answers[i] = scorer.score(asks[i])

    threads = [threading.Thread(target=item, args=(i,)) for i in range(len(asks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {q.key: v.value for q, v in zip(everything, Counting().score(everything))}
    for ask, got in zip(asks, answers):
        assert got == [expected[q.key] for q in ask]
    distinct = len({q.key for ask in asks for q in ask})
    assert scorer.stats.computed == sum(model.sent) <= distinct
    assert max(model.sent) <= 16 and len(model.sent) < distinct  # batches, not one call per query
    rows = store.query("SELECT count(*) AS n, count(DISTINCT (traj_id, step_idx)) AS k FROM rewards "
                       "WHERE reward_source = 'counting(v=1)'").to_pylist()[0]
    assert rows["n"] == rows["k"] == scorer.stats.computed
    scorer.close()
    store.close()


def test_a_resumed_scorer_computes_nothing_already_stored(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "r.duckdb")
    first = Scorer(Counting(), store, batch_size=8, wait_s=0.0)
    qs = _queries(3, 4)
    values = first.score(qs)
    first.close()
    second = Scorer(Counting(), store, batch_size=8, wait_s=0.0)
    assert second.score(qs) == values
    assert second.model.sent == [] and second.stats.hits == len(qs)  # type: ignore[attr-defined]
    second.close()
    store.close()


def test_a_failing_model_fails_its_callers_and_writes_nothing(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "r.duckdb")
    scorer = Scorer(Counting(fail=True), store, batch_size=8, wait_s=0.0)
    with pytest.raises(RuntimeError, match="model down"):
        scorer.score(_queries(1, 3))
    assert store.scalar("SELECT count(*) FROM rewards") == 0
    scorer.close()
    store.close()


def test_mc_is_deterministic_counts_steps_and_values_a_submitted_episode_by_its_outcome(
        campaign_file: Path) -> None:
    c = campaign.load(campaign_file)
    tasks = launch.select_tasks(c)
    ctx = launch.build_context(c, tasks)
    task = ctx.tasks["sql/7"]
    gold = task.gold
    q = Query(task.task_id, ("SHOW TABLES",))
    a = MonteCarlo(ctx, k=4, aggregate="mean", seed=1).score([q, Query(task.task_id, (gold,), terminal=True)])
    b = MonteCarlo(ctx, k=4, aggregate="mean", seed=1).score([q])
    assert a[0] == b[0] and a[0].env_steps >= 4  # k rollouts, each re-executing the prefix
    assert a[1] == Score(1.0, 1)  # the gold query, submitted: the outcome checker says 1.0
    hard = MonteCarlo(ctx, k=4, aggregate="max", seed=1).score([q])[0]
    assert hard.value >= a[0].value and hard.env_steps == a[0].env_steps


def test_tournament_draws_from_the_item_generator_like_deap(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = [evolution.Member(Summary(f"t{i}", "x", i / 10, 3, 0.0, (i * 7 % 10) / 10), ["reward"])
            for i in range(10)]
    random.seed(42)
    theirs = [m.traj_id for m in tools.selTournament(pool, 5, 3)]
    state = random.getstate()
    ours = [m.traj_id for m in evolution.tournament(pool, 5, 3, random.Random(42))]
    assert ours == theirs
    assert random.getstate() == state  # the global generator is not touched

    def boom(*a: object) -> None:
        raise AssertionError("selection must not use the global random module")
    monkeypatch.setattr(random, "choice", boom)
    monkeypatch.setattr(random, "seed", boom)
    evolution.select_parents(pool, 3, "tournament", 3, random.Random(1))


def _population(path: Path) -> list[tuple]:
    s = SnapshotStore(path)
    try:
        return [tuple(r.values()) for r in s.query(
            "SELECT generation, task_id, traj_id, rank FROM population ORDER BY ALL").to_pylist()]
    finally:
        s.close()


MC = ["search.reward=mc", "fitness.reward=mc", "fitness.aggregate=mean", "rewards.mc.k=2",
      "budget.generations=2"]


@pytest.mark.slow  # two mc campaigns (~10 s): in .ci/run's slow step
def test_mc_campaign_stopped_and_resumed_equals_uninterrupted(tmp_path: Path, campaign_file: Path) -> None:
    full, part = tmp_path / "full.duckdb", tmp_path / "part.duckdb"
    assert launch.start(campaign.load(campaign_file, MC), str(full)).status == "completed"
    out = launch.start(campaign.load(campaign_file, MC + ["budget.env_steps=400"]), str(part))
    assert out.status == "stopped: budget.env_steps"
    assert launch.resume(str(part), ["budget.env_steps=0"]).status == "completed"
    assert _population(part) == _population(full)
    with DuckDBStore(part) as s:
        # every (source, prefix, step) scored once; steps carry the search signal; members have fitness
        n, k = s.query("SELECT count(*), count(DISTINCT (reward_source, traj_id, step_idx)) FROM rewards").to_pylist()[0].values()
        assert n == k
        assert s.scalar("SELECT count(*) FROM steps WHERE process_reward IS NULL") == 0
        src = s.scalar("SELECT any_value(reward_source) FROM rewards WHERE reward_source LIKE 'mc(%:mean'")
        assert src == "mc(aggregate=mean,k=2,seed=3):mean"
        assert s.scalar("SELECT count(*) FROM population p ANTI JOIN rewards r ON r.traj_id = p.traj_id "
                        "AND r.reward_source = ?", [src]) == 0


def test_oracle_search_fills_process_reward_with_the_step_reward(tmp_path: Path, campaign_file: Path) -> None:
    store = tmp_path / "o.duckdb"
    launch.start(campaign.load(campaign_file, ["budget.generations=1"]), str(store))
    with DuckDBStore(store) as s:
        assert s.scalar("SELECT count(*) FROM steps WHERE process_reward IS DISTINCT FROM reward") == 0
        n_steps = s.scalar("SELECT count(*) FROM steps")
        n_rows = s.scalar("SELECT count(*) FROM rewards WHERE reward_source = 'oracle'")
        assert 0 < n_rows <= n_steps  # one row per distinct prefix
        assert s.scalar("SELECT count(*) - count(DISTINCT (traj_id, step_idx)) FROM rewards "
                        "WHERE reward_source = 'oracle'") == 0
