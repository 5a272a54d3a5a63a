"""Crash soak: SIGKILL a campaign at many points of its progress, resume each time, compare.

Runs the campaign once uninterrupted, then again as separate `evoagent`
processes killed with SIGKILL and resumed, until the campaign completes. A
kill point is a number of commits, seen as changes of the store's write-ahead
log (`PATH.wal`), never a delay measured on this machine, so a seed gives the
same soak on an idle or a loaded machine: about one run in four is killed in
start-up, the others a few commits past it (planning, item execution,
generation commits), where start-up's commits are counted once, on a resume
of the finished reference run. Prints a table and checks that the final
`population` equals the uninterrupted run's, that no work item was committed
twice and that no kill lost committed work.

    python experiments/crash_soak.py --kills 50 --generations 80
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


def cli(*args: str) -> list[str]:
    """Argv running the evoagent CLI from this checkout with this interpreter."""
    return [sys.executable, "-m", "evoagent.cli", *args]


def cli_env() -> dict[str, str]:
    """The environment for it: this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


_PROGRESS = ("SELECT (SELECT count(*) FROM work_items) + (SELECT count(*) FROM work_items WHERE status <> 'pending')"
             " + (SELECT count(*) FROM generations WHERE status = 'committed')")


def _state(store: Path) -> tuple[bool, int, int, str]:
    """(has a campaign, last committed generation or -1, progress, where it stands), writer dead.

    Progress counts planned items, finished items and committed generations: it grows
    with every commit of the campaign's journal."""
    from stores import DuckDBStore

    if not store.exists():
        return False, -1, -1, "before the store existed"
    with DuckDBStore(store) as s:
        progress = int(s.scalar(_PROGRESS))
        if s.get_meta("campaign") is None:
            return False, -1, progress, "before the campaign was recorded"
        last = s.last_committed_generation()
        last = -1 if last is None else int(last)
        planned = s.scalar("SELECT max(generation) FROM raw.work_plan")
        if planned is None:
            return True, last, progress, "before the first plan"
        if last == planned:
            return True, last, progress, f"after generation {last} committed"
        done = s.scalar("SELECT count(*) FROM raw.work_results WHERE generation = ?", [planned])
        total = s.scalar("SELECT count(*) FROM raw.work_plan WHERE generation = ?", [planned])
        return True, last, progress, f"mid-generation {planned} ({done}/{total} items)"


def _population(store: Path) -> list[tuple]:
    from stores import DuckDBStore

    with DuckDBStore(store) as s:
        return [tuple(r.values()) for r in s.query(
            "SELECT generation, task_id, traj_id, rank FROM population ORDER BY ALL").to_pylist()]


def _stat(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class KillPoint:
    """Kill a run right after its ``commits``-th commit (counted from its start), ``linger_s``
    later, so that kills also land between commits; ``startup``: meant to land in start-up."""

    commits: int
    startup: bool
    linger_s: float = 0.0


@dataclass
class SoakReport:
    kills: int
    runs: int
    seconds: float
    identical: bool
    double_commits: int
    double_scores: int = 0  # reward rows whose (reward_source, id, step) key was written twice
    moments: list[str] = field(default_factory=list)  # where the campaign stood after each kill
    points: list[KillPoint] = field(default_factory=list)  # where each kill was aimed
    progress: list[int] = field(default_factory=list)  # the journal's progress after each kill


def _watch_wal(proc: subprocess.Popen, store: Path, commits: int | None, *, poll_s: float = 0.002,
               stall_s: float = 300.0) -> int:
    """Count changes of the store's write-ahead log while ``proc`` runs, up to ``commits``.

    DuckDB appends every commit (and start-up's replay and checkpoint) to ``PATH.wal``; a
    poll can merge two quick commits into one change (the kill then comes a commit later).
    A run that neither commits nor exits for ``stall_s`` is a hang: an error, not a wait."""
    wal = f"{store}.wal"
    seen, changes, last = _stat(wal), 0, time.monotonic()
    while proc.poll() is None and (commits is None or changes < commits):
        now = _stat(wal)
        if now != seen:
            seen, changes, last = now, changes + 1, time.monotonic()
        elif time.monotonic() - last > stall_s:
            proc.kill()
            raise RuntimeError(f"{proc.args[3:]} made no commit for {stall_s:.0f} s")
        else:
            time.sleep(poll_s)
    return changes


def kill_at(proc: subprocess.Popen, store: Path, point: KillPoint) -> bool:
    """SIGKILL ``proc`` at ``point``; False if it exited first."""
    if _watch_wal(proc, store, point.commits) < point.commits:
        return False
    time.sleep(point.linger_s)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def startup_commits(store: Path) -> int:
    """The commits a resume makes before any work (and at exit): resume the finished ``store``."""
    proc = subprocess.Popen(cli("resume", str(store)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=cli_env())
    changes = _watch_wal(proc, store, None)
    if proc.wait() != 0:
        raise RuntimeError(f"resuming the finished {store} failed with {proc.returncode}")
    return changes


def soak(workdir: Path, *, kills: int = 20, tasks: int = 10, generations: int = 10,
         seed: int = 0, max_commits: int = 6, max_linger_s: float = 0.02, extra: str = "") -> SoakReport:
    """Run the soak in ``workdir``; see the module docstring.

    A run killed past start-up has done at most ``max_commits`` commits of work (a generation
    takes at least 3); fewer as the generations left approach the kills left, and none (a
    kill at its first or second commit) at the end, so every one of the ``kills`` kills is
    delivered before the campaign can finish.
    ``extra``: TOML lines put at the top of the campaign (e.g. ``search.reward = "mc"``).
    """
    cfg = workdir / "soak.toml"
    cfg.write_text(extra + "\n" + CAMPAIGN.format(tasks=tasks, generations=generations))
    ref, crashed = workdir / "reference.duckdb", workdir / "crashed.duckdb"
    subprocess.run(cli("run", str(cfg), "--store", str(ref)), check=True, capture_output=True, env=cli_env())
    startup = max(2, startup_commits(ref))
    rng = random.Random(seed)
    t0 = time.monotonic()
    runs = 0
    report = SoakReport(0, 0, 0.0, False, 0)
    state = _state(crashed)
    while True:
        started, last, _, _ = state
        n_kills = len(report.points)
        cmd = cli("resume", str(crashed)) if started else cli("run", str(cfg), "--store", str(crashed))
        err = workdir / f"run-{runs}.stderr"  # a file, not a pipe nobody reads while the run goes on
        with err.open("wb") as err_file:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err_file, env=cli_env())
        runs += 1
        if n_kills < kills:
            work = min(max_commits, 3 * (generations - last) // (kills - n_kills + 1) - 1)
            linger = rng.uniform(0, max_linger_s)
            first = startup if started else 2 * startup  # creating the store takes about as many again
            if work < 0:
                point = KillPoint(rng.randint(1, 2), startup=True, linger_s=linger)
            elif rng.random() < 0.25:
                point = KillPoint(rng.randint(1, first - 1), startup=True, linger_s=linger)
            else:
                point = KillPoint(first + rng.randint(0, work), startup=False, linger_s=linger)
            if kill_at(proc, crashed, point):
                state = _state(crashed)
                report.points.append(point)
                report.progress.append(state[2])
                report.moments.append(state[3])
                continue
        if proc.wait() != 0:
            raise RuntimeError(f"run {runs} failed with {proc.returncode}: {err.read_text()[-2000:]}")
        break
    from stores import DuckDBStore

    with DuckDBStore(crashed) as s:
        doubles = s.scalar("SELECT count(*) FROM (SELECT generation, item_id FROM raw.work_results "
                           "GROUP BY ALL HAVING count(*) > 1)")
        plans = s.scalar("SELECT count(*) FROM (SELECT generation, item_id FROM raw.work_plan "
                         "GROUP BY ALL HAVING count(*) > 1)")
        scores = s.scalar("SELECT count(*) - count(DISTINCT (reward_source, traj_id, step_idx)) FROM rewards")
    report.kills, report.runs, report.seconds = len(report.points), runs, time.monotonic() - t0
    report.identical = _population(crashed) == _population(ref)
    report.double_commits = int(doubles) + int(plans)
    report.double_scores = int(scores)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--generations", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mc", type=int, default=0, metavar="K",
                    help="search and rank with Monte-Carlo step values from K rollouts (kills land in scoring too)")
    args = ap.parse_args()
    extra = (f'search.reward = "mc"\nfitness.reward = "mc"\nfitness.aggregate = "mean"\n'
             f'rewards.mc.k = {args.mc}' if args.mc else "")
    with tempfile.TemporaryDirectory() as tmp:
        r = soak(Path(tmp), kills=args.kills, tasks=args.tasks, generations=args.generations, seed=args.seed,
                 extra=extra)
    print(f"{'kills':>8} {'runs':>6} {'seconds':>8} {'identical population':>21} {'double commits':>15} {'double scores':>14}")
    print(f"{r.kills:>8} {r.runs:>6} {r.seconds:>8.1f} {str(r.identical):>21} {r.double_commits:>15} {r.double_scores:>14}")
    late = [p.commits for p in r.points if not p.startup]
    print(f"\nkill points: {len(r.points) - len(late)} in start-up, {len(late)} past it "
          f"(commits {min(late, default=0)}-{max(late, default=0)} of the run)")
    print("kill moments:")
    kinds: dict[str, int] = {}
    for m in r.moments:
        key = "mid-generation" if m.startswith("mid") else ("between generations" if m.startswith("after") else m)
        kinds[key] = kinds.get(key, 0) + 1
    for k, v in sorted(kinds.items()):
        print(f"  {v:>4}  {k}")
    lost = any(b < a for a, b in zip(r.progress, r.progress[1:]))
    print(f"committed work lost by a kill: {lost}")
    sys.exit(0 if r.identical and not r.double_commits and not r.double_scores and r.kills == args.kills and not lost else 1)


if __name__ == "__main__":
    main()
