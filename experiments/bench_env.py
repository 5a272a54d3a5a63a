"""Per-step cost of InterCodeSQLEnv versus the same translated SQL on a bare DuckDB cursor.

Every timed step runs its statement on a SQL worker: the pools' kept replies are dropped before
each round (a repeated statement would otherwise be answered without one).

Run: python experiments/bench_env.py [--threads 8]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from evoagent.envs.intercode_sql import dialect
from evoagent.envs.intercode_sql.data import load_tasks
from evoagent.envs.intercode_sql.env import InterCodeSQLEnv, shared_connection
from evoagent.envs.intercode_sql.sandbox import forget_replies, pool_pids


def _time_env(tasks, env):
    out = []
    for t in tasks:
        env.reset(t)
        t0 = time.perf_counter()
        env.step(t.gold)
        out.append(time.perf_counter() - t0)
    return out


def _time_bare(tasks, sqls, cur):
    out = []
    for t, sql in zip(tasks, sqls):
        cur.execute(f'USE "{t.meta["db"]}"')
        t0 = time.perf_counter()
        try:
            cur.execute(sql)
            cur.fetchall()
        except Exception:  # noqa: BLE001 - golds MySQL also rejects
            pass
        out.append(time.perf_counter() - t0)
    return out


def _workers_cpu() -> float:
    """CPU seconds used so far by this process's live SQL worker processes (Linux /proc)."""
    total = 0.0
    for pid in pool_pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tasks = load_tasks()
    env = InterCodeSQLEnv()
    for t in tasks:  # warm: gold cache, translation cache, executed rewrites
        env.reset(t)
        env.step(t.gold)
    cur = shared_connection().cursor()
    cur.execute(dialect.NUMERIC_MACRO)
    sqls = []
    for t in tasks:  # the SQL the env finally ran (after MySQL rewrites), translated once
        sqls.append(dialect.plan(t.gold).arg)
    env_t, bare_t = [], []
    env_cpu = bare_cpu = 0.0
    for _ in range(args.rounds):
        forget_replies()
        c0, w0 = time.process_time(), _workers_cpu()
        env_t += _time_env(tasks, env)
        c1, w1 = time.process_time(), _workers_cpu()
        bare_t += _time_bare(tasks, sqls, cur)
        env_cpu += (c1 - c0) + (w1 - w0)
        bare_cpu += time.process_time() - c1
    p50e, p50b = statistics.median(env_t), statistics.median(bare_t)
    me, mb = statistics.fmean(env_t), statistics.fmean(bare_t)
    print(f"{'':24}{'p50 (us)':>12}{'mean (us)':>12}")
    print(f"{'env.step(gold)':24}{p50e * 1e6:12.1f}{me * 1e6:12.1f}")
    print(f"{'bare DuckDB cursor':24}{p50b * 1e6:12.1f}{mb * 1e6:12.1f}")
    print(f"{'overhead (us)':24}{(p50e - p50b) * 1e6:12.1f}{(me - mb) * 1e6:12.1f}")
    print(f"{'ratio env/bare':24}{p50e / p50b:12.2f}{me / mb:12.2f}")
    n = len(env_t)  # CPU (this process and the env's SQL workers): what a loaded machine pays
    print(f"CPU per step: env {env_cpu / n * 1e6:.1f} us (with its SQL worker), bare {bare_cpu / n * 1e6:.1f} us")

    def worker(chunk):
        e = InterCodeSQLEnv()
        for t in chunk:
            e.reset(t)
            e.step(t.gold)
        e.close()
        return len(chunk)

    for n in (1, args.threads):
        chunks = [tasks[i::n] for i in range(n)]
        forget_replies()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            steps = sum(pool.map(worker, chunks))
        dt = time.perf_counter() - t0
        print(f"threads={n:<3} {steps} steps in {dt:.2f}s = {steps / dt:,.0f} steps/s")


if __name__ == "__main__":
    main()
