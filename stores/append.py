"""What a batch adds to the store, worked out in Arrow and Python.

The store's dedupe rules (see :meth:`stores.duckdb_store.DuckDBStore._append`) as plain
filters over the batch: what is stored comes from :class:`stores.facts.StoredFacts`, so the
store appends the filtered tables as they are (no joins, no window functions). A batch with an
id twice (replayed actions re-find a trajectory within one group commit) orders that id's
productions here as the SQL path does (``DuckDBStore._append_sql``, the reference the tests
compare with): its first production by item, source and position.
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


def plan_append(batch: TrajectoryBatch, facts: StoredFacts, keys: BatchKeys | None = None) -> AppendPlan:
    """The rows of ``batch`` that are new to the store (an id may occur more than once).

    * first productions: per id not stored, its row first by (item_id NULLS LAST, source NULLS
      LAST, position); its steps (each (id, idx) once, the first in the batch), and its lineage
      edges of the same production (generation and item), not to itself, to parents stored or
      whose first production is earlier in the batch, each edge once;
    * trajectories: per (traj_id, source) the row first by (item_id NULLS LAST, position), unless
      that pair is stored (a NULL source is never stored);
    * rediscoveries: every other production, each (traj_id, source, generation, item) once (its
      first position), with the parents of its edges in the batch (by parent_idx, then id);
    * rewards: a (traj_id, reward_source) not stored (also when it was stored before its
      trajectory, e.g. a prefix's score), once per (traj_id, reward_source, step).

    ``keys``: :meth:`BatchKeys.of` the batch, when the caller has it already.
    """
    traj = batch.trajectories
    keys = keys or BatchKeys.of(batch)
    ids, sources = keys.ids, keys.sources
    n = len(ids)
    distinct = len(set(ids)) == n
    known = facts.known(ids) if len(facts) else [False] * n
    any_known = any(known)
    items = traj.column("item_id").to_pylist()
    gens = traj.column("generation").to_pylist()
    traj_ids = traj.column("traj_id").combine_chunks()
    first_pos: dict[str, int] = {}
    if distinct:  # each new id's one row is its first production
        if any_known:
            fp_rows = pc.indices_nonzero(pa.array([not kn for kn in known], pa.bool_())).cast(pa.int64())
            fp_ids = traj_ids.take(fp_rows)
        else:
            fp_rows, fp_ids = pa.array(range(n), pa.int64()), traj_ids
    else:
        first_key: dict[str, tuple[bool, int, bool, str]] = {}
        for k, (i, kn) in enumerate(zip(ids, known)):
            if not kn:
                it, s = items[k], sources[k]
                key = (it is None, it or 0, s is None, s or "")
                if i not in first_key or key < first_key[i]:
                    first_key[i], first_pos[i] = key, k
        fp_ids = pa.array(list(first_pos), pa.string())
        fp_rows = pa.array(list(first_pos.values()), pa.int64())
    if any_known:
        of = facts.sources
        keep_traj = [not kn or s is None or s not in of(i) for i, s, kn in zip(ids, sources, known)]
    else:
        keep_traj = [True] * n
    if not distinct:  # per (traj_id, source): the row first by (item_id NULLS LAST, position)
        chosen: dict[tuple[str, str | None], tuple[tuple[bool, int], int]] = {}
        for k, (i, s) in enumerate(zip(ids, sources)):
            if keep_traj[k]:
                it = items[k]
                order = (it is None, it or 0)
                now = chosen.get((i, s))
                if now is None or order < now[0]:
                    chosen[(i, s)] = (order, k)
        keep_traj = [False] * n
        for _, k in chosen.values():
            keep_traj[k] = True
    steps = batch.steps
    if steps.num_rows and (any_known or not distinct or not _all_in(steps, fp_ids)):
        steps = steps.filter(pc.is_in(steps.column("traj_id"), value_set=fp_ids))
    if steps.num_rows and not distinct:  # each (traj_id, idx) once: its first row in the batch
        steps = _first_rows(steps, ["traj_id", "idx"])

    red_rows: list[int] = []
    if distinct:
        red_rows = [r for r, kn in enumerate(known) if kn] if any_known else []
    else:  # every production but the first, each (traj_id, source, generation, item) once
        seen_red: set[tuple[object, ...]] = set()
        for r, i in enumerate(ids):
            key = (i, sources[r], gens[r], items[r])
            f = first_pos.get(i)
            if key in seen_red or (f is not None and key == (i, sources[f], gens[f], items[f])):
                continue
            seen_red.add(key)
            red_rows.append(r)
    lin = batch.lineage
    edges = _first_edges(lin, traj, fp_ids, fp_rows, facts)
    parents_of: dict[tuple[object, ...], list[tuple[int | None, str | None]]] = {
        (ids[r], gens[r], items[r]): [] for r in red_rows}  # the parents of each rediscovery's production
    if parents_of and lin.num_rows:
        mine = lin.filter(pc.is_in(lin.column("child_id"), value_set=pa.array({k[0] for k in parents_of}, pa.string())))
        for c, p, g, it, k in zip(*(mine.column(c).to_pylist() for c in
                                    ("child_id", "parent_id", "generation", "item_id", "parent_idx"))):
            got = parents_of.get((c, g, it))
            if got is not None:
                got.append((k, p))

    red = pa.table({
        "traj_id": [ids[r] for r in red_rows], "source": [sources[r] for r in red_rows],
        "operator": traj.column("operator").take(red_rows) if red_rows else pa.array([], pa.string()),
        "generation": [gens[r] for r in red_rows], "item_id": [items[r] for r in red_rows],
        "parents": [[p for _, p in sorted(parents_of.get((ids[r], gens[r], items[r]), ()), key=_parent_order)]
                    for r in red_rows],
        "created_at": traj.column("created_at").take(red_rows) if red_rows else pa.array([], pa.timestamp("us")),
    }, schema=REDISCOVERY_SCHEMA)

    rw = batch.rewards
    keep_rw: list[bool] = []
    pairs = list(zip(keys.reward_ids, keys.reward_sources))
    stored_rw = facts.rewarded(pairs) if pairs else set()
    if (distinct and not stored_rw and rw.num_rows == len(ids) and rw.column("step_idx").null_count == len(ids)
            and rw.column("traj_id").equals(traj.column("traj_id"))
            and len(pc.unique(rw.column("reward_source"))) == 1 and rw.column("reward_source").null_count == 0):
        pass  # one reward a trajectory of the batch, one source (TrajectoryBatch.from_trajectories): all distinct
    elif rw.num_rows:
        seen: set[tuple[object, ...]] = set()
        for pair, st in zip(pairs, rw.column("step_idx").to_pylist()):
            key = (*pair, st)
            keep_rw.append(key not in seen and pair not in stored_rw)
            seen.add(key)
    return AppendPlan(_keep(traj, keep_traj), steps, edges, _keep(rw, keep_rw), red)


def _first_rows(table: pa.Table, by: list[str]) -> pa.Table:
    """Each value of the ``by`` columns once (NULLs equal): its first row, in table order."""
    pos = table.select(by).append_column("_pos", pa.array(range(table.num_rows), pa.int64()))
    first = pos.group_by(by, use_threads=False).aggregate([("_pos", "min")]).column("_pos_min")
    if len(first) == table.num_rows:
        return table
    return table.take(first.take(pc.sort_indices(first)))  # the first rows, in table order


def _parent_order(edge: tuple[int | None, str | None]) -> tuple[bool, int, bool, str]:
    """ORDER BY parent_idx NULLS LAST, parent_id (NULLS LAST), as the SQL path orders them."""
    k, p = edge
    return (k is None, k or 0, p is None, p or "")


def _all_in(steps: pa.Table, ids: pa.Array) -> bool:
    """Whether every step belongs to a trajectory of the batch (always so for built batches)."""
    col = steps.column("traj_id")
    return col.null_count == 0 and pc.all(pc.is_in(pc.unique(col), value_set=ids)).as_py() is not False


def _same(a: pa.Array, b: pa.Array) -> pa.Array:
    """``a IS NOT DISTINCT FROM b``, element-wise."""
    return pc.or_(pc.fill_null(pc.equal(a, b), False), pc.and_(pc.is_null(a), pc.is_null(b)))


def _first_edges(lin: pa.Table, traj: pa.Table, fp_ids: pa.Array, fp_rows: pa.Array, facts: StoredFacts) -> pa.Table:
    """The lineage edges to write: those of a first production (``fp_ids`` at batch rows
    ``fp_rows``) with its generation and item, to a parent that is not the child itself and is
    stored or first produced at an earlier row of the batch; each edge once (its first row)."""
    if not lin.num_rows:
        return lin
    child, parent = lin.column("child_id").combine_chunks(), lin.column("parent_id").combine_chunks()
    row = fp_rows.take(pc.index_in(child, value_set=fp_ids))
    parent_row = fp_rows.take(pc.index_in(parent, value_set=fp_ids))
    outside = pc.unique(parent.filter(pc.is_null(parent_row)))  # parents not first produced in the batch
    stored = pa.array([p for p in outside.to_pylist() if p is not None and p in facts], pa.string())
    parent_ok = pc.if_else(pc.is_valid(parent_row), pc.less(parent_row, row), pc.is_in(parent, value_set=stored))
    keep = pc.and_(pc.is_valid(row), pc.fill_null(pc.and_(pc.not_equal(parent, child), parent_ok), False))
    keep = pc.and_(keep, _same(traj.column("generation").combine_chunks().take(row),
                               lin.column("generation").combine_chunks()))
    keep = pc.and_(keep, _same(traj.column("item_id").combine_chunks().take(row), lin.column("item_id").combine_chunks()))
    return _first_rows(lin.filter(keep), lin.column_names)
