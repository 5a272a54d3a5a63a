"""The main campaign with an LLM policy against a faulty loopback Anthropic server.

Runs `experiments/intercode_sql.toml` with `policy.kind=anthropic` twice, each
time through the real SDK against the fake server (started here, on
loopback, given to the campaign as ANTHROPIC_BASE_URL): once clean, once
injecting 10% 429, 5% 529 and 2% 500. Prints a table and whether the two
final populations are identical.

    python experiments/llm_faults.py --tasks 100 --generations 2 [--batch] [--set policy.processes=2]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crash_soak import cli, cli_env  # noqa: E402 - this script's folder is on the path
from evoagent.envs.intercode_sql.fake_agent import intercode_responder  # noqa: E402
from evoagent.testing.fake_server import FakeAnthropic  # noqa: E402
from stores import SnapshotStore  # noqa: E402


def campaign(url: str, store: Path, tasks: int, generations: int, batch: bool, extra: list[str]) -> float:
    env = {**cli_env(), "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "test-key"}
    sets = ['policy.kind="anthropic"', f"tasks.sample={tasks}", f"budget.generations={generations}",
            f"policy.batch={str(batch).lower()}", "policy.retry_base_s=0.05", "policy.batch_poll_s=0.1",
            "policy.max_attempts=10", "concurrency=32", *extra]
    cmd = cli("run", str(ROOT / "experiments" / "intercode_sql.toml"), "--store", str(store),
              *(arg for s in sets for arg in ("--set", s)))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--batch", action="store_true", help="route calls through Message Batches")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="more campaign overrides for both runs, e.g. policy.processes=2")
    args = ap.parse_args()
    responder = intercode_responder()
    rows, pops = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, faults in (("no faults", {}), ("429 10%, 529 5%, 500 2%", {429: 0.10, 529: 0.05, 500: 0.02})):
            with FakeAnthropic(responder, faults=faults, seed=1, batch_latency_s=0.3) as srv:
                store = Path(tmp) / f"{len(rows)}.duckdb"
                secs = campaign(srv.url, store, args.tasks, args.generations, args.batch, args.set)
                r = SnapshotStore(store)
                pops.append(r.query("SELECT generation, task_id, traj_id, rank FROM population ORDER BY ALL").to_pylist())
                calls = r.query("SELECT count(*) AS calls, sum(attempts) AS attempts, sum(cost_usd) AS usd "
                                "FROM llm_calls WHERE status = 'ok'").to_pylist()[0]
                success = r.scalar("SELECT success_rate FROM generations ORDER BY generation DESC LIMIT 1")
                failed = r.scalar("SELECT count(*) FROM work_items WHERE status = 'failed'")
                rows.append((name, sum(srv.stats["faults"].values()), calls["calls"], calls["attempts"],
                             calls["usd"], failed, success, secs))
                r.close()
    print(f"{'server':<26}{'faults':>7}{'calls':>7}{'attempts':>9}{'usd':>9}{'failed':>7}{'success':>8}{'s':>7}")
    for name, f, c, a, usd, failed, success, secs in rows:
        print(f"{name:<26}{f:>7}{c:>7}{a:>9}{usd:>9.4f}{failed:>7}{100 * success:>7.1f}%{secs:>7.1f}")
    print(f"final populations identical: {pops[0] == pops[1]}")
    sys.exit(0 if pops[0] == pops[1] else 1)


if __name__ == "__main__":
    main()
