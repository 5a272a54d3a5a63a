"""Arrow batches: the one shape in which trajectories enter the store.

Writers build a :class:`TrajectoryBatch` (from records, or directly as Arrow
for bulk loads) and the store appends it with one INSERT per table, so no hot
path ever inserts row by row.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from operator import attrgetter

import pyarrow as pa
import pyarrow.compute as pc

from evoagent.trajectory import Trajectory

TRAJECTORY_SCHEMA = pa.schema([
    ("traj_id", pa.string()), ("source", pa.string()), ("task_id", pa.string()),
    ("campaign", pa.string()), ("generation", pa.int32()), ("operator", pa.string()),
    ("item_id", pa.int32()), ("seed", pa.int64()), ("outcome_reward", pa.float64()),
    ("n_steps", pa.int32()), ("cost_usd", pa.float64()), ("input_tokens", pa.int64()),
    ("output_tokens", pa.int64()), ("created_at", pa.timestamp("us")),
])
STEP_SCHEMA = pa.schema([
    ("traj_id", pa.string()), ("idx", pa.int32()), ("thought", pa.string()),
    ("action", pa.string()), ("observation", pa.string()), ("reward", pa.float64()),
    ("valid", pa.bool_()), ("process_reward", pa.float64()),
])
LINEAGE_SCHEMA = pa.schema([
    ("child_id", pa.string()), ("parent_id", pa.string()), ("operator", pa.string()),
    ("generation", pa.int32()), ("item_id", pa.int32()), ("parent_idx", pa.int32()),
])
REWARD_SCHEMA = pa.schema([
    ("traj_id", pa.string()), ("reward_source", pa.string()), ("value", pa.float64()),
    ("step_idx", pa.int32()),
])


@dataclass(frozen=True)
class TrajectoryBatch:
    """Arrow tables for trajectories and their steps, lineage and rewards."""

    trajectories: pa.Table
    steps: pa.Table
    lineage: pa.Table
    rewards: pa.Table

    @property
    def n_trajectories(self) -> int:
        return self.trajectories.num_rows

    @property
    def n_steps(self) -> int:
        return self.steps.num_rows

    @classmethod
    def empty(cls) -> TrajectoryBatch:
        return cls(TRAJECTORY_SCHEMA.empty_table(), STEP_SCHEMA.empty_table(),
                   LINEAGE_SCHEMA.empty_table(), REWARD_SCHEMA.empty_table())

    @classmethod
    def from_trajectories(
        cls,
        trajs: Sequence[Trajectory],
        *,
        campaign: str = "",
        item_ids: Sequence[int | None] | None = None,
        reward_source: str = "env",
    ) -> TrajectoryBatch:
        """Columnar conversion of records; ``item_ids`` ties each to its work item.

        One list per column, converted by Arrow as a whole; columns that repeat a value (the
        campaign, the time, a step's trajectory id) are Arrow repeats or takes, not Python lists.
        """
        n = len(trajs)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        ids = pa.array([t.traj_id for t in trajs], pa.string())
        items = pa.array(list(item_ids) if item_ids is not None else [None] * n, pa.int32())
        lengths = [len(t.steps) for t in trajs]
        outcome = pa.array([t.outcome_reward for t in trajs], pa.float64())
        operators = _column(trajs, "operator", pa.string())
        generations = _column(trajs, "generation", pa.int32())
        trajectories = pa.table([
            ids, _column(trajs, "source", pa.string()), _column(trajs, "task_id", pa.string()),
            pa.repeat(pa.scalar(campaign, pa.string()), n), generations, operators, items, _column(trajs, "seed", pa.int64()), outcome,
            pa.array(lengths, pa.int32()), _column(trajs, "cost_usd", pa.float64()),
            _column(trajs, "input_tokens", pa.int64()), _column(trajs, "output_tokens", pa.int64()),
            pa.repeat(pa.scalar(now, pa.timestamp("us")), n),
        ], schema=TRAJECTORY_SCHEMA)

        steps = [s for t in trajs for s in t.steps]
        step_owner = _owners(lengths)
        steps_t = pa.table([ids.take(step_owner)] + [
            _column(steps, f.name, f.type) for f in STEP_SCHEMA if f.name != "traj_id"
        ], schema=STEP_SCHEMA)

        parents = [len(t.parents) for t in trajs]
        edge_owner = _owners(parents)
        lineage = pa.table([
            ids.take(edge_owner), pa.array([p for t in trajs for p in t.parents], pa.string()),
            operators.take(edge_owner), generations.take(edge_owner), items.take(edge_owner),
            pa.array([k for c in parents for k in range(c)], pa.int32()),
        ], schema=LINEAGE_SCHEMA)
        rewards = pa.table(
            [ids, pa.repeat(pa.scalar(reward_source, pa.string()), n), outcome, pa.nulls(n, pa.int32())],
            schema=REWARD_SCHEMA,
        )
        return cls(trajectories, steps_t, lineage, rewards)


def _column(records: Sequence[object], name: str, type_: pa.DataType) -> pa.Array:
    """One attribute of every record as an Arrow array of ``type_``."""
    return pa.array(list(map(attrgetter(name), records)), type_)


def _owners(counts: list[int]) -> pa.Array:
    """Row ``k`` repeated ``counts[k]`` times: the owner of each step or lineage edge."""
    offsets = pa.array([0, *accumulate(counts)], pa.int64())
    return pc.list_parent_indices(pa.LargeListArray.from_arrays(offsets, pa.nulls(offsets[-1].as_py())))
