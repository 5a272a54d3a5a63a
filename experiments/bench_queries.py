"""Latency of the README's example queries on a campaign-sized store.

    python experiments/bench_queries.py                     # 10M steps, cached under runs/bench/
    python experiments/bench_queries.py --steps 1000000 --runs 5 --threads 2

Builds (once; reused while the cache matches ``--steps``) a store of synthetic
trajectories in Arrow batches: ~1000 tasks, several sources, campaign-like
generation/operator columns and lineage; publishes its Parquet snapshot; then
times each query ``--runs`` times through ``SnapshotStore.query`` (what
``evoagent sql`` runs while a campaign holds the file) and ``FileStore.query`` (the
file itself, read-only: what it runs otherwise), printing p50/p90; and, for the cost of
locking readers down, the same parts read by DuckDB's own Parquet reader on an unlocked
connection.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import duckdb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_store import HARDNESS, synth_batch  # noqa: E402
from evoagent.trajectory import Task  # noqa: E402
from stores import DuckDBStore, FileStore, SnapshotStore  # noqa: E402
from stores.schema import RAW_TABLES, create_views  # noqa: E402
from stores.snapshot import MANIFEST  # noqa: E402

# The README's example queries, verbatim (name, SQL).
QUERIES: list[tuple[str, str]] = [
    ("a) success rate by source",
     "SELECT source, count(*) AS runs, "
     "round(100 * avg(CASE WHEN outcome_reward = 1.0 THEN 1 ELSE 0 END), 1) AS success_pct "
     "FROM trajectories GROUP BY source ORDER BY source"),
    ("b) success by source and hardness",
     "SELECT t.source, k.hardness, count(*) AS runs, round(100 * avg(t.solved::INT), 1) AS success_pct "
     "FROM trajectories t JOIN tasks k USING (task_id) "
     "GROUP BY t.source, k.hardness ORDER BY t.source, k.hardness"),
    ("c) steps and error rate per source",
     "SELECT t.source, round(avg(t.n_steps), 2) AS avg_steps, "
     "round(100 * avg(CASE WHEN s.valid THEN 0 ELSE 1 END), 1) AS error_pct "
     "FROM steps s JOIN trajectories t USING (traj_id) GROUP BY t.source ORDER BY t.source"),
    ("d) top-10 first actions",
     "SELECT action, count(*) AS n FROM steps WHERE idx = 0 GROUP BY action ORDER BY n DESC, action LIMIT 10"),
    ("e) best/mean reward per generation",
     "SELECT generation, count(*) AS n, max(outcome_reward) AS best, round(avg(outcome_reward), 3) AS mean "
     "FROM trajectories WHERE generation IS NOT NULL GROUP BY generation ORDER BY generation"),
    ("f) children per operator, reward gain",
     "SELECT l.operator, count(DISTINCT l.child_id) AS children, "
     "round(avg(c.outcome_reward - p.outcome_reward), 3) AS mean_gain "
     "FROM lineage l JOIN trajectories c ON c.traj_id = l.child_id "
     "JOIN trajectories p ON p.traj_id = l.parent_id GROUP BY l.operator ORDER BY l.operator"),
]


def tree_mib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def build(path: Path, n_steps: int, batch: int, n_tasks: int) -> float:
    for p in (path, Path(f"{path}.wal"), Path(f"{path}.snapshot")):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    n_traj = n_steps // 5
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    with DuckDBStore(path, snapshot_every_s=1e9) as store:
        store.add_tasks([
            Task(f"spider-{i:04d}", "intercode_sql", f"Question {i}?",
                 meta={"db": f"db_{i % 160}", "hardness": HARDNESS[i % len(HARDNESS)]}) for i in range(n_tasks)
        ])
        for start in range(0, n_traj, batch):
            store.write(synth_batch(start, min(batch, n_traj - start), rng, steps=None,
                                    n_tasks=n_tasks, total=n_traj))
        store.put_meta("bench_steps", str(n_steps))
        t1 = time.perf_counter()
        print(f"  loaded {store.scalar('SELECT count(*) FROM steps'):,} steps in {t1 - t0:.1f} s",
              flush=True)
    # close() published the snapshot
    return time.perf_counter() - t0


class UnlockedParquet:
    """For comparison only: the snapshot's parts through DuckDB's own Parquet reader, on a
    connection with external access on (what readers did before they were locked down;
    unsafe for user SQL, since such a connection can also write files)."""

    def __init__(self, path: Path, threads: int):
        folder = Path(f"{path}.snapshot")
        manifest = json.loads((folder / MANIFEST).read_text())
        self.con = duckdb.connect(":memory:", config={"threads": threads})
        self.con.execute("CREATE SCHEMA raw")
        for name, cols in RAW_TABLES.items():
            parts = [str(folder / p) for p in manifest["tables"].get(name, {}).get("parts", [])]
            body = f"SELECT * FROM read_parquet({parts!r})" if parts else None
            self.con.execute(f"CREATE VIEW raw.{name} AS {body}" if body else f"CREATE TABLE raw.{name} ({cols})")
        create_views(self.con)

    def query(self, sql: str):
        return self.con.sql(sql).to_arrow_table()


def timed(store, sql: str, runs: int) -> tuple[float, float, int]:
    times, n = [], 0
    store.query(sql)  # warm-up: file cache, Parquet metadata
    for _ in range(runs):
        t0 = time.perf_counter()
        n = store.query(sql).num_rows
        times.append(time.perf_counter() - t0)
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return statistics.median(times), p90, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10_000_000)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=50_000, help="trajectories per write")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads for the queries")
    ap.add_argument("--path", default="runs/bench/queries.duckdb")
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()

    path = Path(args.path)
    build_s = None
    cached = None
    if path.exists() and not args.rebuild:
        try:
            cached = SnapshotStore(path).get_meta("bench_steps")
        except Exception:  # noqa: BLE001 - any unreadable cache is rebuilt
            cached = None
    if cached != str(args.steps):
        print(f"building {path} with {args.steps:,} steps ...", flush=True)
        build_s = build(path, args.steps, args.batch, args.tasks)
    snap = SnapshotStore(path, threads=args.threads)  # readers' settings are locked once open
    live = FileStore(path, threads=args.threads)
    unlocked = UnlockedParquet(path, args.threads)
    n_traj = snap.scalar("SELECT count(*) FROM trajectories")
    n_steps = snap.scalar("SELECT count(*) FROM steps")
    n_lin = snap.scalar("SELECT count(*) FROM lineage")
    print(f"\nstore: {n_traj:,} trajectories, {n_steps:,} steps, {n_lin:,} lineage edges, "
          f"{snap.scalar('SELECT count(*) FROM tasks'):,} tasks, "
          f"{snap.scalar('SELECT count(DISTINCT source) FROM trajectories')} sources, "
          f"{snap.scalar('SELECT count(DISTINCT generation) FROM trajectories')} generations")
    if build_s is not None:
        print(f"build (write + final snapshot): {build_s:.1f} s")
    else:
        print("build: reused cached store (--rebuild to time it)")
    print(f"files: {path} {tree_mib(path):,.0f} MiB, snapshot {tree_mib(Path(f'{path}.snapshot')):,.0f} MiB; "
          f"duckdb {duckdb.__version__}, threads={args.threads}, runs={args.runs}")
    print()
    print(f"{'query':<40} {'rows':>5} {'snap p50':>9} {'snap p90':>9} {'live p50':>9} {'live p90':>9} "
          f"{'unlocked parquet p50':>21}")
    print("-" * 108)
    worst = 0.0
    for name, sql in QUERIES:
        s50, s90, n = timed(snap, sql, args.runs)
        l50, l90, _ = timed(live, sql, args.runs)
        u50, _, _ = timed(unlocked, sql, args.runs)
        worst = max(worst, s50, l50)
        print(f"{name:<40} {n:>5} {s50:>8.3f}s {s90:>8.3f}s {l50:>8.3f}s {l90:>8.3f}s {u50:>20.3f}s", flush=True)
    print()
    print(f"worst p50: {worst:.3f} s (goal < 1 s) -> {'OK' if worst < 1.0 else 'ABOVE GOAL'}")
    live.close()
    snap.close()


if __name__ == "__main__":
    main()
