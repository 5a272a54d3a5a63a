"""Store ingest rate vs DuckDB's raw Arrow append of the same rows.

    python experiments/bench_store.py --steps 1000000

Times, on the same synthetic rows (realistic string sizes: ~60-char SQL
actions, ~120-char observations):

* ``raw append``: ``INSERT INTO t SELECT * FROM arrow_table`` into identically
  typed tables of a fresh DuckDB file, one transaction per batch;
* ``store.write``: :meth:`DuckDBStore.write` of prebuilt ``TrajectoryBatch``es
  (dedupe included, snapshots held off with ``snapshot_every_s=1e9``);
* ``from_trajectories``: building those batches from Python records;
* one ``store.snapshot()`` after the load (a first, full publish).

The synthetic generator (``synth_batch``) is shared with bench_queries.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evoagent.trajectory import Step, Trajectory  # noqa: E402
from stores import DuckDBStore, TrajectoryBatch  # noqa: E402
from stores.batch import LINEAGE_SCHEMA, REWARD_SCHEMA, STEP_SCHEMA, TRAJECTORY_SCHEMA  # noqa: E402
from stores.schema import RAW_TABLES  # noqa: E402

SOURCES = ["replay:spider", "claude-haiku", "claude-sonnet", "gpt-4o-mini", "evolve"]
OPERATORS = ["init", "revise", "recombine", "refine"]
HARDNESS = ["easy", "medium", "hard", "extra"]
_COLS = ["name", "age", "city", "salary", "country", "title", "year", "price"]
_TABLES = ["singer", "concert", "stadium", "employee", "orders", "products", "students"]
_NAMES = ["Alice", "Bob", "Carmen", "Dmitri", "Eve", "Farah", "Gustav", "Hiro"]


def _s(a: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(a), pa.string())


def _pick(vocab: list[str], idx: np.ndarray) -> pa.Array:
    return pa.array(vocab).take(pa.array(idx))


def traj_ids(index: np.ndarray) -> pa.Array:
    """Unique, random-looking 32-char ids for trajectory numbers (a bijection of uint64)."""
    scrambled = index.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return pc.utf8_lpad(_s(scrambled), 32, "0")


def synth_batch(
    start: int, n: int, rng: np.random.Generator, *, steps: int | None = 5, n_tasks: int = 1000,
    generations: int = 20, total: int | None = None,
) -> TrajectoryBatch:
    """Trajectories ``start .. start+n`` as Arrow; ``steps=None`` draws 1..9 steps (mean 5)."""
    total = total or start + n
    idx = np.arange(start, start + n, dtype=np.int64)
    n_steps = np.full(n, steps, np.int32) if steps else rng.integers(1, 10, n, dtype=np.int32)
    ids = traj_ids(idx)
    task = rng.integers(0, n_tasks, n)
    task_ids = pc.binary_join_element_wise("spider-", pc.utf8_lpad(_s(task), 4, "0"), "")
    # Generation grows with the trajectory number, like a campaign does.
    gen = (idx * generations // total).astype(np.int32)
    op = np.where(gen == 0, 0, rng.integers(1, len(OPERATORS), n))
    src = rng.integers(0, len(SOURCES), n)
    hard = task % len(HARDNESS)
    p_solve = np.array([0.7, 0.5, 0.3, 0.15])[hard] + 0.01 * gen
    solved = rng.random(n) < p_solve
    outcome = np.where(solved, 1.0, np.round(rng.random(n) * 0.8, 2))
    in_tok = rng.integers(500, 4000, n)
    out_tok = rng.integers(50, 600, n)
    trajectories = pa.table([
        ids, _pick(SOURCES, src), task_ids, pa.array(["bench"] * n),
        pa.array(gen, pa.int32()), _pick(OPERATORS, op), pa.array(idx % 100_000, pa.int32()),
        pa.array(idx, pa.int64()), pa.array(outcome), pa.array(n_steps, pa.int32()),
        pa.array(in_tok * 3e-6 + out_tok * 1.5e-5), pa.array(in_tok), pa.array(out_tok),
        pa.array(np.full(n, np.datetime64("2025-01-01T00:00:00", "us")) + idx.astype("timedelta64[ms]")),
    ], schema=TRAJECTORY_SCHEMA)

    m = int(n_steps.sum())
    owner = np.repeat(np.arange(n), n_steps)
    first = np.repeat(np.cumsum(n_steps) - n_steps, n_steps)
    step_idx = (np.arange(m) - first).astype(np.int32)
    num = _s(rng.integers(1, 100_000, m))
    action = pc.binary_join_element_wise(
        "SELECT ", _pick(_COLS, rng.integers(0, len(_COLS), m)), ", count(*) FROM ",
        _pick(_TABLES, rng.integers(0, len(_TABLES), m)), " WHERE id > ", num,
        " GROUP BY 1 LIMIT ", _s(rng.integers(1, 50, m)), "",
    )
    observation = pc.binary_join_element_wise(
        "[('", _pick(_NAMES, rng.integers(0, len(_NAMES), m)), "', ", num, ", '",
        _pick(_TABLES, rng.integers(0, len(_TABLES), m)), "', ", _s(rng.integers(0, 10**9, m)),
        "), ('", _pick(_NAMES, rng.integers(0, len(_NAMES), m)), "', ", _s(rng.integers(0, 10**6, m)),
        ", 'x'), ... 12 rows in ", _s(rng.integers(1, 999, m)), " ms]", "",
    )
    valid = rng.random(m) > 0.12
    steps_t = pa.table([
        ids.take(pa.array(owner)), pa.array(step_idx), pa.array([""] * m, pa.string()),
        action, observation, pa.array(np.where(valid, np.round(rng.random(m), 2), 0.0)),
        pa.array(valid), pa.nulls(m, pa.float64()),
    ], schema=STEP_SCHEMA)

    # Lineage: children (generation > 0) have one or two earlier parents.
    kids = np.nonzero(gen > 0)[0]
    two = rng.random(len(kids)) < 0.4
    child = np.concatenate([kids, kids[two]])
    parent_no = np.maximum(0, idx[child] - rng.integers(1, max(2, total // generations), len(child)))
    lineage = pa.table([
        ids.take(pa.array(child)), traj_ids(parent_no), _pick(OPERATORS, op[child]),
        pa.array(gen[child], pa.int32()), pa.array(idx[child] % 100_000, pa.int32()),
        pa.array(np.concatenate([np.zeros(len(kids)), np.ones(int(two.sum()))]), pa.int32()),
    ], schema=LINEAGE_SCHEMA)
    rewards = pa.table([ids, pa.array(["env"] * n), pa.array(outcome), pa.nulls(n, pa.int32())],
                       schema=REWARD_SCHEMA)
    return TrajectoryBatch(trajectories, steps_t, lineage, rewards)


def to_records(b: TrajectoryBatch) -> list[Trajectory]:
    """Python records equal to a synthetic batch (ids recomputed from content, parents kept)."""
    steps: dict[str, list[Step]] = {}
    for s in b.steps.to_pylist():
        steps.setdefault(s.pop("traj_id"), []).append(Step(**s))
    parents: dict[str, list[str]] = {}
    for r in b.lineage.select(["child_id", "parent_id"]).to_pylist():
        parents.setdefault(r["child_id"], []).append(r["parent_id"])
    keep = ("task_id", "source", "generation", "operator", "seed", "outcome_reward",
            "cost_usd", "input_tokens", "output_tokens")
    return [
        Trajectory(steps=tuple(steps[t["traj_id"]]), parents=tuple(parents.get(t["traj_id"], ())),
                   **{k: t[k] for k in keep})
        for t in b.trajectories.to_pylist()
    ]


def raw_append(path: str, batches: list[TrajectoryBatch]) -> tuple[float, float]:
    con = duckdb.connect(path)
    for name in ("trajectories", "steps", "lineage", "rewards"):
        con.execute(f"CREATE TABLE {name} ({RAW_TABLES[name]})")
    t0, c0 = time.perf_counter(), time.process_time()
    for b in batches:
        con.execute("BEGIN TRANSACTION")
        for name in ("trajectories", "steps", "lineage", "rewards"):
            con.register("_arrow", getattr(b, name))
            con.execute(f"INSERT INTO {name} SELECT * FROM _arrow")
            con.unregister("_arrow")
        con.execute("COMMIT")
    con.execute("CHECKPOINT")
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    con.close()
    return dt, cpu


def _threads() -> int:
    return duckdb.connect().execute("SELECT current_setting('threads')").fetchall()[0][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1_000_000, help="total synthetic steps")
    ap.add_argument("--steps-per-traj", type=int, default=5)
    ap.add_argument("--batch", type=int, default=10_000, help="trajectories per write")
    ap.add_argument("--dir", default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--skip-records", action="store_true", help="skip the from_trajectories timing")
    args = ap.parse_args()

    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_store_"))
    work.mkdir(parents=True, exist_ok=True)
    n_traj = args.steps // args.steps_per_traj
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    batches = [synth_batch(s, min(args.batch, n_traj - s), rng, steps=args.steps_per_traj, total=n_traj)
               for s in range(0, n_traj, args.batch)]
    gen_s = time.perf_counter() - t0
    n_steps = sum(b.n_steps for b in batches)
    mb = sum(b.steps.nbytes + b.trajectories.nbytes + b.lineage.nbytes + b.rewards.nbytes
             for b in batches) / 2**20
    print(f"{n_traj:,} trajectories, {n_steps:,} steps, {mb:,.0f} MiB of Arrow "
          f"in {len(batches)} batches (generated in {gen_s:.1f} s); threads={_threads()}")

    rows = []
    raw_s, raw_cpu = raw_append(str(work / "raw.duckdb"), batches)
    rows.append(("raw Arrow append (INSERT ... SELECT * FROM arrow)", raw_s, raw_cpu))

    path = work / "store.duckdb"
    store = DuckDBStore(path, snapshot_every_s=1e9)
    t0, c0 = time.perf_counter(), time.process_time()
    for b in batches:
        store.write(b)
    store._con.execute("CHECKPOINT")  # same durability point as the raw run
    write_s, write_cpu = time.perf_counter() - t0, time.process_time() - c0
    rows.append(("store.write(TrajectoryBatch) incl. dedupe", write_s, write_cpu))
    assert store.scalar("SELECT count(*) FROM steps") == n_steps
    t0 = time.perf_counter()
    store.snapshot()
    snap_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for b in batches[:5]:  # all duplicates: the dedupe path with nothing new
        store.write(b)
    dup_s = (time.perf_counter() - t0) / 5 * len(batches)
    store.close()

    rec_s = rec_cpu = None
    if not args.skip_records:
        recs = [to_records(b) for b in batches]
        t0, c0 = time.perf_counter(), time.process_time()
        for r in recs:
            TrajectoryBatch.from_trajectories(r, campaign="bench")
        rec_s, rec_cpu = time.perf_counter() - t0, time.process_time() - c0
        del recs

    print()
    # CPU seconds (every thread of this process) move less than wall time on a shared machine.
    print(f"{'path':<52} {'seconds':>8} {'steps/s':>12} {'vs raw':>7} {'CPU s':>7} {'CPU vs raw':>10}")
    print("-" * 101)
    for name, s, cpu in rows:
        print(f"{name:<52} {s:>8.2f} {n_steps / s:>12,.0f} {raw_s / s:>6.2f}x {cpu:>7.2f} {raw_cpu / cpu:>9.2f}x")
    print(f"{'store.write, all-duplicate batches (extrapolated)':<52} {dup_s:>8.2f} {n_steps / dup_s:>12,.0f} {raw_s / dup_s:>6.2f}x")
    if rec_s is not None:
        print(f"{'TrajectoryBatch.from_trajectories (records->Arrow)':<52} {rec_s:>8.2f} {n_steps / rec_s:>12,.0f} "
              f"{'':>7} {rec_cpu:>7.2f}")
        both, both_cpu = write_s + rec_s, write_cpu + rec_cpu
        print(f"{'from_trajectories + store.write':<52} {both:>8.2f} {n_steps / both:>12,.0f} {raw_s / both:>6.2f}x "
              f"{both_cpu:>7.2f} {raw_cpu / both_cpu:>9.2f}x")
    print(f"{'store.snapshot() after the load (first publish)':<52} {snap_s:>8.2f} {n_steps / snap_s:>12,.0f}")
    print()
    ratio = raw_s / write_s
    print(f"store.write / raw append throughput ratio: {ratio:.2f}x (goal >= 0.80) -> "
          f"{'OK' if ratio >= 0.8 else 'BELOW GOAL'}")
    sizes = {p.name: os.path.getsize(p) / 2**20 for p in work.glob("*.duckdb")}
    snap_mb = sum(f.stat().st_size for f in (work / "store.duckdb.snapshot").rglob("*") if f.is_file()) / 2**20
    print("file sizes: " + ", ".join(f"{k} {v:,.0f} MiB" for k, v in sizes.items())
          + f", snapshot {snap_mb:,.0f} MiB  ({work})")


if __name__ == "__main__":
    main()
