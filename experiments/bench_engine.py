"""Engine overhead: a campaign's time vs executing the same actions directly.

Runs a campaign in-process with an environment wrapper that logs every
episode the operators execute (task + actions), then times executing exactly
those episodes with a bare loop over the same environment (reset, step each
action, submit), at the same concurrency. The ratio is what planning,
selection, policies, the journal commits and snapshots cost on top of the
environment itself. Goal: <= 1.15x. Caches are warm on both sides (SQL
translations, gold results) except the SQL pools' kept replies
(``sandbox.RESULT_CACHE_BYTES``), which both sides start without: each runs
every distinct statement once; ``executed`` counts what the workers ran for
the campaign, ``direct executed`` for the bare loop (the same, give or take
statements two threads met at once). The CPU columns are this process's CPU
time (all its threads; not the SQL workers'): the engine's own Python beside the
bare loop's, a figure that a loaded machine disturbs less than wall time.
``--no-kept-replies``: no pool keeps replies, every statement runs (the
environment as it was before the kept replies).

With ``--rss`` it instead runs one campaign and prints, after each committed
generation, the process's resident memory, the part of it that is DuckDB's
buffer pool (blocks of the store file it has read; bounded by the writer's
``memory_limit``, ``--store-memory``), the rest, the part of the rest that is the
SQL workers' kept replies (``sandbox.RESULT_CACHE_BYTES`` per pool), and the number of live Python
objects: the runner keeps only the current round's parents, so the rest and
the object count stay flat while the archive grows.

    python experiments/bench_engine.py --tasks 200 --generations 4 [--no-kept-replies]
    python experiments/bench_engine.py --rss --tasks 300 --generations 20 [--store-memory 16MB]
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoagent import campaign, envs, launch  # noqa: E402
from evoagent.envs.intercode_sql import sandbox  # noqa: E402
from evoagent.loop import Runner  # noqa: E402
from evoagent.rewards import build_signals  # noqa: E402
from stores import DuckDBStore  # noqa: E402

TOML = Path(__file__).with_name("intercode_sql.toml")


class Recording:
    """Passes every call to the real environment and logs each episode."""

    def __init__(self, inner: Any, log: list[list[Any]]):
        self.inner, self.log, self.episode = inner, log, None

    def reset(self, task: Any) -> str:
        self.episode = [task]
        self.log.append(self.episode)
        return self.inner.reset(task)

    def step(self, action: str) -> tuple:
        if action != "submit":
            self.episode.append(action)
        return self.inner.step(action)


def campaign_run(tasks: int, generations: int, concurrency: int, workdir: Path,
                 tag: str = "") -> tuple[float, list, int]:
    c = campaign.load(TOML, [f"tasks.sample={tasks}", f"budget.generations={generations}",
                             f"concurrency={concurrency}"])
    chosen = launch.select_tasks(c)
    ctx = launch.build_context(c, chosen)
    with DuckDBStore(workdir / f"bench-{concurrency}{tag}.duckdb") as store:
        store.put_meta("campaign", c.to_json())
        store.add_tasks(chosen)
        store.put_meta("upper_bound", "{}")
        for t in chosen:  # warm the gold-result cache, as any long campaign has it warm
            env = ctx.env()
            env.reset(t)
            env.step("submit")
        log: list[list[Any]] = []
        inner = ctx.make_env
        ctx.make_env = lambda: Recording(inner(), log)
        ctx._local.__dict__.clear()
        ctx.search, ctx.fitness = build_signals(c, ctx, store)
        sandbox.forget_replies()
        cpu0, t0 = time.process_time(), time.perf_counter()
        out = Runner(c, store, ctx).run()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return seconds, cpu, log, out.env_steps


def rss_mb() -> float:
    """This process's resident memory now (not the peak), from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


RSS_COLUMNS = ("gen", "rss MB", "duckdb MB", "rest MB", "kept MB", "py objects", "trajectories", "steps", "seconds")


def rss_run(tasks: int, generations: int, concurrency: int, workdir: Path, store_memory: str | None) -> None:
    """One campaign; memory and stored trajectories after each committed generation."""
    c = campaign.load(TOML, [f"tasks.sample={tasks}", f"budget.generations={generations}",
                             f"concurrency={concurrency}"])
    chosen = launch.select_tasks(c)
    ctx = launch.build_context(c, chosen)
    print(" ".join(f"{h:>12}" for h in RSS_COLUMNS), flush=True)
    limit = {"memory_limit": store_memory} if store_memory else {}
    with DuckDBStore(workdir / "rss.duckdb", **limit) as store:
        store.put_meta("campaign", c.to_json())
        store.add_tasks(chosen)
        store.put_meta("upper_bound", "{}")
        ctx.search, ctx.fitness = build_signals(c, ctx, store)
        seen: set[int] = set()
        t0 = time.perf_counter()

        def progress(info: dict[str, Any]) -> None:
            last = store.last_committed_generation()
            if last is not None and last not in seen:
                seen.add(last)
                n = store.scalar("SELECT count(*) FROM trajectories")
                k = store.scalar("SELECT count(*) FROM steps")
                db = float(store.scalar("SELECT sum(memory_usage_bytes) FROM duckdb_memory()")) / 2**20
                rss = rss_mb()
                kept = sum(pool._kept for pool in list(sandbox._pools.values())) / 2**20  # the SQL replies kept
                row = (last, f"{rss:.0f}", f"{db:.0f}", f"{rss - db:.0f}", f"{kept:.0f}", f"{len(gc.get_objects()):,}",
                       f"{n:,}", f"{k:,}", f"{time.perf_counter() - t0:.0f}")
                print(" ".join(f"{v:>12}" for v in row), flush=True)

        Runner(c, store, ctx, on_progress=progress).run()
        progress({})


def direct_run(log: list[list[Any]], concurrency: int) -> tuple[float, float]:
    c = campaign.load(TOML)
    make = lambda: envs.make_env(c)  # noqa: E731 - the campaign's own environment and env.* keys
    chunks = [log[i::concurrency] for i in range(concurrency)]

    def play(episodes: list[list[Any]]) -> None:
        env = make()
        for task, *actions in episodes:
            env.reset(task)
            for a in actions:
                env.step(a)
            env.step("submit")

    sandbox.forget_replies()
    cpu0, t0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(play, chunks))
    return time.perf_counter() - t0, time.process_time() - cpu0


def executed() -> int:
    """Statements the SQL workers have run so far (the rest were answered from kept replies)."""
    return sum(pool.executed for pool in sandbox._pools.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--rss", action="store_true", help="print resident memory per generation instead")
    ap.add_argument("--store-memory", default=None, metavar="SIZE",
                    help="with --rss: the store's DuckDB memory_limit (default: the store's, 512MB)")
    ap.add_argument("--no-kept-replies", action="store_true",
                    help="the SQL workers' pools keep no replies: every statement runs on both sides")
    args = ap.parse_args()
    if args.no_kept_replies:
        sandbox.RESULT_CACHE_BYTES = 0  # before any pool exists
    if args.rss:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
                  f"{os.getloadavg()[0]:.1f} at start", flush=True)
            rss_run(args.tasks, args.generations, args.concurrency[0], Path(tmp), args.store_memory)
        return
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'concurrency':>11} {'episodes':>9} {'env steps':>10} {'executed':>9} {'direct executed':>15} "
          f"{'campaign s':>11} {'direct s':>9} {'ratio':>6} {'campaign cpu s':>14} {'direct cpu s':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        # A first, untimed run warms what any long campaign has warm (SQL translations,
        # gold results) for both sides; the same seed replays the same episodes.
        campaign_run(args.tasks, args.generations, 1, Path(tmp), tag="warm")
        for n in args.concurrency:
            before = executed()
            seconds, cpu, log, steps = campaign_run(args.tasks, args.generations, n, Path(tmp))
            ran = executed() - before
            direct, direct_cpu = direct_run(log, n)
            direct_ran = executed() - before - ran
            print(f"{n:>11} {len(log):>9} {steps:>10} {ran:>9} {direct_ran:>15} {seconds:>11.2f} {direct:>9.2f} "
                  f"{seconds / direct:>6.2f} {cpu:>14.2f} {direct_cpu:>12.2f}")


if __name__ == "__main__":
    main()
