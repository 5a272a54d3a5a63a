"""Threads vs Ray actors on this machine: items per second, and Ray's per-item overhead.

Runs the same replay campaign (InterCode-SQL, a seeded sample of tasks) with the
thread executor and with the Ray executor on 1 and 2 actors, all at the same
``concurrency``, and prints items per second of the runner (Ray's start-up and the
actors' Context building are timed apart, in "start s"). Then, on one actor, the
overhead of a work item sent to it (the item, its parents and its result through
Ray) against the same items run in this process one at a time, and the round trip
of an empty actor call. Every Ray run checks that its final population equals the
thread run's.

    python experiments/bench_ray.py --tasks 30 --generations 2
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CAMPAIGN = """
name = "bench-ray"
seed = 5
mu = 3
lambda = 4
concurrency = {concurrency}
[env]
kind = "intercode_sql"
[tasks]
sample = {tasks}
[policy]
kind = "replay"
explore = 0.2
[budget]
generations = {generations}
"""


def _on_ray(c, actors: int):  # type: ignore[no-untyped-def]
    """The campaign on ``actors`` Ray actors, built again so that the Ray executor's keys get their defaults."""
    from evoagent import campaign

    return campaign.build({**c.values, "executor.kind": "ray", "executor.actors": actors})


def _run(c, store_path: Path, actors: int | None):  # type: ignore[no-untyped-def]
    """(start-up seconds, runner seconds, items run, population) of one campaign."""
    from evoagent import launch
    from evoagent.executors import RAY
    from evoagent.executors.ray import start
    from evoagent.loop import Runner, run_item
    from evoagent.rewards import build_signals
    from stores import DuckDBStore

    if actors:
        c = _on_ray(c, actors)
    ctx = launch.build_context(c, launch.select_tasks(c))
    with DuckDBStore(store_path) as store:
        store.put_meta("campaign", c.to_json())
        store.add_tasks(list(ctx.tasks.values()))
        ctx.search, ctx.fitness = build_signals(c, ctx, store)
        t0 = time.perf_counter()
        pool = None
        if actors:
            pool = start(c.settings_for(RAY), ctx, lambda stage: None, run_item, c.to_json())
            ctx.closers.insert(0, pool.close)
            for i in range(actors):  # each actor has built its Context
                pool.worker_pid(i)
        startup = time.perf_counter() - t0
        try:
            out = Runner(c, store, ctx, executor=pool.executor if pool else None).run()
        finally:
            ctx.close()
        items = int(store.scalar("SELECT count(*) FROM work_items WHERE status <> 'pending'"))
        population = store.query("SELECT generation, task_id, traj_id, rank FROM population ORDER BY ALL").to_pylist()
    assert out.status == "completed", out.status
    return startup, out.seconds, items, population


def _overhead(c, store_path: Path, n: int) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """Mean ms per item here and on one actor (one at a time), and of an empty actor call."""
    import ray

    from evoagent import launch
    from evoagent.executors import RAY
    from evoagent.executors.ray import start
    from evoagent.loop import run_item
    from evoagent.rewards import build_signals
    from stores import DuckDBStore

    c = _on_ray(c, 1)
    ctx = launch.build_context(c, launch.select_tasks(c))
    with DuckDBStore(store_path) as store:
        items = store.planned(0)[:n]
        ctx.search, ctx.fitness = build_signals(c, ctx, store)
        pool = start(c.settings_for(RAY), ctx, lambda stage: None, run_item, c.to_json())
        ctx.closers.insert(0, pool.close)
        try:
            actor = pool.actors[0]
            pool.worker_pid(0)
            for item in items[:3]:  # warm both sides (environments, SQL workers)
                run_item(item, [], ctx)
                ray.get(actor.run.remote(item, []))

            def mean_ms(fn) -> float:  # type: ignore[no-untyped-def]
                times = []
                for item in items:
                    t = time.perf_counter()
                    fn(item)
                    times.append(time.perf_counter() - t)
                return 1000 * statistics.mean(times)

            local = mean_ms(lambda item: run_item(item, [], ctx))
            remote = mean_ms(lambda item: ray.get(actor.run.remote(item, [])))
            empty = mean_ms(lambda item: ray.get(actor.pid.remote()))
        finally:
            ctx.close()
    return local, remote, empty


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--overhead-items", type=int, default=40)
    args = ap.parse_args()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    from evoagent import campaign

    c = campaign.build(__import__("tomllib").loads(CAMPAIGN.format(**vars(args))))
    tmp = Path(tempfile.mkdtemp(prefix="evoray-bench-"))
    t = time.perf_counter()
    ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, _temp_dir=str(tmp / "r"),
             _node_ip_address="127.0.0.1", log_to_driver=False, logging_level=logging.ERROR)
    ray_init = time.perf_counter() - t
    try:
        rows = []
        ref = None
        for name, actors in (("threads", None), ("ray", 1), ("ray", 2)):
            startup, seconds, items, population = _run(c, tmp / f"{name}{actors or ''}.duckdb", actors)
            ref = ref if ref is not None else population
            rows.append((name, actors or "-", items, startup, seconds, items / seconds, population == ref))
        local, remote, empty = _overhead(c, tmp / "threads.duckdb", args.overhead_items)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"campaign: replay, {args.tasks} tasks, mu 3, lambda 4, {args.generations} generations, "
          f"concurrency {args.concurrency}; ray.init (local, {os.cpu_count()} CPUs): {ray_init:.1f} s; "
          f"load average at the end: {os.getloadavg()[0]:.1f}\n")
    print("| executor | actors | items | start s | run s | items/s | same population |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, actors, items, startup, seconds, rate, same in rows:
        print(f"| {name} | {actors} | {items} | {startup:.1f} | {seconds:.1f} | {rate:.1f} | {same} |")
    print(f"\none item at a time ({args.overhead_items} items of generation 0): {local:.1f} ms here, "
          f"{remote:.1f} ms on a Ray actor: {remote - local:+.1f} ms per item; empty actor call {empty:.2f} ms")


if __name__ == "__main__":
    main()
