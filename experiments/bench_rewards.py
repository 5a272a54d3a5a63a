"""Monte-Carlo scoring under load: batch sizes, batches per second, scoring vs acting.

Runs the main campaign on a sample of tasks with ``search.reward = fitness.reward
= mc`` at several concurrencies, each into a fresh store (so nothing is
cached), and reads the scorer's counters: queries sent to the model per batch,
batches per second, and the share of environment steps spent on Monte-Carlo
rollouts vs on the operators' own episodes.

    python experiments/bench_rewards.py --tasks 30 --generations 1 --concurrency 4 32 128
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoagent import campaign, launch  # noqa: E402
from evoagent.loop import Runner  # noqa: E402
from evoagent.rewards import build_signals  # noqa: E402
from stores import DuckDBStore  # noqa: E402

TOML = Path(__file__).with_name("intercode_sql.toml")


def run(tasks: int, generations: int, concurrency: int, k: int, workdir: Path) -> dict[str, float]:
    c = campaign.load(TOML, [f"tasks.sample={tasks}", f"budget.generations={generations}",
                             f"concurrency={concurrency}", "search.reward=mc", "fitness.reward=mc",
                             "fitness.aggregate=mean", f"rewards.mc.k={k}"])
    chosen = launch.select_tasks(c)
    ctx = launch.build_context(c, chosen)
    with DuckDBStore(workdir / f"mc-{concurrency}.duckdb") as store:
        store.put_meta("campaign", c.to_json())
        store.add_tasks(chosen)
        store.put_meta("upper_bound", "{}")
        ctx.search, ctx.fitness = build_signals(c, ctx, store)
        t0 = time.perf_counter()
        out = Runner(c, store, ctx).run()
        seconds = time.perf_counter() - t0
        stats = ctx.search.scorer.stats
        rows = store.scalar("SELECT count(*) FROM rewards WHERE reward_source LIKE 'mc(%)'")
    ctx.close()
    return {"seconds": seconds, "batches": stats.batches, "queries": stats.computed, "hits": stats.hits,
            "largest": stats.largest_batch, "scoring": stats.env_steps, "total": out.env_steps, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--generations", type=int, default=1)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[4, 32, 128])
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} cores; {args.tasks} tasks, {args.generations + 1} rounds, k={args.k}")
    print(f"{'concurrency':>11} {'queries':>8} {'batches':>8} {'per batch':>9} {'largest':>8} "
          f"{'batches/s':>9} {'scoring steps':>13} {'acting steps':>12} {'scoring share':>13} {'seconds':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.concurrency:
            r = run(args.tasks, args.generations, n, args.k, Path(tmp))
            assert r["rows"] == r["queries"], r  # each computed score stored once
            acting = r["total"] - r["scoring"]
            print(f"{n:>11} {r['queries']:>8} {r['batches']:>8} {r['queries'] / max(r['batches'], 1):>9.1f} "
                  f"{r['largest']:>8} {r['batches'] / r['seconds']:>9.2f} {r['scoring']:>13,} {acting:>12,} "
                  f"{r['scoring'] / max(r['total'], 1):>13.1%} {r['seconds']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
