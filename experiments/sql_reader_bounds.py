"""How bounded `evoagent sql` is: peak resident memory of the command (both processes), wall time,
and how long Ctrl-C takes to return, on hostile queries. Prints a table (docs/safety-cli.md).

    python experiments/sql_reader_bounds.py [--runs 3]

Run it on a quiet machine and say the load (printed with the table): the figures are wall times.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

EVOAGENT = [sys.executable, "-c", "from evoagent.cli import main; main()"]


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo += [int(c) for c in fh.read().split()]
        except OSError:
            pass
    return out


def _rss(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next((int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmRSS:")), 0)
        except OSError:
            pass
    return total


def measure(args: list[str], interrupt_after: float | None = None) -> tuple[int, float, int, float | None]:
    """Exit status, wall seconds, peak resident bytes of the process tree, seconds from SIGINT to exit."""
    t0 = time.monotonic()
    proc = subprocess.Popen([*EVOAGENT, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _rss(_tree(proc.pid)))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    took_sigint = None
    if interrupt_after is not None:
        while len(_tree(proc.pid)) < 2 and proc.poll() is None:  # the command and its query worker
            time.sleep(0.02)
        time.sleep(interrupt_after)
        t1 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait()
        took_sigint = time.monotonic() - t1
    code = proc.wait()
    sampler.join()
    return code, time.monotonic() - t0, peak[0], took_sigint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    opts = ap.parse_args()
    from stores import DuckDBStore

    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "s.duckdb")
        DuckDBStore(store).close()
        cases = [
            ("SELECT 1 (start-up)", ["sql", store, "SELECT 1"], None),
            ("range(1e8) as a table", ["sql", store, "SELECT * FROM range(100000000)"], None),
            ("repeat('x', 1e7) x 300 rows", ["sql", store, "SELECT repeat('x', 10000000) FROM range(300)"], None),
            ("count(range(1e12)), --timeout 2", ["sql", store, "SELECT count(*) FROM range(1000000000000)",
                                                 "--timeout", "2"], None),
            ("count(range(1e12)), Ctrl-C after 1 s", ["sql", store, "SELECT count(*) FROM range(1000000000000)",
                                                      "--timeout", "0"], 1.0),
        ]
        print(f"machine: {os.cpu_count()} CPUs; load before: {os.getloadavg()[0]:.2f}; {opts.runs} runs, median")
        print(f"{'case':<40} {'exit':>4} {'wall s':>7} {'peak RSS MB':>12} {'Ctrl-C to exit s':>17}")
        for name, args, after in cases:
            runs = [measure(args, after) for _ in range(opts.runs)]
            code = runs[-1][0]
            wall = statistics.median(r[1] for r in runs)
            peak = max(r[2] for r in runs)
            sig = statistics.median(r[3] for r in runs) if after is not None else None
            print(f"{name:<40} {code:>4} {wall:>7.2f} {peak / 1e6:>12.0f} {'-' if sig is None else f'{sig:.2f}':>17}")
        print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
