"""What a batch of distinct trajectory ids adds to the store, worked out in Arrow and Python.

The store's dedupe rules (see :meth:`stores.duckdb_store.DuckDBStore._append`) as plain
filters over the batch, for the common batch whose trajectory ids are all distinct (a group
commit of work items): what is stored comes from :class:`stores.facts.StoredFacts`, so the
store appends the filtered tables as they are (no joins, no window functions). A batch with
an id twice keeps the SQL path, which orders its productions.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from stores.batch import TrajectoryBatch
from stores.facts import StoredFacts

REDISCOVERY_SCHEMA = pa.schema([
    ("traj_id", pa.string()), ("source", pa.string()), ("operator", pa.string()),
    ("generation", pa.int32()), ("item_id", pa.int32()), ("parents", pa.list_(pa.string())),
    ("created_at", pa.timestamp("us")),
])


@dataclass(frozen=True)
class BatchKeys:
    """A batch's key columns as Python lists, converted once per commit (the dedupe reads
    them, and so does the update of the facts after the commit)."""

    ids: list[str]
    sources: list[str | None]
    reward_ids: list[str]
    reward_sources: list[str | None]

    @classmethod
    def of(cls, batch: TrajectoryBatch) -> BatchKeys:
        traj, rw = batch.trajectories, batch.rewards
        return cls(traj.column("traj_id").to_pylist(), traj.column("source").to_pylist(),
                   rw.column("traj_id").to_pylist(), rw.column("reward_source").to_pylist())


@dataclass(frozen=True)
class AppendPlan:
    """Rows to append; ``rediscoveries`` still to be checked against stored productions."""

    trajectories: pa.Table
    steps: pa.Table
    lineage: pa.Table
    rewards: pa.Table
    rediscoveries: pa.Table


def _keep(table: pa.Table, mask: list[bool]) -> pa.Table:
    return table if all(mask) else table.filter(pa.array(mask, pa.bool_()))


def plan_distinct(batch: TrajectoryBatch, facts: StoredFacts, keys: BatchKeys | None = None) -> AppendPlan:
    """The rows of ``batch`` (distinct trajectory ids) that are new to the store.

    * trajectories: a row whose (traj_id, source) is not stored (a NULL source is never stored);
    * first productions: the rows whose id is not stored; their steps, and their lineage edges
      of the same production, not to themselves, to parents stored or earlier in the batch;
    * rediscoveries: the rows of stored ids, with their parents (by parent_idx, then id);
    * rewards: a (traj_id, reward_source) not stored (also when it was stored before its
      trajectory, e.g. a prefix's score), once per (traj_id, reward_source, step).

    ``keys``: :meth:`BatchKeys.of` the batch, when the caller has it already.
    """
    traj = batch.trajectories
    keys = keys or BatchKeys.of(batch)
    ids, sources = keys.ids, keys.sources
    known = [i in facts for i in ids]
    first_pos = {i: k for k, (i, kn) in enumerate(zip(ids, known)) if not kn}
    if any(known):
        of = facts.sources
        keep_traj = [not kn or s is None or s not in of(i) for i, s, kn in zip(ids, sources, known)]
    else:
        keep_traj = [True] * len(ids)
    steps = batch.steps
    if steps.num_rows and (any(known) or not _all_in(steps, first_pos)):
        steps = steps.filter(pc.is_in(steps.column("traj_id"), value_set=pa.array(list(first_pos), pa.string())))

    gens = traj.column("generation").to_pylist()
    items = traj.column("item_id").to_pylist()
    row_of = {i: k for k, i in enumerate(ids)}
    lin = batch.lineage
    keep_edge: list[bool] = []
    seen_edges: set[tuple[object, ...]] = set()
    parents_of: dict[int, list[tuple[int | None, str | None]]] = {}
    for edge in zip(*(lin.column(c).to_pylist() for c in
                      ("child_id", "parent_id", "generation", "item_id", "parent_idx", "operator"))):
        c, p, g, it, k, _ = edge
        r = row_of.get(c)
        ok = False
        if r is not None and gens[r] == g and items[r] == it:  # the same production (NULLs equal)
            if known[r]:
                parents_of.setdefault(r, []).append((k, p))
            elif p is not None and p != c:
                pp = first_pos.get(p)
                ok = p in facts if pp is None else pp < r
                if ok:
                    ok = edge not in seen_edges
                    seen_edges.add(edge)
        keep_edge.append(ok)

    red_rows = [r for r, kn in enumerate(known) if kn]
    red = pa.table({
        "traj_id": [ids[r] for r in red_rows], "source": [sources[r] for r in red_rows],
        "operator": traj.column("operator").take(red_rows) if red_rows else pa.array([], pa.string()),
        "generation": [gens[r] for r in red_rows], "item_id": [items[r] for r in red_rows],
        "parents": [[p for _, p in sorted(parents_of.get(r, ()), key=_parent_order)] for r in red_rows],
        "created_at": traj.column("created_at").take(red_rows) if red_rows else pa.array([], pa.timestamp("us")),
    }, schema=REDISCOVERY_SCHEMA)

    rw = batch.rewards
    keep_rw: list[bool] = []
    pairs = list(zip(keys.reward_ids, keys.reward_sources))
    stored_rw = facts.rewarded(pairs) if pairs else set()
    if (not stored_rw and rw.num_rows == len(ids) and rw.column("step_idx").null_count == len(ids)
            and rw.column("traj_id").equals(traj.column("traj_id"))
            and len(pc.unique(rw.column("reward_source"))) == 1 and rw.column("reward_source").null_count == 0):
        pass  # one reward a trajectory of the batch, one source (TrajectoryBatch.from_trajectories): all distinct
    elif rw.num_rows:
        seen: set[tuple[object, ...]] = set()
        for pair, st in zip(pairs, rw.column("step_idx").to_pylist()):
            key = (*pair, st)
            keep_rw.append(key not in seen and pair not in stored_rw)
            seen.add(key)
    return AppendPlan(_keep(traj, keep_traj), steps, _keep(lin, keep_edge), _keep(rw, keep_rw), red)


def _parent_order(edge: tuple[int | None, str | None]) -> tuple[bool, int, bool, str]:
    """ORDER BY parent_idx NULLS LAST, parent_id (NULLS LAST), as the SQL path orders them."""
    k, p = edge
    return (k is None, k or 0, p is None, p or "")


def _all_in(steps: pa.Table, ids: dict[str, int]) -> bool:
    """Whether every step belongs to a trajectory of the batch (always so for built batches)."""
    col = steps.column("traj_id")
    return col.null_count == 0 and all(i in ids for i in pc.unique(col).to_pylist())
