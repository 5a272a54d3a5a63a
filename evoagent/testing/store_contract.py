"""The store contract: one test suite that every way of opening a store must pass.

Importable from the package so that every store implementation runs the same
tests: a test module does ``from evoagent.testing.store_contract import *``
and pytest collects them. ``kind`` is one of ``file`` (DuckDBStore on a
file), ``memory`` (DuckDBStore on ``:memory:``) and ``snapshot`` (written with
a DuckDBStore, closed, then read through the read-only SnapshotStore). Each
test writes through ``h.w`` (the writer) and reads through ``h.r()`` (the
store under test). Needs pytest (the ``test`` extra).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from evoagent.trajectory import Step, Task, Trajectory
from stores import DuckDBStore, ItemResult, SnapshotStore, Store, StoreError, TrajectoryBatch, WorkItem

KINDS = ["file", "memory", "snapshot"]

VIEW_COLUMNS = {
    "tasks": ["task_id", "env", "db", "hardness", "question", "meta"],
    "trajectories": [
        "traj_id", "task_id", "source", "campaign", "generation", "operator", "outcome_reward",
        "n_steps", "cost_usd", "input_tokens", "output_tokens", "seed", "item_id", "solved",
        "created_at",
    ],
    "steps": ["traj_id", "idx", "thought", "action", "observation", "reward", "valid", "process_reward"],
    "lineage": ["child_id", "parent_id", "operator", "generation", "item_id", "parent_idx"],
    "rewards": ["traj_id", "reward_source", "value", "step_idx"],
    "work_items": [
        "generation", "item_id", "operator", "task_id", "parents", "seed", "status", "traj_id",
        "error", "env_steps", "seconds", "finished_at", "args",
    ],
    "generations": [
        "generation", "status", "started_at", "committed_at", "n_items", "best_reward",
        "mean_reward", "min_reward", "std_reward", "success_rate", "nevals", "env_steps", "stats",
        "partial",
    ],
    "population": ["generation", "task_id", "traj_id", "rank"],
    "candidates": [
        "generation", "item_id", "strategy", "task_id", "traj_id", "step_idx", "prefix_id", "node_id", "action",
        "observation", "env_reward", "reward", "prev_reward", "rising", "reward_source", "accepted", "rank",
        "created_at",
    ],
    "search_steps": ["generation", "item_id", "strategy", "task_id", "traj_id", "step_idx", "candidates",
                     "rising", "accepted_rose", "accepted_reward"],
    "simulations": ["generation", "item_id", "task_id", "path", "value", "terminal", "reflection", "created_at"],
    "search_nodes": ["task_id", "node_id", "visits", "value"],
}


# -- records -------------------------------------------------------------------
def traj(task: str, actions: list[str], source: str = "replay", *, reward: float = 0.0,
         parents: tuple[str, ...] = (), generation: int | None = None, operator: str | None = None,
         seed: int | None = None) -> Trajectory:
    steps = tuple(
        Step(idx=i, action=a, observation=f"rows for {a}", reward=reward if i == len(actions) - 1 else 0.0,
             thought=f"think {i}", valid=not a.startswith("BAD"), process_reward=0.5 if i == 0 else None)
        for i, a in enumerate(actions)
    )
    return Trajectory(task_id=task, steps=steps, outcome_reward=reward, source=source,
                      generation=generation, operator=operator, parents=parents, seed=seed,
                      cost_usd=0.001 * len(actions), input_tokens=100 * len(actions), output_tokens=7)


A = traj("t1", ["SELECT 1", "SELECT name FROM singer"], reward=1.0, generation=0, operator="init", seed=1)
B = traj("t1", ["BAD SQL", "SELECT 2"], reward=0.0, generation=0, operator="init", seed=2)
C = traj("t2", ["SELECT count(*) FROM concert"], reward=0.5, generation=0, operator="init", seed=3)
D = traj("t1", ["SELECT 1", "SELECT name FROM singer ORDER BY age"], reward=1.0,
         parents=tuple(sorted((A.traj_id, B.traj_id))), generation=1, operator="recombine", seed=4)
TASKS = [Task("t1", "sql_example", "Names of singers?", meta={"db": "concert_singer", "hardness": "easy"}),
         Task("t2", "sql_example", "How many concerts?", meta={"db": "concert_singer", "hardness": "hard"})]


# -- the harness -----------------------------------------------------------------
class Harness:
    def __init__(self, kind: str, tmp: Path):
        self.kind = kind
        self.path = ":memory:" if kind == "memory" else str(tmp / "store.duckdb")
        self.w: DuckDBStore | None = DuckDBStore(self.path, snapshot_every_s=1e9)
        self._r: Store | None = None

    def r(self) -> Store:
        """The store under test, after everything written so far."""
        if self.kind != "snapshot":
            return self.w
        if self._r is None:
            self.w.close()
            self.w = None
            self._r = SnapshotStore(self.path)
        return self._r

    def close(self) -> None:
        for s in (self.w, self._r):
            if s is not None:
                s.close()


@pytest.fixture(params=KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path):
    harness = Harness(request.param, tmp_path)
    yield harness
    harness.close()


def rows(store: Store, sql: str, params=None) -> list[dict]:
    return store.query(sql, params).to_pylist()


def count(store: Store, view: str) -> int:
    return store.scalar(f"SELECT count(*) FROM {view}")


def item(gen: int, i: int, op: str = "init", task: str = "t1", parents: tuple[str, ...] = ()) -> WorkItem:
    return WorkItem(generation=gen, item_id=i, operator=op, task_id=task, parents=parents, seed=100 + i)


# -- contract: facts through the views ---------------------------------------------
def test_views_have_documented_columns(h: Harness) -> None:
    r = h.r()
    for view, cols in VIEW_COLUMNS.items():
        assert r.query(f"SELECT * FROM {view} LIMIT 0").column_names == cols, view


def test_write_and_read_back_through_views(h: Harness) -> None:
    import polars as pl

    assert h.w.add_tasks(TASKS) == 2
    assert h.w.add_tasks(TASKS) == 0
    assert h.w.write(TrajectoryBatch.from_trajectories([A, B, C, D], campaign="c1")) == 4
    r = h.r()
    assert rows(r, "SELECT task_id, env, db, hardness, question FROM tasks ORDER BY task_id") == [
        {"task_id": t.task_id, "env": t.env, "db": t.meta["db"], "hardness": t.meta["hardness"], "question": t.question}
        for t in TASKS
    ]
    metas = [json.loads(x["meta"]) for x in rows(r, "SELECT meta FROM tasks ORDER BY task_id")]
    assert metas == [dict(t.meta) for t in TASKS]  # the environment's own fields, as JSON
    got = {x["traj_id"]: x for x in rows(r, "SELECT * FROM trajectories")}
    assert set(got) == {A.traj_id, B.traj_id, C.traj_id, D.traj_id}
    a = got[A.traj_id]
    assert (a["task_id"], a["source"], a["campaign"], a["generation"], a["operator"], a["seed"]) == (
        "t1", "replay", "c1", 0, "init", 1)
    assert a["outcome_reward"] == 1.0 and a["solved"] is True and a["n_steps"] == 2
    assert a["cost_usd"] == pytest.approx(0.002) and a["input_tokens"] == 200 and a["output_tokens"] == 7
    assert a["created_at"] is not None and a["item_id"] is None
    assert got[B.traj_id]["solved"] is False

    steps = rows(r, "SELECT * FROM steps WHERE traj_id = ? ORDER BY idx", [B.traj_id])
    assert [(s["idx"], s["action"], s["valid"], s["thought"]) for s in steps] == [
        (0, "BAD SQL", False, "think 0"), (1, "SELECT 2", True, "think 1")]
    assert steps[0]["process_reward"] == 0.5 and steps[1]["process_reward"] is None
    assert count(r, "steps") == 2 + 2 + 1 + 2

    lin = rows(r, "SELECT * FROM lineage ORDER BY parent_id")
    assert {(x["child_id"], x["parent_id"], x["operator"], x["generation"]) for x in lin} == {
        (D.traj_id, A.traj_id, "recombine", 1), (D.traj_id, B.traj_id, "recombine", 1)}
    rew = rows(r, "SELECT traj_id, reward_source, value, step_idx FROM rewards")
    assert sorted((x["traj_id"], x["value"]) for x in rew) == sorted(
        (t.traj_id, t.outcome_reward) for t in (A, B, C, D))
    assert {x["reward_source"] for x in rew} == {"env"} and {x["step_idx"] for x in rew} == {None}
    # The helpers built on query.
    assert r.frame("SELECT count(*) AS n FROM trajectories")["n"][0] == 4
    assert isinstance(r.frame("SELECT * FROM steps"), pl.DataFrame)


def test_dedupe_on_traj_id_and_source(h: Harness) -> None:
    assert h.w.write(TrajectoryBatch.from_trajectories([A, D])) == 2
    assert h.w.write(TrajectoryBatch.from_trajectories([A, D])) == 0          # same again: nothing new
    assert h.w.write(TrajectoryBatch.from_trajectories([C, C])) == 1          # twice in one batch
    other = dataclasses.replace(A, source="claude-haiku", outcome_reward=0.0)
    assert other.traj_id == A.traj_id
    assert h.w.write(TrajectoryBatch.from_trajectories([other])) == 1         # new source: new row
    r = h.r()
    assert rows(r, "SELECT source FROM trajectories WHERE traj_id = ? ORDER BY source", [A.traj_id]) == [
        {"source": "claude-haiku"}, {"source": "replay"}]
    assert count(r, "trajectories") == 4
    # Steps are shared by all sources of the same actions: one set per traj_id.
    assert rows(r, "SELECT traj_id, count(*) AS n FROM steps GROUP BY traj_id ORDER BY traj_id") == sorted(
        [{"traj_id": t.traj_id, "n": t.n_steps} for t in (A, C, D)], key=lambda x: x["traj_id"])
    # Lineage and rewards are not duplicated by re-writing. Lineage holds D's edge to A (B was
    # never stored, so no edge to it); A under a new source is a re-discovery, not an edge.
    assert rows(r, "SELECT child_id, parent_id FROM lineage") == [{"child_id": D.traj_id, "parent_id": A.traj_id}]
    assert rows(r, "SELECT traj_id, source FROM rediscoveries") == [{"traj_id": A.traj_id, "source": "claude-haiku"}]
    assert rows(r, "SELECT traj_id, count(*) AS n FROM rewards GROUP BY ALL HAVING n > 1") == []


def test_load_trajectories_round_trip(h: Harness) -> None:
    h.w.write(TrajectoryBatch.from_trajectories([A, B, C, D]))
    got = h.r().load_trajectories([D.traj_id, A.traj_id, C.traj_id, "no-such-id", A.traj_id])
    assert set(got) == {A.traj_id, C.traj_id, D.traj_id}
    for t in (A, C, D):
        assert got[t.traj_id] == t
        assert got[t.traj_id].steps == t.steps and got[t.traj_id].parents == t.parents
    assert h.r().load_trajectories([]) == {}


def test_load_trajectories_keeps_parent_order(h: Harness) -> None:
    p1, p2 = sorted((A.traj_id, B.traj_id))
    child = dataclasses.replace(D, parents=(p2, p1))  # not in id order
    h.w.write(TrajectoryBatch.from_trajectories([A, B, child]))
    assert h.r().load_trajectories([child.traj_id])[child.traj_id] == child
    assert rows(h.r(), "SELECT parent_id, parent_idx FROM lineage ORDER BY parent_idx") == [
        {"parent_id": p2, "parent_idx": 0}, {"parent_id": p1, "parent_idx": 1}]


def test_a_trajectory_found_twice_keeps_its_first_producers_parents(h: Harness) -> None:
    first = dataclasses.replace(D, parents=(B.traj_id, A.traj_id))
    again = dataclasses.replace(D, parents=(C.traj_id, B.traj_id))  # same actions: same traj_id
    h.w.write(TrajectoryBatch.from_trajectories([A, B, C]))
    h.w.write(TrajectoryBatch.from_trajectories([first], item_ids=[1]))
    h.w.write(TrajectoryBatch.from_trajectories([again], item_ids=[2]))
    assert count(h.r(), "lineage") == 2  # the first production's edges; the second is a re-discovery
    assert rows(h.r(), "SELECT traj_id, item_id, parents FROM rediscoveries") == [
        {"traj_id": D.traj_id, "item_id": 2, "parents": [C.traj_id, B.traj_id]}]
    assert h.r().load_trajectories([D.traj_id])[D.traj_id].parents == (B.traj_id, A.traj_id)


def test_meta_latest_wins(h: Harness) -> None:
    for i in range(20):
        h.w.put_meta("campaign", f"v{i}")
    h.w.put_meta("other", "x")
    r = h.r()
    assert r.get_meta("campaign") == "v19"
    assert r.get_meta("other") == "x"
    assert r.get_meta("missing") is None


def test_ledger_append_matches_columns_by_name(h: Harness) -> None:
    # All columns in another order (the fast positional path reorders them), a subset of
    # columns (the rest NULL), and two tables in one transaction.
    calls = pa.table({"status": ["ok"], "cost_usd": [0.5], "call_key": ["k1"], "model": ["m"]})
    full_cols = [r["column_name"] for r in rows(h.w, "SELECT column_name FROM information_schema.columns "
                 "WHERE table_schema = 'raw' AND table_name = 'llm_batches' ORDER BY ordinal_position")]
    batches = pa.table({"n_requests": [3], "status": ["created"], "batch_id": ["b1"],
                        "event_at": pa.array([None], pa.timestamp("us"))})
    assert sorted(batches.column_names) == sorted(full_cols)
    h.w.append_ledger({"llm_calls": calls})
    h.w.append_ledger({"llm_batches": batches, "llm_calls": calls.set_column(2, "call_key", pa.array(["k2"]))})
    with pytest.raises(StoreError, match="not a ledger table"):
        h.w.append_ledger({"trajectories": calls})
    r = h.r()
    assert rows(r, "SELECT call_key, model, status, cost_usd, input_tokens FROM raw.llm_calls ORDER BY 1") == [
        {"call_key": "k1", "model": "m", "status": "ok", "cost_usd": 0.5, "input_tokens": None},
        {"call_key": "k2", "model": "m", "status": "ok", "cost_usd": 0.5, "input_tokens": None}]
    assert rows(r, "SELECT batch_id, status, n_requests FROM raw.llm_batches") == [
        {"batch_id": "b1", "status": "created", "n_requests": 3}]


# -- contract: the campaign journal ---------------------------------------------------
def test_scores_are_written_once_and_read_by_key(h: Harness) -> None:
    w = h.w
    assert w.write_rewards("m(k=1)", [("p1", 0, 0.25), ("p2", 1, 0.5), ("p1", 0, 0.9)]) == 2
    assert w.write_rewards("m(k=1)", [("p1", 0, 0.75), ("p3", 2, 1.0)]) == 1  # p1/0 is kept, not replaced
    assert w.write_rewards("m(k=2)", [("p1", 0, 0.1)]) == 1  # another source, another key
    done = ItemResult(item(0, 0), A, rewards=((A.traj_id, "m(k=1):mean", 0.3, None),))
    w.add_tasks(TASKS)
    w.plan_generation(0, [item(0, 0)])
    w.commit_items([done], campaign="c")
    r = h.r()
    assert r.reward_values("m(k=1)", [("p1", 0), ("p2", 1), ("p3", 2), ("p9", 0), ("p2", 0)]) == {
        ("p1", 0): 0.25, ("p2", 1): 0.5, ("p3", 2): 1.0}
    assert r.reward_values("m(k=2)", [("p1", 0)]) == {("p1", 0): 0.1}
    (s,) = r.summaries([A.traj_id], "m(k=1):mean").values()
    assert (s.fitness, s.outcome_reward, s.n_steps) == (0.3, 1.0, 2)
    assert r.summaries([A.traj_id])[A.traj_id].fitness == 1.0  # no source: the outcome
    assert r.round_results(0) == [(0, "t1", A.traj_id)] and r.finished_items(0) == {0}
    assert r.planned(0) == [item(0, 0)]


def test_journal(h: Harness) -> None:
    w = h.w
    w.add_tasks(TASKS)
    plan0 = [item(0, 0), item(0, 1), item(0, 2, task="t2")]
    w.plan_generation(0, plan0)
    with pytest.raises(StoreError, match="already planned"):
        w.plan_generation(0, plan0)
    first = [ItemResult(plan0[0], A, env_steps=2, seconds=0.5),
             ItemResult(plan0[1], None, error="timeout", env_steps=1, seconds=9.0)]
    assert w.commit_items(first, campaign="c1") == 1
    before = {v: count(w, v) for v in ("trajectories", "steps", "lineage", "rewards", "work_items")}
    status_before = rows(w, "SELECT item_id, status FROM work_items ORDER BY item_id")
    # Committing an item again (even alongside a new one) raises and changes nothing.
    with pytest.raises(StoreError, match="already committed"):
        w.commit_items([ItemResult(plan0[2], C), ItemResult(plan0[0], B)], campaign="c1")
    assert {v: count(w, v) for v in before} == before
    assert rows(w, "SELECT item_id, status FROM work_items ORDER BY item_id") == status_before
    assert w.last_committed_generation() is None

    w.commit_generation(0, [("t1", A.traj_id, 0)], {"max": 1.0, "avg": 0.5, "min": 0.0, "std": 0.5,
                                                    "success_rate": 0.5, "nevals": 2, "env_steps": 3})
    with pytest.raises(StoreError, match="already committed"):
        w.commit_generation(0, [], {})
    plan1 = [item(1, 0, "recombine", parents=(A.traj_id, B.traj_id))]
    w.plan_generation(1, plan1)
    w.commit_items([ItemResult(plan1[0], D, env_steps=2, seconds=1.0)], campaign="c1")

    r = h.r()
    wi = rows(r, "SELECT * FROM work_items ORDER BY generation, item_id")
    assert [(x["generation"], x["item_id"], x["status"]) for x in wi] == [
        (0, 0, "done"), (0, 1, "failed"), (0, 2, "pending"), (1, 0, "done")]
    assert wi[0]["traj_id"] == A.traj_id and wi[0]["env_steps"] == 2 and wi[0]["finished_at"] is not None
    assert wi[1]["traj_id"] is None and wi[1]["error"] == "timeout"
    assert wi[2]["traj_id"] is None and wi[2]["finished_at"] is None
    assert wi[3]["parents"] == [A.traj_id, B.traj_id] and wi[3]["operator"] == "recombine"
    assert wi[3]["seed"] == 100

    gens = rows(r, "SELECT * FROM generations ORDER BY generation")
    assert [(g["generation"], g["status"], g["n_items"]) for g in gens] == [(0, "committed", 3), (1, "running", 1)]
    g0 = gens[0]
    assert (g0["best_reward"], g0["mean_reward"], g0["success_rate"], g0["nevals"], g0["env_steps"]) == (
        1.0, 0.5, 0.5, 2, 3)
    assert g0["started_at"] <= g0["committed_at"] and json.loads(g0["stats"])["max"] == 1.0
    assert gens[1]["committed_at"] is None

    assert r.population(0) == [("t1", A.traj_id, 0)]
    assert r.population(1) == []
    assert r.last_committed_generation() == 0
    # Committed trajectories carry the campaign and work item.
    got = rows(r, "SELECT traj_id, campaign, item_id FROM trajectories ORDER BY generation")
    assert got == [{"traj_id": A.traj_id, "campaign": "c1", "item_id": 0},
                   {"traj_id": D.traj_id, "campaign": "c1", "item_id": 0}]
    assert rows(r, "SELECT DISTINCT item_id, generation FROM lineage") == [{"item_id": 0, "generation": 1}]


def test_a_partial_close_is_the_answer_until_the_round_is_closed_again(h: Harness) -> None:
    """A round cut short by a budget is closed with what finished ('partial'); a resume may add
    items to it and closes it again; the views show the latest close, never two."""
    w = h.w
    w.add_tasks(TASKS)
    plan = [item(0, 0), item(0, 1, task="t2"), item(0, 2)]
    w.plan_generation(0, plan)
    w.commit_items([ItemResult(plan[0], B, env_steps=2)], campaign="c1")
    w.commit_generation(0, [("t1", B.traj_id, 0)], {"success_rate": 0.0, "nevals": 1}, partial=True)
    w.commit_items([ItemResult(plan[1], C, env_steps=1)], campaign="c1")
    w.commit_generation(0, [("t1", B.traj_id, 0), ("t2", C.traj_id, 0)], {"success_rate": 0.0, "nevals": 2},
                        partial=True)
    w.plan_generation(0, [item(0, 3)])  # still open: a fill-up may add items
    w.commit_items([ItemResult(plan[2], A, env_steps=2)], campaign="c1")
    assert w.last_committed_generation() == 0 and w.committed_stats(0)[0]["nevals"] == 2
    assert w.population(0) == [("t1", B.traj_id, 0), ("t2", C.traj_id, 0)]  # the latest partial close
    assert rows(w, "SELECT status, partial FROM generations") == [{"status": "committed", "partial": True}]
    w.commit_generation(0, [("t1", A.traj_id, 0), ("t1", B.traj_id, 1), ("t2", C.traj_id, 0)],
                        {"success_rate": 0.5, "nevals": 3})
    with pytest.raises(StoreError, match="already committed"):
        w.commit_generation(0, [], {}, partial=True)
    r = h.r()
    assert r.population(0) == [("t1", A.traj_id, 0), ("t1", B.traj_id, 1), ("t2", C.traj_id, 0)]
    g = rows(r, "SELECT status, partial, nevals, n_items FROM generations")
    assert g == [{"status": "committed", "partial": False, "nevals": 3, "n_items": 4}]
    assert r.scalar("SELECT count(*) FROM raw.population") == 1 + 2 + 3  # every close is kept as a fact


# -- export ----------------------------------------------------------------------------
def test_export_reads_back_with_polars_and_pyarrow(h: Harness, tmp_path: Path) -> None:
    import polars as pl
    import pyarrow.dataset as ds

    h.w.add_tasks(TASKS)
    h.w.write(TrajectoryBatch.from_trajectories([A, B, C], campaign="c1"))
    h.w.write(TrajectoryBatch.from_trajectories([D], campaign="c2"))
    r = h.r()
    out = tmp_path / "export"
    # Partitioned (campaign, generation set everywhere) and unpartitioned views.
    target = r.export("trajectories", str(out))
    assert os.path.isdir(target)
    assert pl.read_parquet(target, hive_partitioning=True).height == 4
    dset = ds.dataset(target, format="parquet", partitioning="hive")
    assert dset.count_rows() == 4
    t = dset.to_table()
    assert sorted(set(t.column("campaign").to_pylist())) == ["c1", "c2"]
    assert sorted(t.column("generation").to_pylist()) == [0, 0, 0, 1]
    for name in ("steps", "tasks", "lineage"):
        target = r.export(name, str(out))
        n = count(r, name)
        assert pl.read_parquet(target, hive_partitioning=True).height == n
        assert ds.dataset(target, format="parquet", partitioning="hive").count_rows() == n


def test_export_skips_partition_columns_with_nulls(h: Harness, tmp_path: Path) -> None:
    import polars as pl
    import pyarrow.dataset as ds

    h.w.write(TrajectoryBatch.from_trajectories([A, dataclasses.replace(C, generation=None)], campaign="c"))
    target = h.r().export("trajectories", str(tmp_path / "x"))
    assert os.listdir(target) == ["campaign=c"]
    assert ds.dataset(target, partitioning="hive").count_rows() == 2
    assert pl.read_parquet(target, hive_partitioning=True).height == 2
