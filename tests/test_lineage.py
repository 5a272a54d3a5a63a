"""Lineage is a DAG of first productions; re-finding a trajectory is recorded, never an edge.

Before schema v4 a trajectory found again (a revision that changed nothing, a later operator
landing on an older trajectory) was deduplicated but its new edges were still written: self-edges
and cycles, and recursive ancestry queries that never ended.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from evoagent import campaign, launch
from evoagent.trajectory import Step, Trajectory
from stores import DuckDBStore, ItemResult, SnapshotStore, Store, TrajectoryBatch, WorkItem
from stores.batch import LINEAGE_SCHEMA

ROOT = Path(__file__).resolve().parent.parent


def traj(actions: list[str], parents: tuple[str, ...] = (), generation: int = 0, op: str = "sample") -> Trajectory:
    steps = tuple(Step(idx=i, action=a, observation="ok", reward=0.0) for i, a in enumerate(actions))
    return Trajectory(task_id="t1", steps=steps, outcome_reward=0.0, source="replay",
                      generation=generation, operator=op, parents=parents)


def assert_dag(edges: Iterable[tuple[str, str]]) -> None:
    """No self-edge, no cycle (Kahn's algorithm removes every node of a DAG)."""
    edges = list(edges)
    assert [e for e in edges if e[0] == e[1]] == []
    children: dict[str, set[str]] = {}
    indeg: dict[str, int] = {}
    for child, parent in set(edges):
        children.setdefault(parent, set()).add(child)
        indeg[child] = indeg.get(child, 0) + 1
        indeg.setdefault(parent, 0)
    ready = [n for n, d in indeg.items() if d == 0]
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for c in children.get(node, ()):
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
    assert seen == len(indeg), "lineage has a cycle"


def edges(store: Store) -> list[tuple[str, str]]:
    return [tuple(r.values()) for r in store.query("SELECT child_id, parent_id FROM lineage").to_pylist()]


def commit(store: DuckDBStore, gen: int, results: list[tuple[str, Trajectory]]) -> None:
    """Journal and commit one generation's items the way the engine does."""
    items = [WorkItem(gen, i, op, "t1", t.parents, seed=i) for i, (op, t) in enumerate(results)]
    store.plan_generation(gen, items)
    store.commit_items([ItemResult(it, dataclasses.replace(t, generation=gen, operator=it.operator))
                        for it, (_, t) in zip(items, results)], campaign="c")


def test_refound_trajectory_adds_no_self_edge_nor_cycle(tmp_path: Path) -> None:
    a, b = traj(["SELECT 1"]), traj(["SELECT 2"])
    d = traj(["SELECT 1", "SELECT 3"], parents=(a.traj_id, b.traj_id), generation=1, op="recombine")
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        commit(store, 0, [("sample", a), ("sample", b)])
        commit(store, 1, [("recombine", d)])
        # Generation 2: refining A changes nothing (A again, parent A: the old self-edge);
        # revising D lands on A (edge A -> D while D -> A exists: the old cycle).
        commit(store, 2, [("refine", dataclasses.replace(a, parents=(a.traj_id,))),
                          ("revise", dataclasses.replace(a, parents=(d.traj_id,)))])
        commit(store, 3, [("revise", dataclasses.replace(d, parents=(a.traj_id,)))])
        assert sorted(edges(store)) == sorted([(d.traj_id, a.traj_id), (d.traj_id, b.traj_id)])
        assert_dag(edges(store))
        found = store.query("SELECT traj_id, operator, generation, item_id, parents FROM rediscoveries "
                            "ORDER BY generation, item_id").to_pylist()
        assert found == [
            {"traj_id": a.traj_id, "operator": "refine", "generation": 2, "item_id": 0, "parents": [a.traj_id]},
            {"traj_id": a.traj_id, "operator": "revise", "generation": 2, "item_id": 1, "parents": [d.traj_id]},
            {"traj_id": d.traj_id, "operator": "revise", "generation": 3, "item_id": 0, "parents": [a.traj_id]}]
        # The records keep their first production: generation 0 for A, parents (A, B) for D.
        got = store.load_trajectories([a.traj_id, d.traj_id])
        assert (got[a.traj_id].generation, got[a.traj_id].parents) == (0, ())
        assert (got[d.traj_id].generation, got[d.traj_id].parents) == (1, (a.traj_id, b.traj_id))
    # Every production is accounted for once: first ones in trajectories, later ones rediscovered.
    snap = SnapshotStore(tmp_path / "s.duckdb")
    assert snap.scalar("SELECT count(*) FROM work_items w WHERE w.status = 'done' AND (SELECT count(*) FROM "
                       "trajectories t WHERE t.traj_id = w.traj_id AND t.generation = w.generation AND "
                       "t.item_id = w.item_id) + (SELECT count(*) FROM rediscoveries r WHERE r.traj_id = w.traj_id "
                       "AND r.generation = w.generation AND r.item_id = w.item_id) <> 1") == 0
    assert snap.scalar("SELECT count(*) FROM rediscoveries") == 3
    snap.close()


def test_hostile_batches_cannot_make_self_edges_cycles_or_dangling_edges(tmp_path: Path) -> None:
    # Raw Arrow lineage, as a bulk loader may write it: X is its own parent, X and Y are each
    # other's parents in one batch, Z points at an id never stored, W at a stored trajectory.
    x, y, z, w, old = (traj([f"SELECT {i}"]) for i in range(5))
    lineage = pa.table({
        "child_id": [x.traj_id, x.traj_id, y.traj_id, z.traj_id, w.traj_id, "no-such-child"],
        "parent_id": [x.traj_id, y.traj_id, x.traj_id, "never-stored", old.traj_id, x.traj_id],
        "operator": ["revise"] * 6, "generation": [0] * 6, "item_id": [None] * 6, "parent_idx": [0] * 6,
    }, schema=LINEAGE_SCHEMA)
    with DuckDBStore(":memory:") as store:
        store.write(TrajectoryBatch.from_trajectories([old]))
        plain = TrajectoryBatch.from_trajectories([x, y, z, w])
        for _ in range(2):  # the fast path (all new), then the deduplicating path (all stored)
            store.write(dataclasses.replace(plain, lineage=lineage))
        # Kept: Y -> X (X comes first in the batch) and W -> OLD; nothing else.
        assert sorted(edges(store)) == sorted([(y.traj_id, x.traj_id), (w.traj_id, old.traj_id)])
        assert_dag(edges(store))
        # Writing the same productions again is idempotent: no re-discovery either.
        assert store.scalar("SELECT count(*) FROM rediscoveries") == 0


def test_one_batch_with_the_same_trajectory_twice_keeps_the_first_items_edges() -> None:
    a, b = traj(["SELECT 1"]), traj(["SELECT 2"])
    kid = traj(["SELECT 9"], generation=1, op="revise")
    with DuckDBStore(":memory:") as store:
        store.write(TrajectoryBatch.from_trajectories([a, b]))
        store.write(TrajectoryBatch.from_trajectories(
            [dataclasses.replace(kid, parents=(b.traj_id,)), dataclasses.replace(kid, parents=(a.traj_id,))],
            item_ids=[7, 3]))
        assert edges(store) == [(kid.traj_id, a.traj_id)]  # item 3 is the first production
        assert store.query("SELECT item_id, parents FROM rediscoveries").to_pylist() == [
            {"item_id": 7, "parents": [b.traj_id]}]
        assert store.load_trajectories([kid.traj_id])[kid.traj_id].parents == (a.traj_id,)


def readme_ancestry_query() -> str:
    """The ancestry query of the SQL guide (docs/sql.md; it was the README's)."""
    text = (ROOT / "docs" / "sql.md").read_text()
    m = re.search(r"^-- g\) ancestry.*?\n(.*?;)", text, re.S | re.M)
    assert m, "docs/sql.md lost its ancestry query"
    return m.group(1)


def test_campaign_lineage_is_a_dag_and_the_readme_ancestry_query_walks_it(
        tmp_path: Path, campaign_file: Path) -> None:
    path = tmp_path / "c.duckdb"
    launch.start(campaign.load(campaign_file, []), str(path))
    s = SnapshotStore(path)
    try:
        assert_dag(edges(s))
        # A parent is always produced in an earlier generation than its child.
        assert s.scalar("SELECT count(*) FROM lineage l JOIN trajectories c ON c.traj_id = l.child_id "
                        "JOIN trajectories p ON p.traj_id = l.parent_id WHERE p.generation >= c.generation") == 0
        assert s.scalar("SELECT count(*) FROM rediscoveries") > 0  # the replay policy re-finds a lot
        parents: dict[str, list[str]] = {}
        for child, parent in edges(s):
            parents.setdefault(child, []).append(parent)

        def ancestry(start: str) -> set[str]:  # walking the edges here
            want, todo = {start}, [start]
            while todo:
                for p in parents.get(todo.pop(), ()):
                    if p not in want:
                        want.add(p)
                        todo.append(p)
            return want

        # the last generation's child with the most ancestors (ties: the largest id)
        children = s.query("SELECT DISTINCT child_id FROM lineage l JOIN trajectories t ON t.traj_id = l.child_id "
                           "WHERE t.generation = (SELECT max(generation) FROM trajectories) ORDER BY child_id")
        deepest = max(children.column("child_id").to_pylist(), key=lambda c: (len(ancestry(c)), c))
        sql = readme_ancestry_query()
        literal = re.search(r"SELECT '([0-9a-f]+)', 0", sql)
        assert literal, "the README's query starts from a literal trajectory id"
        got = s.query(sql.replace(literal.group(1), deepest)).to_pylist()
        want = ancestry(deepest)
        assert {r["traj_id"] for r in got} == want and len(want) > 2
        assert [r["depth"] for r in got] == sorted(r["depth"] for r in got) and got[0]["traj_id"] == deepest
    finally:
        s.close()
