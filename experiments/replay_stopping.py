"""The stopping statistic of docs/benchmarks-search.md for both replay walks (``evoagent.envs.intercode_sql.stopping``).

    python experiments/replay_stopping.py --tasks 60 --seeds 10
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoagent.envs.intercode_sql.stopping import unexplained_gap  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=60)
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args()
    load, t0 = os.getloadavg()[0], time.perf_counter()
    rows = {k: unexplained_gap(k, args.tasks, args.seeds) for k in ("replay", "replay_recorder_stops")}
    print(f"{args.tasks} tasks x {args.seeds} seeds, explore 0.15, limit 10; {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load {load:.1f}; {time.perf_counter() - t0:.0f} s\n")
    print("| policy | runs submitted / hit limit | solved: submitted S | hit limit L | pool-explained gap | D |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, g in rows.items():
        print(f"| `{k}` | {g.submitted} / {g.hit_limit} | {100 * g.s_rate:.1f}% | {100 * g.l_rate:.1f}% | "
              f"{100 * g.expected_gap:+.1f} pts | {100 * g.d:+.1f} pts |")


if __name__ == "__main__":
    main()
