"""Peak memory of the environment on the worst hostile actions we found.

    python experiments/env_memory.py [--dialect mysql] [--timeout 5] [--kill-mb 4000] [--only NAME ...]

Each action runs in a fresh process (``reset(sql/0)``, one ``SELECT 1`` to
start the SQL worker, then the action). The table gives the observation's
start, the action's wall time, and the peak resident set size (``ru_maxrss``)
of the environment's own process and of its SQL worker processes (reaped
before measuring). As a guard for the machine, a run whose processes together
pass ``--kill-mb`` is killed and reported as such. ``run_actions`` is also
what ``tests/test_hostile_env.py`` uses.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_REPLACE = "repeat('x', 1000)"
for _ in range(7):
    _REPLACE = f"replace({_REPLACE}, 'x', 'xxxxxxxxxx')"


def where_chain(terms: int) -> str:
    """``SELECT * FROM people WHERE People_ID <> 0 AND ...``: planning cost grows with the terms."""
    return "SELECT * FROM people WHERE " + " AND ".join(f"People_ID <> {i}" for i in range(terms))


CASES: dict[str, str] = {
    "wide rows (10 GB result)": "SELECT repeat('x', 100000) FROM range(100000)",
    "one 1 GB value": "SELECT repeat('x', 1000000000)",
    "one 20 GB vector (2048 x 10 MB)": "SELECT length(repeat('x', 10000000 + range % 2)) FROM range(2048)",
    "list of 10^8 ints": "SELECT range(100000000)",
    "string_agg to 2 GB": "SELECT string_agg(repeat('x', 1000), ',') FROM range(2000000)",
    "replace() x10^7 (10 GB constant)": f"SELECT length({_REPLACE})",
    "recursive doubling": ("WITH RECURSIVE r(s) AS (SELECT 'x' UNION ALL SELECT concat(s, s) FROM r "
                           "WHERE length(s) < 2000000000) SELECT max(length(s)) FROM r"),
    "DISTINCT over 3*10^8": "SELECT count(DISTINCT range) FROM range(300000000)",
    "WHERE chain (6,000 terms, 128 KB)": where_chain(6000),
    "WHERE chain (380 terms, 7.9 KB)": where_chain(380),
    "parentheses 1,000 deep": "SELECT " + "(" * 1000 + "1" + ")" * 1000,
    "interval overflow": "SELECT INTERVAL 1000000000 DAY",
    "lone surrogate": "SELECT 'a\ud800b'",
}

_CHILD = """
import json, resource, sys, time
from evoagent.envs.intercode_sql import env as envmod
from evoagent.envs.intercode_sql.data import load_tasks
job = json.loads(sys.stdin.read())
task = next(t for t in load_tasks() if t.task_id == "sql/0")
envs = {}
results = []
for dialect, action, *timeout in job["actions"]:
    key = (dialect, timeout[0] if timeout else job["timeout_s"])
    env = envs.get(key)
    if env is None:
        env = envs[key] = envmod.InterCodeSQLEnv(dialect=dialect, timeout_s=key[1])
        env.reset(task)
        env.step("SELECT 1")  # starts a SQL worker: its start-up is not the action's time
    t0 = time.perf_counter()
    try:
        obs, reward, done, info = env.step(action)
        out = {"obs": obs, "reward": reward, "valid": info.get("valid")}
    except BaseException as err:
        out = {"obs": "RAISED " + type(err).__name__ + ": " + str(err)[:200], "reward": None, "valid": None}
    out["obs"] = out["obs"][:200]
    out["seconds"] = round(time.perf_counter() - t0, 2)
    results.append(out)
getattr(envmod, "close_workers", lambda: None)()
print(json.dumps({"results": results, "self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "workers_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        pass
    return kids


def _tree_rss_mb(pid: int) -> float:
    """Resident MB of ``pid`` and its descendants (from /proc)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS")), 0) / 1024
        except (OSError, ValueError):
            continue
        todo += _children(p)
    return total


def run_actions(actions: list[tuple], *, timeout_s: float = 5.0, kill_mb: float = 4000.0,
                cwd: str | Path = ROOT) -> dict:
    """Run ``(dialect, action)`` pairs in one fresh process; results and peak memory.

    An optional third item is that action's ``env.timeout_s`` (default ``timeout_s``).

    Returns ``results`` (per action: ``obs``, ``reward``, ``valid``, ``seconds``), ``self_mb`` and
    ``workers_mb`` (peak RSS of the environment's process and of its largest SQL worker),
    ``tree_mb`` (the most all of them held at once, sampled), ``cpu_s`` (of all of them), ``killed``
    (the guard fired) and ``error`` (why there are no results). ``cwd``: where the process runs."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", _CHILD], cwd=cwd, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(json.dumps({"actions": actions, "timeout_s": timeout_s}))
    proc.stdin.close()
    peak, killed = 0.0, False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        rss = _tree_rss_mb(proc.pid)
        peak = max(peak, rss)
        if rss > kill_mb and not killed:
            killed = True
            for p in [proc.pid, *_children(proc.pid)]:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    text, err = proc.stdout.read().strip(), proc.stderr.read()
    if killed or not text:
        why = f"KILLED above {kill_mb:.0f} MB" if killed else f"died: {err.strip()[-300:]}"
        return {"results": [], "self_mb": usage.ru_maxrss / 1024, "workers_mb": None, "tree_mb": peak,
                "killed": killed, "error": why}
    out = json.loads(text.splitlines()[-1])
    out.update(tree_mb=peak, killed=False, error=None, cpu_s=usage.ru_utime + usage.ru_stime)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dialect", default="mysql", choices=["mysql", "duckdb"])
    ap.add_argument("--timeout", type=float, default=5.0, help="env.timeout_s")
    ap.add_argument("--kill-mb", type=float, default=4000.0)
    ap.add_argument("--only", nargs="*", help="case names (substrings) to run")
    args = ap.parse_args()
    print(f"{sys.platform} {os.uname().machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"dialect {args.dialect}, env.timeout_s {args.timeout:g}")
    print("| action | observation | s | env process MB | SQL worker MB |")
    print("|---|---|---:|---:|---:|")
    worst = 0.0
    for name, action in CASES.items():
        if args.only and not any(o in name for o in args.only):
            continue
        r = run_actions([(args.dialect, action)], timeout_s=args.timeout, kill_mb=args.kill_mb)
        if r["error"]:
            obs, secs, workers = r["error"], "-", "-"
            worst = max(worst, r["tree_mb"])
        else:
            obs, secs = r["results"][0]["obs"], f"{r['results'][0]['seconds']:.2f}"
            workers = f"{r['workers_mb']:.0f}"
            worst = max(worst, r["self_mb"], r["workers_mb"])
        obs = obs.replace("|", "\\|").replace("\n", " ").replace("`", "'")
        print(f"| {name} | `{obs[:60]}` | {secs} | {r['self_mb']:.0f} | {workers} |", flush=True)
    print(f"worst single process: {worst:.0f} MB")


if __name__ == "__main__":
    main()
