"""Faithfulness of the code sandbox to the recorded LATS and Reflexion runs: every bundled log replayed.

For each bundled log, what ``evoagent replay lats|reflexion`` prints last: programs re-executed,
agreement with the recorded verdicts, and the disagreements (by kind). One table row per log.
Run: ``python experiments/code_faithfulness.py``.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evoagent.envs.code.data import BUNDLED, DATA, read_recorded  # noqa: E402
from evoagent.envs.code.recorded import replay_file  # noqa: E402


def main() -> None:
    load = os.getloadavg()
    t0 = time.perf_counter()
    print("| log | set | rows | rows without a program | executed programs | agreement | disagreements |")
    print("|---|---|---:|---:|---:|---:|---|")
    for rel, source in BUNDLED.items():
        kind = rel.split("/")[0]
        rec = read_recorded(DATA / rel, kind)
        report = replay_file(DATA / rel, kind)
        kinds: dict[str, int] = {}
        for items in report.disagreements.values():
            for what in items:
                key = ("final: recorded solved, ours fails" if "recorded solved" in what else
                       "final: recorded unsolved, ours passes" if "recorded unsolved" in what else
                       "first program: own tests differ")
                kinds[key] = kinds.get(key, 0) + 1
        print(f"| {source} | {rec.task_set} | {len(rec.rows)} | {report.not_executed} | {report.total} | "
              f"{report.agreed}/{report.total} ({report.percent:.1f}%) | "
              f"{'; '.join(f'{v} {k}' for k, v in sorted(kinds.items())) or '-'} |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s; load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"after {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
