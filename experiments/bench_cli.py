"""How fast the CLI answers, against plain DuckDB in Python on the same store at the same moment.

    python experiments/bench_cli.py --store REFERENCE.duckdb [--runs 7] [--collect-runs 1]

The store is copied into a temporary folder first (never read in place, so a running
campaign is not disturbed and nothing is written beside it) and the copy migrated to this
version's schema if it is older. Each row is a fresh process,
timed wall-clock from start to exit; the commands are run interleaved, ``--runs`` times
each, so that a change of machine load touches all of them alike. Rows:

* ``evoagent --help`` (goal: <= 0.3 s on an idle machine);
* ``evoagent sql STORE "<one-row query>"`` vs ``python -c "import duckdb; ..."`` running the
  same query on the same file opened read-only (goal: <= 1.5x);
* ``evoagent status STORE`` vs ``python -c "import duckdb; ..."`` reading the ``generations``
  view status summarises (goal: <= 1.5x);
* ``python -m pytest --collect-only -q``: the default test collection (goal: <= 5 s).

Prints a Markdown table with the machine and the load average (``/proc/loadavg``) before and
after: timings taken under load are slower, and the ratios are the comparable figures. CPU
seconds (user + system, a command's worker process included) are printed too: on a shared
machine they move less with the neighbours' load than wall time does, though they cannot show
the overlap of ``sql``/``status``'s worker with the command's own start (two cores at work).
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUERY = "SELECT count(*) AS trajectories FROM trajectories"
STATUS_QUERY = "SELECT * FROM generations ORDER BY generation"


def _evoagent() -> list[str]:
    exe = Path(sys.executable).with_name("evoagent")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "evoagent.cli"]


def _duckdb(store: Path, query: str) -> list[str]:
    code = f"import duckdb; print(duckdb.connect({str(store)!r}, read_only=True).sql({query!r}).fetchall())"
    return [sys.executable, "-c", code]


def _wall(argv: list[str]) -> float:
    return _timed(argv)[0]


def _timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the command's children included once reaped)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, help="A campaign's store (copied, never written).")
    ap.add_argument("--runs", type=int, default=7, help="Runs of each command (interleaved).")
    ap.add_argument("--collect-runs", type=int, default=1, help="Runs of the test collection (0: skip).")
    args = ap.parse_args()

    before = load()
    with tempfile.TemporaryDirectory(prefix="bench_cli_") as tmp:
        store = Path(tmp) / "main.duckdb"
        shutil.copy(args.store, store)
        evo = _evoagent()
        subprocess.run(evo + ["migrate", str(store)], check=True, stdout=subprocess.DEVNULL)  # a store of an older schema
        cases = {
            "help": evo + ["--help"],
            "sql": evo + ["sql", str(store), QUERY],
            "sql_duckdb": _duckdb(store, QUERY),
            "status": evo + ["status", str(store)],
            "status_duckdb": _duckdb(store, STATUS_QUERY),
        }
        for argv in cases.values():  # warm the page cache and the bytecode caches: not timed
            _wall(argv)
        times: dict[str, list[float]] = {k: [] for k in cases}
        cpu: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.runs):
            for name, argv in cases.items():
                wall, used = _timed(argv)
                times[name].append(wall)
                cpu[name].append(used)
        collect = [_wall([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider"])
                   for _ in range(args.collect_runs)]
    after = load()

    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    used = {k: statistics.median(v) for k, v in cpu.items()}

    def row(what: str, key: str, goal: str, base: str | None = None) -> str:
        ratio = f"{med[key] / med[base]:.2f}x (min {low[key] / low[base]:.2f}x)" if base else ""
        cpu_ratio = f" ({used[key] / used[base]:.2f}x)" if base else ""
        return f"| {what} | {med[key]:.3f} | {low[key]:.3f} | {used[key]:.2f}{cpu_ratio} | {ratio} | {goal} |"

    print(f"machine: {machine()}; load average (1/5/15 min) before {before}, after {after}; "
          f"{args.runs} interleaved runs each, median and min wall seconds, median CPU seconds")
    print()
    print("| command | median s | min s | CPU s (vs DuckDB) | vs plain DuckDB | goal |")
    print("|---|---:|---:|---:|---:|---|")
    print(row("`evoagent --help`", "help", "<= 0.3 s idle"))
    print(row(f'`evoagent sql STORE "{QUERY}"`', "sql", "<= 1.5x", "sql_duckdb"))
    print(row("  the same in `python -c \"import duckdb; ...\"`", "sql_duckdb", ""))
    print(row("`evoagent status STORE`", "status", "<= 1.5x", "status_duckdb"))
    print(row(f'  `python -c "import duckdb; ..."` `{STATUS_QUERY}`', "status_duckdb", ""))
    if collect:
        print(f"| `python -m pytest --collect-only -q` | {statistics.median(collect):.3f} | {min(collect):.3f} | | "
              f"| <= 5 s |")


if __name__ == "__main__":
    main()
