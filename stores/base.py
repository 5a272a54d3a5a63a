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

Reading and writing are separate interfaces: :class:`StoreReader` (queries,
named journal reads, helpers) is all a read-only snapshot implements;
:class:`Store` adds the writes. Only the primitives are abstract; helpers
such as :meth:`StoreReader.frame` or :meth:`StoreReader.population` are built
on them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evoagent.errors import UserError
from evoagent.trajectory import Step, Summary, Task, Trajectory

if TYPE_CHECKING:  # polars loads when a frame is asked for, pyarrow when a table is: a reader starts with DuckDB
    import polars as pl
    import pyarrow as pa


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
    # Strategy-specific arguments as JSON text (e.g. the prefix an MCTS simulation expands);
    # journaled with the plan, handed to operators registered with ``takes_args``.
    args: str = ""


@dataclass(frozen=True)
class Candidate:
    """One next action sampled and scored at a prefix by a step-level search (see ``raw.candidates``)."""

    strategy: str
    task_id: str
    traj_id: str  # the trajectory the item was building (its final one)
    step_idx: int
    prefix_id: str  # content id of the prefix this candidate extends
    node_id: str  # content id of that prefix plus this action
    action: str
    observation: str | None
    env_reward: float | None  # the environment's step reward (gold's); never what the search used
    reward: float | None  # the search signal's score of node_id
    prev_reward: float | None  # the score of prefix_id, the bar RRO's rising compares with
    reward_source: str
    accepted: bool
    rank: int  # order of sampling at this prefix, from 0


@dataclass(frozen=True)
class Simulation:
    """One MCTS pass: the node ids selected from the root (``path``) and the value backed up;
    ``reflection``: LATS's self-reflection on the pass's failed leaf (empty: none)."""

    task_id: str
    path: tuple[str, ...]
    value: float
    terminal: bool = False
    reflection: str = ""


@dataclass(frozen=True)
class ItemResult:
    """What a finished work item produced (a trajectory) or why it failed."""

    item: WorkItem
    trajectory: Trajectory | None
    error: str | None = None
    env_steps: int = 0
    seconds: float = 0.0
    # Scores committed with the trajectory: (traj or prefix id, reward_source, value, step_idx).
    rewards: tuple[tuple[str, str, float, int | None], ...] = ()
    # Step-level search facts, committed in the same transaction as the item.
    candidates: tuple[Candidate, ...] = ()
    simulations: tuple[Simulation, ...] = ()

    @property
    def status(self) -> str:
        return "done" if self.trajectory is not None else "failed"


class StoreReader(ABC):
    """What every opened store answers; see the module docstring for the rules."""

    path: str
    read_only: bool

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run one read-only SQL statement over the views; return Arrow."""

    @abstractmethod
    def close(self) -> None:
        """Release the file (publishing a final snapshot if writable)."""

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------
    def frame(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Like :meth:`query`, as a Polars frame."""
        import polars as pl

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

    # -- named journal reads (the runner and strategies use only these) -------
    def planned(self, generation: int) -> list[WorkItem]:
        """The committed plan of a round, in item order (empty if not planned yet)."""
        rows = self.query(
            "SELECT generation, item_id, operator, task_id, parents, seed, args FROM raw.work_plan "
            "WHERE generation = ? ORDER BY item_id", [generation]
        ).to_pylist()
        return [WorkItem(r["generation"], r["item_id"], r["operator"], r["task_id"],
                         tuple(r["parents"]), r["seed"], r["args"] or "") for r in rows]

    def finished_items(self, generation: int) -> set[int]:
        """Ids of a round's items with a committed result (done or failed)."""
        t = self.query("SELECT item_id FROM raw.work_results WHERE generation = ?", [generation])
        return set(t.column(0).to_pylist())

    def round_results(self, generation: int) -> list[tuple[int, str, str]]:
        """(item_id, task_id, traj_id) of a round's done items, in item order."""
        t = self.query(
            "SELECT r.item_id, p.task_id, r.traj_id FROM raw.work_results r JOIN raw.work_plan p "
            "USING (generation, item_id) WHERE generation = ? AND r.status = 'done' ORDER BY item_id",
            [generation])
        return list(zip(*(t.column(i).to_pylist() for i in range(3))))

    def round_task_env_steps(self, generation: int) -> dict[str, tuple[int, int]]:
        """Per task: (a round's items with a committed result, done or failed; their environment
        steps, scoring included), for a strategy that spends a budget per task."""
        t = self.query(
            "SELECT p.task_id, count(*), coalesce(sum(r.env_steps), 0) FROM raw.work_results r "
            "JOIN raw.work_plan p USING (generation, item_id) WHERE generation = ? GROUP BY p.task_id",
            [generation])
        return {task: (int(n), int(steps)) for task, n, steps in zip(*(t.column(i).to_pylist() for i in range(3)))}

    def round_outcomes(self, generation: int) -> list[float]:
        """[children, solved, outcome reward sum] of a round's items committed so far (for progress)."""
        row = self.query(
            "WITH r AS (SELECT traj_id FROM raw.work_results WHERE generation = ? AND status = 'done') "
            "SELECT count(*), count(*) FILTER (WHERE t.solved), coalesce(sum(t.outcome_reward), 0) FROM r "
            "JOIN (SELECT traj_id, any_value(solved) AS solved, any_value(outcome_reward) AS outcome_reward "
            "FROM trajectories WHERE traj_id IN (SELECT traj_id FROM r) GROUP BY traj_id) t USING (traj_id)",
            [generation]).to_pylist()[0]
        return [float(v) for v in row.values()]

    def env_steps_used(self) -> int:
        """Environment steps of every committed work item, scoring included."""
        return int(self.scalar("SELECT coalesce(sum(env_steps), 0) FROM raw.work_results") or 0)

    def committed_stats(self, generation: int | None = None) -> list[dict[str, Any]]:
        """The statistics of committed rounds (one round, or all in order)."""
        import json

        where, params = ("AND generation = ?", [generation]) if generation is not None else ("", [])
        rows = self.query(f"SELECT stats FROM generations WHERE status = 'committed' {where} "
                          "ORDER BY generation", params).column(0).to_pylist()
        return [json.loads(r) for r in rows]

    def summaries(self, traj_ids: Sequence[str], fitness_source: str | None = None) -> dict[str, Summary]:
        """Step-less records for selection; ``fitness`` is the trajectory score of
        ``fitness_source`` (None: the outcome reward). Unknown ids are absent."""
        if not traj_ids:
            return {}
        ids = list(dict.fromkeys(traj_ids))
        rows = self.query(
            "SELECT t.traj_id, t.task_id, t.outcome_reward AS outcome, t.n_steps, t.cost_usd AS cost, "
            "r.value AS fit FROM (SELECT * FROM raw.trajectories WHERE traj_id IN (SELECT unnest(?)) "
            "QUALIFY row_number() OVER (PARTITION BY traj_id ORDER BY created_at, item_id NULLS LAST, source) = 1) t "
            "LEFT JOIN (SELECT traj_id, any_value(value) AS value FROM raw.rewards WHERE reward_source = ? "
            "AND step_idx IS NULL AND traj_id IN (SELECT unnest(?)) GROUP BY traj_id) r USING (traj_id)",
            [ids, fitness_source or "", ids]).to_pylist()
        return {r["traj_id"]: Summary(r["traj_id"], r["task_id"], r["outcome"], r["n_steps"], r["cost"],
                                      r["outcome"] if fitness_source is None else (r["fit"] or 0.0))
                for r in rows}

    def answers(self, traj_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """Each trajectory's last step as (action, observation): the answer its episode ended on
        (what ``selection.pick = vote`` groups by). Unknown ids are absent."""
        if not traj_ids:
            return {}
        rows = self.query(
            "SELECT s.traj_id, any_value(s.action) AS action, any_value(s.observation) AS observation "
            "FROM raw.steps s JOIN (SELECT DISTINCT traj_id, n_steps FROM raw.trajectories "
            "WHERE traj_id IN (SELECT unnest(?))) t ON s.traj_id = t.traj_id AND s.idx = t.n_steps - 1 "
            "GROUP BY s.traj_id", [list(dict.fromkeys(traj_ids))]).to_pylist()
        return {r["traj_id"]: (r["action"], r["observation"]) for r in rows}

    def reward_values(self, source: str, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], float]:
        """Stored scores of one reward source for (prefix id, step index) keys; absent keys are missing."""
        if not keys:
            return {}
        t = self.query(
            "SELECT traj_id, step_idx, value FROM raw.rewards WHERE reward_source = ? "
            "AND traj_id IN (SELECT unnest(?))", [source, list({k[0] for k in keys})]).to_pylist()
        want = set(keys)
        return {(r["traj_id"], r["step_idx"]): r["value"] for r in t if (r["traj_id"], r["step_idx"]) in want}

    # -- named LLM ledger reads ---------------------------------------------------
    def answered_call_keys(self) -> set[str]:
        """Keys of LLM calls with a committed answer."""
        return set(self.query("SELECT DISTINCT call_key FROM raw.llm_calls WHERE status = 'ok'")
                   .column(0).to_pylist())

    def answered_call(self, key: str) -> dict[str, Any] | None:
        """The latest committed answer row of an LLM call (response, token counts, cost), if any."""
        rows = self.query(
            "SELECT response, input_tokens, output_tokens, cache_write_tokens, cache_read_tokens, "
            "cost_usd FROM raw.llm_calls WHERE call_key = ? AND status = 'ok' "
            "ORDER BY created_at DESC LIMIT 1", [key]).to_pylist()
        return rows[0] if rows else None

    def uncollected_batch_items(self) -> dict[str, str]:
        """call key -> batch id of message batches submitted and not yet collected."""
        rows = self.query(
            "SELECT call_key, batch_id FROM raw.llm_batch_items WHERE batch_id NOT IN "
            "(SELECT batch_id FROM raw.llm_batches WHERE status = 'collected')").to_pylist()
        return {r["call_key"]: r["batch_id"] for r in rows}

    def batch_items(self, batch_id: str) -> list[dict[str, Any]]:
        """The journaled requests of one message batch (call_key, request, meta)."""
        return self.query("SELECT call_key, request, meta FROM raw.llm_batch_items WHERE batch_id = ?",
                          [batch_id]).to_pylist()

    def load_trajectories(self, traj_ids: Sequence[str]) -> dict[str, Trajectory]:
        """Rebuild frozen records (with steps) for the given ids; unknown ids are absent."""
        if not traj_ids:
            return {}
        ids = list(dict.fromkeys(traj_ids))
        head = self.query(
            "SELECT traj_id, task_id, source, generation, operator, seed, outcome_reward, "
            "cost_usd, input_tokens, output_tokens, item_id FROM trajectories "
            "WHERE traj_id IN (SELECT unnest(?)) QUALIFY row_number() OVER "
            "(PARTITION BY traj_id ORDER BY created_at, item_id NULLS LAST, source) = 1", [ids]
        ).to_pylist()
        steps = self.query(
            "SELECT traj_id, idx, thought, action, observation, reward, valid, process_reward "
            "FROM steps WHERE traj_id IN (SELECT unnest(?)) ORDER BY traj_id, idx", [ids]
        ).to_pylist()
        # In their original order (before v3: by id). The record read is the trajectory's first
        # production (ordered as the store picks it), the only one lineage has edges for.
        edges = self.query(
            "SELECT child_id, generation, item_id, list(parent_id ORDER BY parent_idx NULLS LAST, "
            "parent_id) AS ps FROM lineage WHERE child_id IN (SELECT unnest(?)) GROUP BY ALL", [ids]
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


class Store(StoreReader):
    """A writable store: the reads plus the journal and fact writes."""

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
        self, generation: int, population: Sequence[tuple[str, str, int]], stats: dict[str, Any],
        partial: bool = False,
    ) -> None:
        """Commit the population after replacement and the generation's statistics.

        ``partial``: a round cut short by a budget, closed with the items that finished; it reads
        as committed (its population is the campaign's answer) until the round is closed again,
        partially or in full, by a resume: the ``population`` and ``generations`` views show the
        latest close (``generations.partial`` says which it was)."""

    @abstractmethod
    def append_ledger(self, tables: dict[str, pa.Table]) -> None:
        """Append LLM ledger rows (calls, batch events, batch items) in one transaction."""

    @abstractmethod
    def write_rewards(self, source: str, rows: Sequence[tuple[str, int, float]]) -> int:
        """Record scores (prefix or trajectory id, step index, value) of one reward source.

        A key ``(source, id, step)`` already present is not written again; returns how many were new.
        """

    @abstractmethod
    def snapshot(self) -> None:
        """Publish committed data as Parquet for readers (incremental)."""

    def publish_if_due(self) -> None:
        """Publish unpublished commits for readers if the publish interval has passed."""
        return None

    def __enter__(self) -> Store:
        return self
