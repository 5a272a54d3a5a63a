"""Replay agreement of recorded InterCode-SQL runs: one table row per recording.

    python experiments/replay_agreement.py                      # the three bundled recordings
    python experiments/replay_agreement.py path/to/*.json       # any InterCode result files

Each recording is re-executed by ``evoagent replay`` (every executed action in a fresh
episode per task); actions the recorder never executed (format retries, ``blocked``)
are counted apart. Prints a Markdown table for the README.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evoagent.envs.intercode_sql.data import bundled_runs  # noqa: E402
from evoagent.envs.intercode_sql.replay import replay_file  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help="recordings (default: the bundled ones)")
    args = ap.parse_args()
    files = args.files or list(bundled_runs().values())
    print(f"# {platform.machine()}, Python {platform.python_version()}, {len(files)} recordings")
    print("| recording | actions | executed | format retries | blocked | agreement | top causes | seconds |")
    print("|---|---:|---:|---:|---:|---|---|---:|")
    for path in files:
        t0 = time.perf_counter()
        r = replay_file(path)
        causes = ", ".join(f"{c} {n}" for c, n in sorted(r.by_cause.items(), key=lambda kv: -kv[1])[:3])
        print(f"| {path.name} | {r.total + r.format_retries + r.blocked:,} | {r.total:,} | {r.format_retries} | "
              f"{r.blocked} | {r.agreed:,}/{r.total:,} ({r.percent:.1f}%) | {causes} | "
              f"{time.perf_counter() - t0:.1f} |", flush=True)


if __name__ == "__main__":
    main()
