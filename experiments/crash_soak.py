"""Crash soak: SIGKILL a campaign at random moments, resume each time, compare.

Runs the campaign once uninterrupted, then again as separate `evoagent`
processes killed with SIGKILL after random delays (during start-up, planning,
item execution, commits and snapshots alike) and resumed, until the campaign
completes. Prints a table and checks that the final `population` equals the
uninterrupted run's and that no work item was committed twice.

    python experiments/crash_soak.py --kills 50 --generations 12
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = """
name = "soak"
seed = 11
mu = 3
lambda = 4
concurrency = 3
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


@dataclass
class SoakReport:
    kills: int
    runs: int
    seconds: float
    identical: bool
    double_commits: int
    moments: list[str] = field(default_factory=list)


def cli(*args: str) -> list[str]:
    """Argv running the evoagent CLI from this checkout with this interpreter."""
    return [sys.executable, "-m", "evoagent.cli", *args]


def cli_env() -> dict[str, str]:
    """The environment for it: this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _state(store: Path) -> tuple[bool, str]:
    """(has a campaign, where it stands) — read with the writer dead, so open the file."""
    from stores import DuckDBStore

    if not store.exists():
        return False, "before the store existed"
    with DuckDBStore(store) as s:
        if s.get_meta("campaign") is None:
            return False, "before the campaign was recorded"
        last = s.last_committed_generation()
        planned = s.scalar("SELECT max(generation) FROM raw.work_plan")
        done = s.scalar("SELECT count(*) FROM raw.work_results WHERE generation = ?", [planned]) if planned is not None else 0
        total = s.scalar("SELECT count(*) FROM raw.work_plan WHERE generation = ?", [planned]) if planned is not None else 0
        if planned is None:
            return True, "before the first plan"
        if last == planned:
            return True, f"after generation {last} committed"
        return True, f"mid-generation {planned} ({done}/{total} items)"


def _population(store: Path) -> list[tuple]:
    from stores import DuckDBStore

    with DuckDBStore(store) as s:
        return [tuple(r.values()) for r in s.query(
            "SELECT generation, task_id, traj_id, rank FROM population ORDER BY ALL").to_pylist()]


def soak(workdir: Path, *, kills: int = 20, tasks: int = 10, generations: int = 10,
         seed: int = 0, max_delay: float = 5.0) -> SoakReport:
    """Run the soak in ``workdir``; see the module docstring."""
    cfg = workdir / "soak.toml"
    cfg.write_text(CAMPAIGN.format(tasks=tasks, generations=generations))
    ref, crashed = workdir / "reference.duckdb", workdir / "crashed.duckdb"
    t_ref = time.monotonic()
    subprocess.run(cli("run", str(cfg), "--store", str(ref)), check=True, capture_output=True, env=cli_env())
    t_ref = time.monotonic() - t_ref
    t_start = time.monotonic()  # a resume with nothing left to do: the start-up cost
    subprocess.run(cli("resume", str(ref)), check=True, capture_output=True, env=cli_env())
    t_start = time.monotonic() - t_start
    work = max(t_ref - t_start, 0.5)
    # Delays from inside start-up to a little past it, so that `kills` kills fit in the work.
    lo, hi = 0.3 * t_start, min(max_delay, t_start + 2 * work / kills)
    rng = random.Random(seed)
    t0 = time.monotonic()
    n_kills = runs = 0
    moments: list[str] = []
    while True:
        started, _ = _state(crashed)
        cmd = cli("resume", str(crashed)) if started else cli("run", str(cfg), "--store", str(crashed))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env())
        runs += 1
        if n_kills < kills:
            try:
                proc.wait(timeout=rng.uniform(lo, hi))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                n_kills += 1
                moments.append(_state(crashed)[1])
                continue
        else:
            proc.wait()
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode != 0:
            raise RuntimeError(f"run {runs} failed with {proc.returncode}: {err[-2000:]}")
        break
    from stores import DuckDBStore

    with DuckDBStore(crashed) as s:
        doubles = s.scalar("SELECT count(*) FROM (SELECT generation, item_id FROM raw.work_results "
                           "GROUP BY ALL HAVING count(*) > 1)")
        plans = s.scalar("SELECT count(*) FROM (SELECT generation, item_id FROM raw.work_plan "
                         "GROUP BY ALL HAVING count(*) > 1)")
    return SoakReport(n_kills, runs, time.monotonic() - t0, _population(crashed) == _population(ref),
                      int(doubles) + int(plans), moments)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--tasks", type=int, default=12)
    ap.add_argument("--generations", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        r = soak(Path(tmp), kills=args.kills, tasks=args.tasks, generations=args.generations, seed=args.seed)
    print(f"{'kills':>8} {'runs':>6} {'seconds':>8} {'identical population':>21} {'double commits':>15}")
    print(f"{r.kills:>8} {r.runs:>6} {r.seconds:>8.1f} {str(r.identical):>21} {r.double_commits:>15}")
    print("\nkill moments:")
    kinds: dict[str, int] = {}
    for m in r.moments:
        key = "mid-generation" if m.startswith("mid") else ("between generations" if m.startswith("after") else m)
        kinds[key] = kinds.get(key, 0) + 1
    for k, v in sorted(kinds.items()):
        print(f"  {v:>4}  {k}")
    sys.exit(0 if r.identical and not r.double_commits else 1)


if __name__ == "__main__":
    main()
