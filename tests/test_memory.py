"""Bounded memory: a campaign's resident memory and live Python objects stay flat across generations.

Runs ``experiments/bench_engine.py --rss`` in a fresh process (the figures are
that process's alone) and compares generation 3, after warm-up (every task's
gold result cached, the SQL workers started), with the last. The bounds are
generous (the machine is shared, allocators keep what they took); they catch
what the previous engine did: keep every committed trajectory in memory
(``Engine._known``), which at this scale (100 tasks) added ~2k live objects per generation.

The store's writer alone (``experiments/duckdb_writer_memory.py --store``: the same synthetic
campaign every run, no environment) is held to a bound: RSS grows at most 1 MB a generation over
20 generations (least squares from generation 3; the issue's goal, 0.5, is what it measures, see
``WRITER_MB_PER_GEN``), and DuckDB's own memory is emptied at each generation. The writer before that kept every appended row in DuckDB's memory
until a checkpoint (at 256 MB of WAL) and every block it had read after: at 150 tasks its RSS grew
1.5-2.1 MB a generation and its pool reached 35 MB by generation 20; this test fails on it.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WARM = 3
MB_BOUND, MB_PER_GEN = 20.0, 1.0  # RSS growth allowed from generation WARM to the last
OBJECTS_BOUND = 5_000  # live Python objects growth allowed over the same span


def memory_rows(stdout: str) -> list[dict[str, float]]:
    """The benchmark's table as numbers by column name, one row per committed generation."""
    from bench_engine import RSS_COLUMNS  # experiments/ is on the path (conftest)

    rows = [ln.split() for ln in stdout.splitlines()]
    rows = [r for r in rows if len(r) == len(RSS_COLUMNS) and r[0].isdigit()]
    return [dict(zip(RSS_COLUMNS, (float(v.replace(",", "")) for v in r))) for r in rows]


def memory_table(tasks: int, generations: int) -> list[dict[str, float]]:
    """Runs the benchmark in a fresh process; its rows."""
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "bench_engine.py"), "--rss",
                          "--tasks", str(tasks), "--generations", str(generations)],
                         capture_output=True, text=True, timeout=900, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return memory_rows(out.stdout)


# The goal is 0.5 MB a generation; the writer measures 0.14-0.45 at 150 tasks (five runs), but
# allocator noise moves a 20-generation slope by a few tenths (0.12-0.63 at 100 tasks), so the test
# holds it to twice that, which the old writer (1.5-2.1) still fails; DuckDB's own memory is exact.
WRITER_MB_PER_GEN = 1.0
WRITER_POOL_MB = 4.0  # DuckDB's memory right after a generation's commit and snapshot


def writer_table(tasks: int, generations: int) -> list[dict[str, float]]:
    """``duckdb_writer_memory.py --store`` in a fresh process; its rows by column name."""
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "duckdb_writer_memory.py"), "--store",
                          "--tasks", str(tasks), "--generations", str(generations)],
                         capture_output=True, text=True, timeout=900, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    cols = ("gen", "rows", "rss", "duckdb", "data", "rest")
    rows = [ln.split() for ln in out.stdout.splitlines()]
    return [dict(zip(cols, (float(v.replace(",", "")) for v in r))) for r in rows if len(r) == 6 and r[0].isdigit()]


@pytest.mark.slow  # ~30-60 s: 21 generations of 150 tasks x 6 children through the store
def test_writer_rss_slope_is_at_most_one_megabyte_per_generation_and_duckdb_memory_is_emptied() -> None:
    from duckdb_writer_memory import slope

    rows = writer_table(tasks=150, generations=20)
    assert [int(r["gen"]) for r in rows] == list(range(21))
    assert rows[-1]["rows"] > 0.99 * 21 * 150 * 6  # the generations were stored (a few children coincide)
    assert max(r["duckdb"] for r in rows) < WRITER_POOL_MB, rows  # the old writer's: 1.8 -> 35 MB
    growth = slope([r["rss"] for r in rows[WARM:]])  # the old writer's: 1.5-2.1 MB a generation
    assert growth <= WRITER_MB_PER_GEN, (growth, rows)


@pytest.mark.slow  # ~1-2 min: a campaign of 8 generations in a subprocess
def test_rss_and_python_objects_stay_flat_across_generations() -> None:
    rows = memory_table(tasks=100, generations=8)
    assert [int(r["gen"]) for r in rows] == list(range(9))
    warm, last = rows[WARM], rows[-1]
    assert last["trajectories"] > 1.5 * warm["trajectories"]  # the archive did grow meanwhile
    grew = last["rss MB"] - warm["rss MB"]
    assert grew < MB_BOUND + MB_PER_GEN * (len(rows) - 1 - WARM), rows
    assert last["py objects"] - warm["py objects"] < OBJECTS_BOUND, rows
