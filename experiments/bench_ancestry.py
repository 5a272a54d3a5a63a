"""Time the SQL guide's ancestry query (docs/sql.md, query g) on a store, and check its lineage is a DAG.

    python experiments/bench_ancestry.py runs/main.duckdb [--trajectories 20] [--runs 5]

Reads the query from docs/sql.md, runs it through the reader `evoagent sql` uses (or, with
``--reader snapshot``, the Parquet snapshot) from the deepest trajectories, and prints p50/max latency, plus the
lineage's size, self-edges, whether a topological order exists, and the re-discoveries.
"""
from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stores import SnapshotStore, open_store  # noqa: E402


def readme_query() -> tuple[str, str]:
    """The ancestry query of the SQL guide (docs/sql.md, query g) and the trajectory id it starts from."""
    sql = re.search(r"^-- g\) ancestry.*?\n(.*?;)", (ROOT / "docs" / "sql.md").read_text(), re.S | re.M).group(1)
    return sql, re.search(r"SELECT '([0-9a-f]+)', 0", sql).group(1)


def topological(edges: list[tuple[str, str]]) -> bool:
    """Whether the graph child -> parent has no cycle (Kahn's algorithm)."""
    indeg: dict[str, int] = {}
    kids: dict[str, list[str]] = {}
    for child, parent in edges:
        indeg[child] = indeg.get(child, 0) + 1
        indeg.setdefault(parent, 0)
        kids.setdefault(parent, []).append(child)
    ready, seen = [n for n, d in indeg.items() if d == 0], 0
    while ready:
        seen += 1
        for c in kids.get(ready.pop(), ()):
            indeg[c] -= 1
            if not indeg[c]:
                ready.append(c)
    return seen == len(indeg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--trajectories", type=int, default=20, help="start from this many deepest trajectories")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per trajectory")
    ap.add_argument("--reader", choices=["auto", "snapshot"], default="auto",
                    help="auto: what `evoagent sql` opens; snapshot: the Parquet snapshot")
    args = ap.parse_args()
    sql, example = readme_query()
    s = SnapshotStore(args.store) if args.reader == "snapshot" else open_store(args.store, read_only=True)
    edges = [(r["child_id"], r["parent_id"]) for r in s.query("SELECT child_id, parent_id FROM lineage").to_pylist()]
    print(f"machine: {platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}; "
          f"reader: {type(s).__name__}")
    print(f"lineage: {len(edges):,} edges, {sum(c == p for c, p in edges)} self-edges, "
          f"DAG: {topological(edges)}; rediscoveries: {s.scalar('SELECT count(*) FROM rediscoveries'):,}; "
          f"trajectories: {s.scalar('SELECT count(*) FROM trajectories'):,}")
    starts = s.query(
        "SELECT l.child_id FROM lineage l JOIN trajectories t ON t.traj_id = l.child_id "
        "GROUP BY l.child_id, t.generation ORDER BY t.generation DESC, count(*) DESC, l.child_id LIMIT ?",
        [args.trajectories]).column(0).to_pylist()
    if s.scalar("SELECT count(*) FROM trajectories WHERE traj_id = ?", [example]):
        starts = [example] + starts
    times, sizes = [], []
    for tid in starts:
        q = sql.replace(example, tid)
        for _ in range(args.runs):
            t0 = time.perf_counter()
            n = s.query(q).num_rows
            times.append(time.perf_counter() - t0)
        sizes.append(n)
    print(f"ancestry query from {len(starts)} trajectories x {args.runs} runs: p50 {statistics.median(times):.3f} s, "
          f"max {max(times):.3f} s; rows per answer (itself + ancestors): max {max(sizes)}, "
          f"mean {statistics.mean(sizes):.1f}")
    s.close()


if __name__ == "__main__":
    main()
