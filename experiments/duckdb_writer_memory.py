"""Does DuckDB itself grow a long-lived writer's memory? A DuckDB + pyarrow only reproduction.

    python experiments/duckdb_writer_memory.py [--tasks 300] [--generations 20] [--reopen-every N]
        [--memory-limit 512MB] [--checkpoint-threshold 256MB] [--checkpoint] [--evict]
    python experiments/duckdb_writer_memory.py --store [--code DIR] [--tasks 300] [--generations 20]

One process, one DuckDB file, no evoagent code: each generation appends Arrow batches of the
store's shapes (``tasks x 6`` trajectories of 5 steps, ~60-character actions and ~120-character
observations, their rewards, two lineage edges and a work result each) in group commits of 60
items, then a population of 4 per task and a generation event, as the campaign writer does. After
each generation it prints the process's RSS, DuckDB's own accounting (``duckdb_memory()``: all of
it, and the part that is table data, ``BASE_TABLE`` + ``METADATA``) and the rest of RSS.
``--reopen-every N`` closes and reopens the connection after every N-th generation;
``--checkpoint`` runs CHECKPOINT after every generation; ``--evict`` then lowers memory_limit to
1MB for a moment and restores it (which evicts every unpinned block), as the store's writer does.

``--store`` writes the same kind of campaign through evoagent's store instead, exactly as the
runner calls it (``experiments/bench_peers.py``'s synthetic children: journal, group commits,
generation commit, snapshot publish), in this process; ``--code DIR`` imports the store from
another checkout (e.g. ``git worktree add /tmp/old main~3``) to compare two versions.
The slope is RSS's growth per generation from generation ``--warm`` to the last (least squares).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

TABLES = {
    "trajectories": "traj_id VARCHAR, source VARCHAR, task_id VARCHAR, campaign VARCHAR, generation INTEGER, "
                    "operator VARCHAR, item_id INTEGER, seed BIGINT, outcome_reward DOUBLE, n_steps INTEGER, "
                    "cost_usd DOUBLE, input_tokens BIGINT, output_tokens BIGINT, created_at TIMESTAMP",
    "steps": "traj_id VARCHAR, idx INTEGER, thought VARCHAR, action VARCHAR, observation VARCHAR, "
             "reward DOUBLE, valid BOOLEAN, process_reward DOUBLE",
    "lineage": "child_id VARCHAR, parent_id VARCHAR, operator VARCHAR, generation INTEGER, item_id INTEGER, "
               "parent_idx INTEGER",
    "rewards": "traj_id VARCHAR, reward_source VARCHAR, value DOUBLE, step_idx INTEGER",
    "work_results": "generation INTEGER, item_id INTEGER, status VARCHAR, traj_id VARCHAR, error VARCHAR, "
                    "env_steps INTEGER, seconds DOUBLE, finished_at TIMESTAMP",
    "population": "generation INTEGER, task_id VARCHAR, traj_id VARCHAR, rank INTEGER, closing INTEGER",
    "generation_events": "generation INTEGER, status VARCHAR, event_at TIMESTAMP, n_items INTEGER, stats VARCHAR",
}
CHILDREN, STEPS, GROUP, SURVIVORS = 6, 5, 60, 4


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def connect(path: str, memory_limit: str, threshold: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(path)
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET checkpoint_threshold = '{threshold}'")
    return con


def batch(gen: int, items: range, tasks: int) -> dict[str, pa.Table]:
    """One group commit's rows; ids and texts vary by generation and item (no two alike)."""
    ids = [f"t{gen:03d}-{i:06d}-{(gen * 7919 + i) % 100003:05d}" for i in items]
    task = [f"sql/{i % tasks}" for i in items]
    n = len(ids)
    traj = pa.table({
        "traj_id": ids, "source": ["replay"] * n, "task_id": task, "campaign": ["intercode"] * n,
        "generation": pa.array([gen] * n, pa.int32()), "operator": ["mutate"] * n,
        "item_id": pa.array(list(items), pa.int32()), "seed": pa.array(list(items), pa.int64()),
        "outcome_reward": [((i * 37) % 100) / 100 for i in items], "n_steps": pa.array([STEPS] * n, pa.int32()),
        "cost_usd": [0.0] * n, "input_tokens": pa.array([0] * n, pa.int64()),
        "output_tokens": pa.array([0] * n, pa.int64()),
        "created_at": pa.array([1_700_000_000_000_000 + i for i in items], pa.timestamp("us")),
    })
    sid = [t for t in ids for _ in range(STEPS)]
    k = [j for _ in ids for j in range(STEPS)]
    steps = pa.table({
        "traj_id": sid, "idx": pa.array(k, pa.int32()), "thought": pa.array([None] * len(sid), pa.string()),
        "action": [f"SELECT name, count(*) FROM singer WHERE age > {j} GROUP BY name -- {t[-5:]}"
                   for t, j in zip(sid, k)],
        "observation": [f"[('Joe Sharp', {j}), ('Timbaland', 2), ('Justin Brown', 1), ('Rose White', 1)] "
                        f"rows for {t} step {j}" for t, j in zip(sid, k)],
        "reward": [0.0] * len(sid), "valid": [True] * len(sid), "process_reward": pa.array([None] * len(sid), pa.float64()),
    })
    rewards = pa.table({"traj_id": ids, "reward_source": ["env"] * n, "value": traj.column("outcome_reward"),
                        "step_idx": pa.array([None] * n, pa.int32())})
    lineage = pa.table({
        "child_id": [t for t in ids for _ in range(2)], "parent_id": [f"p{gen - 1:03d}-{i:06d}-{j}" for i in items
                                                                     for j in range(2)],
        "operator": ["mutate"] * 2 * n, "generation": pa.array([gen] * 2 * n, pa.int32()),
        "item_id": pa.array([i for i in items for _ in range(2)], pa.int32()),
        "parent_idx": pa.array([j for _ in items for j in range(2)], pa.int32()),
    })
    results = pa.table({
        "generation": pa.array([gen] * n, pa.int32()), "item_id": pa.array(list(items), pa.int32()),
        "status": ["done"] * n, "traj_id": ids, "error": pa.array([None] * n, pa.string()),
        "env_steps": pa.array([STEPS] * n, pa.int32()), "seconds": [0.01] * n,
        "finished_at": traj.column("created_at"),
    })
    return {"trajectories": traj, "steps": steps, "rewards": rewards, "lineage": lineage, "work_results": results}


def generation(con: duckdb.DuckDBPyConnection, gen: int, tasks: int) -> None:
    n = tasks * CHILDREN
    for start in range(0, n, GROUP):
        con.execute("BEGIN TRANSACTION")
        for name, table in batch(gen, range(start, min(n, start + GROUP)), tasks).items():
            con.from_arrow(table).insert_into(name)
        con.execute("COMMIT")
    pop = pa.table({"generation": pa.array([gen] * tasks * SURVIVORS, pa.int32()),
                    "task_id": [f"sql/{t}" for t in range(tasks) for _ in range(SURVIVORS)],
                    "traj_id": [f"t{gen:03d}-{t * CHILDREN + r:06d}" for t in range(tasks) for r in range(SURVIVORS)],
                    "rank": pa.array([r for _ in range(tasks) for r in range(SURVIVORS)], pa.int32()),
                    "closing": pa.array([0] * tasks * SURVIVORS, pa.int32())})
    con.execute("BEGIN TRANSACTION")
    con.from_arrow(pop).insert_into("population")
    con.execute("INSERT INTO generation_events VALUES (?, 'committed', current_timestamp, NULL, '{}')", [gen])
    con.execute("COMMIT")


def raw_generations(path: str, args: argparse.Namespace) -> Iterator[tuple[int, Callable[[str], int]]]:
    """DuckDB alone: yields after each generation, with a scalar query on the connection."""
    con = connect(path, args.memory_limit, args.checkpoint_threshold)
    for name, ddl in TABLES.items():
        con.execute(f"CREATE TABLE {name} ({ddl})")
    for gen in range(args.generations + 1):
        generation(con, gen, args.tasks)
        if args.checkpoint or args.evict:
            con.execute("CHECKPOINT")
        if args.evict:
            con.execute("SET memory_limit = '1MB'")
            con.execute(f"SET memory_limit = '{args.memory_limit}'")
        if args.reopen_every and gen % args.reopen_every == args.reopen_every - 1:
            con.close()
            con = connect(path, args.memory_limit, args.checkpoint_threshold)
        yield gen, lambda sql: int(con.execute(sql).fetchall()[0][0] or 0)
    con.close()


def store_generations(path: str, args: argparse.Namespace) -> Iterator[tuple[int, Callable[[str], int]]]:
    """evoagent's store as the runner calls it (bench_peers' synthetic campaign)."""
    # bench_peers puts its own checkout first on the path: the store comes from that checkout
    root = Path(args.code).resolve() if args.code else Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "experiments"))
    from bench_peers import EvoagentStore, children, select
    import stores

    if Path(stores.__file__).resolve().parents[1] != root:
        raise SystemExit(f"the store came from {stores.__file__}, not from {root}")

    writer = EvoagentStore(Path(path).parent, group=60)
    population: dict[str, list[dict]] = {}
    for gen in range(args.generations + 1):
        kids = children(gen, args.tasks, CHILDREN)
        for k in kids:
            members = population.get(k["task"])
            k["parent"] = members[0].get("id", "") if members else ""
        select(population, kids, SURVIVORS)
        writer.persist(gen, kids, population)
        yield gen, lambda sql: int(writer.store.query(sql).column(0)[0].as_py() or 0)
    writer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--generations", type=int, default=20)
    ap.add_argument("--warm", type=int, default=3, help="the slope is measured from this generation")
    ap.add_argument("--memory-limit", default="512MB")
    ap.add_argument("--checkpoint-threshold", default="256MB")
    ap.add_argument("--checkpoint", action="store_true", help="CHECKPOINT after every generation")
    ap.add_argument("--reopen-every", type=int, default=0, metavar="N",
                    help="close and reopen the connection after every N-th generation (0: never)")
    ap.add_argument("--evict", action="store_true", help="CHECKPOINT and empty the pool after every generation")
    ap.add_argument("--store", action="store_true", help="write through evoagent's store instead of DuckDB alone")
    ap.add_argument("--code", metavar="DIR", help="with --store: the checkout whose store to use")
    args = ap.parse_args()
    if args.code and not (Path(args.code) / "stores" / "duckdb_store.py").is_file():
        ap.error(f"--code {args.code}: not an evoagent checkout (no stores/duckdb_store.py)")
    if not (1 <= args.tasks <= 20_000 and 1 <= args.generations <= 200 and 0 <= args.warm < args.generations):
        ap.error("--tasks 1..20000, --generations 1..200, --warm below --generations")
    what = (f"evoagent's store from {args.code or 'this checkout'}" if args.store else
            f"DuckDB alone: memory_limit {args.memory_limit}, checkpoint_threshold {args.checkpoint_threshold}, "
            f"checkpoint {'each generation' if args.checkpoint or args.evict else 'automatic'}, "
            f"evict {'each generation' if args.evict else 'never'}, reopen every {args.reopen_every or 'never'}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; "
          f"duckdb {duckdb.__version__}; tasks {args.tasks} x {CHILDREN} children; {what}", flush=True)
    cols = ("gen", "rows", "rss MB", "duckdb MB", "table data MB", "rest MB")
    print(" ".join(f"{c:>13}" for c in cols), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rss = []
        run = store_generations if args.store else raw_generations
        for gen, scalar in run(str(Path(tmp) / "repro.duckdb"), args):
            rss.append(rss_mb())  # before the queries below, which read blocks back into the pool
            db = scalar("SELECT sum(memory_usage_bytes) FROM duckdb_memory()") / 2**20
            data = scalar("SELECT sum(memory_usage_bytes) FROM duckdb_memory() "
                          "WHERE tag IN ('BASE_TABLE', 'METADATA')") / 2**20
            rows = scalar("SELECT count(*) FROM trajectories")
            print(" ".join(f"{v:>13}" for v in (gen, f"{rows:,}", f"{rss[-1]:.1f}", f"{db:.1f}",
                                                 f"{data:.1f}", f"{rss[-1] - db:.1f}")), flush=True)
    print(f"RSS slope from generation {args.warm} to {args.generations}: {slope(rss[args.warm:]):.2f} MB/generation "
          f"(least squares; end to end {(rss[-1] - rss[args.warm]) / (args.generations - args.warm):.2f})", flush=True)


def slope(values: list[float]) -> float:
    """Least-squares growth per step: one generation's allocator noise (a few MB) moves it little."""
    n = len(values)
    mx, my = (n - 1) / 2, sum(values) / n
    return sum((x - mx) * (y - my) for x, y in enumerate(values)) / sum((x - mx) ** 2 for x in range(n))


if __name__ == "__main__":
    main()
