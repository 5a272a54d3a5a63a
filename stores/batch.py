"""Arrow batches: the one shape in which trajectories enter the store.

Writers build a :class:`TrajectoryBatch` (from records, or directly as Arrow
for bulk loads) and the store appends it with one INSERT per table, so no hot
path ever inserts row by row.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

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
        """Columnar conversion of records; ``item_ids`` ties each to its work item."""
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        ids = [t.traj_id for t in trajs]
        items = list(item_ids) if item_ids is not None else [None] * len(trajs)
        tcols = {
            "traj_id": ids,
            "source": [t.source for t in trajs],
            "task_id": [t.task_id for t in trajs],
            "campaign": [campaign] * len(trajs),
            "generation": [t.generation for t in trajs],
            "operator": [t.operator for t in trajs],
            "item_id": items,
            "seed": [t.seed for t in trajs],
            "outcome_reward": [t.outcome_reward for t in trajs],
            "n_steps": [len(t.steps) for t in trajs],
            "cost_usd": [t.cost_usd for t in trajs],
            "input_tokens": [t.input_tokens for t in trajs],
            "output_tokens": [t.output_tokens for t in trajs],
            "created_at": [now] * len(trajs),
        }
        s_id, s_idx, s_th, s_act, s_obs, s_rw, s_val, s_pr = ([] for _ in range(8))
        l_child, l_parent, l_op, l_gen, l_item, l_idx = ([] for _ in range(6))
        for tid, t, item in zip(ids, trajs, items):
            for s in t.steps:
                s_id.append(tid)
                s_idx.append(s.idx)
                s_th.append(s.thought)
                s_act.append(s.action)
                s_obs.append(s.observation)
                s_rw.append(s.reward)
                s_val.append(s.valid)
                s_pr.append(s.process_reward)
            for k, p in enumerate(t.parents):
                l_idx.append(k)
                l_child.append(tid)
                l_parent.append(p)
                l_op.append(t.operator)
                l_gen.append(t.generation)
                l_item.append(item)
        steps = pa.table([s_id, s_idx, s_th, s_act, s_obs, s_rw, s_val, s_pr], schema=STEP_SCHEMA)
        lineage = pa.table([l_child, l_parent, l_op, l_gen, l_item, l_idx], schema=LINEAGE_SCHEMA)
        rewards = pa.table(
            [ids, [reward_source] * len(trajs), tcols["outcome_reward"], [None] * len(trajs)],
            schema=REWARD_SCHEMA,
        )
        return cls(pa.table(tcols, schema=TRAJECTORY_SCHEMA), steps, lineage, rewards)
