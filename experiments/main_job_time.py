"""The main job's time by stage, and whose CPU it is: the campaign's process or its SQL workers.

Runs ``experiments/intercode_sql.toml`` (``--set`` overrides, e.g. ``tasks.sample=200``) into a
new store in-process, as ``evoagent run`` does, and prints when each stage began (seconds since
start) with the CPU seconds used so far by this process and by its SQL workers (from /proc),
then the totals and how many statements the workers ran (the rest were answered from the kept
replies, ``sandbox.RESULT_CACHE_BYTES``).

    python experiments/main_job_time.py --store runs/timed.duckdb [--set tasks.sample=200]
"""
from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoagent import campaign, launch  # noqa: E402
from evoagent.envs.intercode_sql import sandbox  # noqa: E402

TOML = Path(__file__).with_name("intercode_sql.toml")


def cpu() -> tuple[float, float]:
    """CPU seconds of this process and of its live children (the SQL workers)."""
    tick, me, kids = os.sysconf("SC_CLK_TCK"), os.getpid(), 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            kids += (int(fields[11]) + int(fields[12])) / tick
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime, kids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True, help="a new store file")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} at start; imports took {time.perf_counter() - T0:.2f} s")
    c = campaign.load(TOML, args.overrides)
    last: list[Any] = [None]
    workers = [0.0]

    def note(event: dict[str, Any]) -> None:
        key = event.get("stage") if event["event"] == "stage" else f"generation {event.get('generation')} committed"
        if event["event"] in ("stage", "generation") and key != last[0]:
            own, workers[0] = cpu()
            print(f"{time.perf_counter() - T0:8.2f} s  campaign CPU {own:6.2f} s  workers CPU {workers[0]:6.2f} s  {key}")
            last[0] = key

    out = launch.start(c, args.store, on_progress=note)
    own, kids = cpu()
    pools = list(sandbox._pools.values())
    ran, kept = sum(p.executed for p in pools), sum(p.repeated for p in pools)
    print(f"{out.status}: {out.env_steps:,} environment steps; the SQL workers ran {ran:,} statements, "
          f"{kept:,} were answered from kept replies")
    print(f"wall {time.perf_counter() - T0:.2f} s; CPU: campaign {own:.2f} s, SQL workers {max(kids, workers[0]):.2f} s "
          f"(at the last stage); load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
