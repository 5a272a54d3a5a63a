"""The store contract: what every way of opening a store promises.

Rules every implementation keeps:

* One writer, many readers. A writable store is owned by one process (DuckDB's
  file lock enforces it); readers never open the live file, they read the
  latest committed Parquet snapshot, so they never wait for the writer and can
  never block it.
* Facts are append-only. Trajectories, steps, lineage, rewards and the
  campaign journal are only ever inserted; a trajectory already present under
  the same ``(traj_id, source)`` is not inserted again, and a work item result
  is committed at most once.
* Lineage is a DAG: the edges of each trajectory's first production (the first
  write of its id) to parents stored before it, never to itself. Producing an
  id again adds no edge (that would make self-edges and cycles); it is recorded
  in ``rediscoveries`` with the parents it had.
* Each write method is one transaction: after a crash, either all of it is in
  the file or none of it is.
* Returned records are frozen and never change under later writes.
* Reads are SQL over the stable views (see ``stores/schema.py``); results come
  out as Arrow tables (``.query``) or Polars frames (``.frame``).

Only the primitives are abstract; helpers such as :meth:`Store.frame` or
:meth:`Store.population` are built on them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from evoagent.errors import UserError
from evoagent.trajectory import Step, Task, Trajectory


class StoreError(UserError):
    """A store cannot be opened or used as asked (locked, wrong version, read-only)."""


@dataclass(frozen=True)
class WorkItem:
    """One unit of planned work: apply ``operator`` to ``parents`` on ``task_id``."""

    generation: int
    item_id: int
    operator: str
    task_id: str
    parents: tuple[str, ...]
    seed: int


@dataclass(frozen=True)
class ItemResult:
    """What a finished work item produced (a trajectory) or why it failed."""

    item: WorkItem
    trajectory: Trajectory | None
    error: str | None = None
    env_steps: int = 0
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return "done" if self.trajectory is not None else "failed"


class Store(ABC):
    """Abstract store; see the module docstring for the rules."""

    path: str
    read_only: bool

    # -- primitives: reads -------------------------------------------------
    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run one read-only SQL statement over the views; return Arrow."""

    # -- primitives: writes (ReadOnly stores raise StoreError) ---------------
    @abstractmethod
    def put_meta(self, key: str, value: str) -> None:
        """Record a setting; the latest value of a key wins."""

    @abstractmethod
    def add_tasks(self, tasks: Sequence[Task]) -> int:
        """Insert tasks not yet present; returns how many were new."""

    @abstractmethod
    def write(self, batch: Any) -> int:
        """Append a :class:`stores.batch.TrajectoryBatch`; returns new trajectories."""

    @abstractmethod
    def plan_generation(self, generation: int, items: Sequence[WorkItem]) -> None:
        """Journal a generation's plan before any of it runs; until the generation is
        committed, a later call may add items with new, higher ids (population fill-up)."""

    @abstractmethod
    def commit_items(self, results: Sequence[ItemResult], campaign: str) -> int:
        """Commit finished items with their trajectories; returns how many were new."""

    @abstractmethod
    def commit_generation(
        self, generation: int, population: Sequence[tuple[str, str, int]], stats: dict[str, Any]
    ) -> None:
        """Commit the population after replacement and the generation's statistics."""

    @abstractmethod
    def append_ledger(self, tables: dict[str, pa.Table]) -> None:
        """Append LLM ledger rows (calls, batch events, batch items) in one transaction."""

    @abstractmethod
    def snapshot(self) -> None:
        """Publish committed data as Parquet for readers (incremental)."""

    def publish_if_due(self) -> None:
        """Publish unpublished commits for readers if the publish interval has passed."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Release the file (publishing a final snapshot if writable)."""

    # -- helpers ------------------------------------------------------------
    def frame(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Like :meth:`query`, as a Polars frame."""
        return pl.from_arrow(self.query(sql, params))

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        table = self.query(sql, params)
        return table.column(0)[0].as_py() if table.num_rows else None

    def get_meta(self, key: str) -> str | None:
        return self.scalar(
            "SELECT value FROM raw.meta WHERE key = ? ORDER BY written_at DESC LIMIT 1", [key]
        )

    def population(self, generation: int) -> list[tuple[str, str, int]]:
        """Members (task_id, traj_id, rank) of a committed generation, in rank order."""
        t = self.query(
            "SELECT task_id, traj_id, rank FROM population WHERE generation = ? "
            "ORDER BY task_id, rank", [generation]
        )
        return list(zip(*(t.column(i).to_pylist() for i in range(3))))

    def last_committed_generation(self) -> int | None:
        return self.scalar("SELECT max(generation) FROM generations WHERE status = 'committed'")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load_trajectories(self, traj_ids: Sequence[str]) -> dict[str, Trajectory]:
        """Rebuild frozen records (with steps) for the given ids; unknown ids are absent."""
        if not traj_ids:
            return {}
        ids = list(dict.fromkeys(traj_ids))
        head = self.query(
            "SELECT traj_id, task_id, source, generation, operator, seed, outcome_reward, "
            "cost_usd, input_tokens, output_tokens, item_id FROM trajectories "
            "WHERE list_contains(?, traj_id) QUALIFY row_number() OVER "
            "(PARTITION BY traj_id ORDER BY created_at, item_id NULLS LAST, source) = 1", [ids]
        ).to_pylist()
        steps = self.query(
            "SELECT traj_id, idx, thought, action, observation, reward, valid, process_reward "
            "FROM steps WHERE list_contains(?, traj_id) ORDER BY traj_id, idx", [ids]
        ).to_pylist()
        # In their original order (before v3: by id). The record read is the trajectory's first
        # production (ordered as the store picks it), the only one lineage has edges for.
        edges = self.query(
            "SELECT child_id, generation, item_id, list(parent_id ORDER BY parent_idx NULLS LAST, "
            "parent_id) AS ps FROM lineage WHERE list_contains(?, child_id) GROUP BY ALL", [ids]
        ).to_pylist()
        by_traj: dict[str, list[Step]] = {}
        for s in steps:
            tid = s.pop("traj_id")
            by_traj.setdefault(tid, []).append(Step(**s))
        par = {(e["child_id"], e["generation"], e["item_id"]): tuple(e["ps"]) for e in edges}
        out = {}
        for h in head:
            tid, item = h.pop("traj_id"), h.pop("item_id")
            out[tid] = Trajectory(steps=tuple(by_traj.get(tid, ())),
                                  parents=par.get((tid, h["generation"], item), ()), **h)
        return out

    def export(self, name: str, out_dir: str, partition_by: Sequence[str] = ("campaign", "generation")) -> str:
        """Write a view or table as Parquet under ``out_dir`` (hive-partitioned where it applies)."""
        import os

        cols = self.query(f"SELECT * FROM {name} LIMIT 0").column_names
        # Hive partitions cannot hold NULL portably (pyarrow cannot type them): only
        # partition by columns that are fully set, e.g. not `generation` of imported runs.
        parts = [
            c for c in partition_by
            if c in cols and not self.scalar(f"SELECT count(*) FROM {name} WHERE {c} IS NULL")
        ]
        import duckdb

        con = self._con  # type: ignore[attr-defined]
        target = os.path.join(out_dir, name)
        os.makedirs(out_dir, exist_ok=True)
        try:
            if parts:
                con.execute(
                    f"COPY (SELECT * FROM {name}) TO '{target}' "
                    f"(FORMAT parquet, PARTITION_BY ({', '.join(parts)}), OVERWRITE_OR_IGNORE)"
                )
            else:
                target += ".parquet"
                con.execute(f"COPY (SELECT * FROM {name}) TO '{target}' (FORMAT parquet)")
        except duckdb.Error as exc:
            raise StoreError(f"export of {name} to {out_dir} failed: {str(exc).splitlines()[0]}") from None
        return target
