"""LLM client throughput against a loopback fake server with fixed latency.

Acceptance: with a server answering after 200 ms, N concurrent callers sustain
>= 90% of N / 0.2 calls/s for N up to 128 (on 2 cores), and every call is
committed to the store (one ``status='ok'`` row in ``raw.llm_calls`` per
completed call).

The fake server runs as a separate process (``python -m
evoagent.testing.fake_server``) so its CPU does not share our interpreter's GIL.
Each caller thread loops ``LLMClient.complete`` with a distinct nonce, so every
call misses the ledger and goes to the server. Calls completing inside the
measuring window (after a warm-up) are counted; afterwards the rows committed
during the whole phase are compared with every call completed in it.

Each N runs under every distinct ``policy.processes`` setting given (default
``auto,0``: past 64 in flight, "auto" sends from worker processes; 0 sends
from this process), so the table compares them in one run; the best setting
per N decides the verdict.

Run: ``python experiments/bench_llm.py [--ns 1,8,32,64,128] [--seconds 6] [--warmup 1] [--processes auto,0]``
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ["ANTHROPIC_API_KEY"] = "test"  # the fake server accepts any key; the SDK wants one
os.environ.pop("ANTHROPIC_AUTH_TOKEN", None)

from evoagent.llm.client import Budget, ClientSettings, LLMClient  # noqa: E402
from evoagent.llm.ledger import Ledger  # noqa: E402
from evoagent.llm import make_transports, sender_processes  # noqa: E402
from stores.duckdb_store import DuckDBStore  # noqa: E402

MODEL = "claude-haiku-4-5"
SYSTEM = ("You are a careful SQL agent. Answer with one SQL query that solves the task, "
          "using only the tables described.")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "evoagent.testing.fake_server", "--port", str(port), "--latency", str(latency)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fake server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url + "/v1/nothing", timeout=1).close()
            return proc, url
        except urllib.error.HTTPError:  # 404 (or any HTTP status): it answers
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("fake server did not answer within 20 s")


def request_for(i: int) -> dict:
    return {"model": MODEL, "max_tokens": 64, "system": SYSTEM,
            "messages": [{"role": "user", "content": f"Task {i}: list the names of all singers older than 30."}]}


def ok_rows(store: DuckDBStore) -> int:
    return store.query("SELECT count(*) FROM raw.llm_calls WHERE status = 'ok'").column(0)[0].as_py()


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def run_phase(client: LLMClient, store: DuckDBStore, n: int, warmup: float, seconds: float,
              tag: str, server_pid: int, worker_pids: list[int], latency: float) -> dict:
    before = ok_rows(store)
    stop = threading.Event()
    t_start = time.perf_counter()
    w0, w1 = t_start + warmup, t_start + warmup + seconds
    windowed = [0] * n
    total = [0] * n
    failures: list[BaseException] = []

    def caller(idx: int) -> None:
        i = 0
        try:
            while not stop.is_set():
                client.complete(request_for(i), template="bench", template_hash="x",
                                nonce=f"{tag}-{n}-{idx}-{i}")
                done = time.perf_counter()
                total[idx] += 1
                if w0 <= done < w1:
                    windowed[idx] += 1
                i += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    time.sleep(max(0.0, w0 - time.perf_counter()))
    cpu0, srv0, done0 = time.process_time(), proc_cpu(server_pid), sum(total)
    wrk0 = sum(proc_cpu(p) for p in worker_pids)
    time.sleep(max(0.0, w1 - time.perf_counter()))
    cpu1, srv1, done1 = time.process_time(), proc_cpu(server_pid), sum(total)
    wrk1 = sum(proc_cpu(p) for p in worker_pids)
    stop.set()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{len(failures)} callers failed; first: {failures[0]!r}")
    committed = ok_rows(store) - before
    calls = sum(windowed)
    ideal = n / latency
    return {"n": n, "calls": calls, "seconds": seconds, "rate": calls / seconds, "ideal": ideal,
            "ratio": calls / seconds / ideal, "completed": sum(total), "committed": committed,
            "client_ms": (cpu1 - cpu0) * 1e3 / max(1, done1 - done0),
            "worker_ms": (wrk1 - wrk0) * 1e3 / max(1, done1 - done0),
            "server_ms": (srv1 - srv0) * 1e3 / max(1, done1 - done0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ns", default="1,8,32,64,128")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--target", type=float, default=0.90)
    ap.add_argument("--processes", default="auto,0",
                    help='SDK worker processes, as policy.processes: "auto" or a number (0: in-process); '
                         'a comma list runs each N under each distinct setting')
    args = ap.parse_args()
    settings = [p if p == "auto" else int(p) for p in args.processes.split(",")]
    ns = [int(x) for x in args.ns.split(",")]

    proc, url = start_server(args.latency)
    tmp = tempfile.TemporaryDirectory(prefix="bench_llm_")
    rows = []
    try:
        store = DuckDBStore(Path(tmp.name) / "bench.duckdb")
        ledger = Ledger(store)
        tag = f"{os.getpid()}-{time.time_ns()}"
        # What a campaign with policy.max_in_flight = N gets under each policy.processes setting.
        runs = [(n, p) for n in ns for p in dict.fromkeys(sender_processes(x, n) for x in settings)]
        for phase, (n, processes) in enumerate(runs):
            transport, sender = make_transports("anthropic", url, 60.0, n, processes)
            worker_pids = sender.start() if processes else []  # before measuring: ~1 s each
            client = LLMClient(sender, ledger, ClientSettings(model=MODEL, max_in_flight=n), Budget())
            try:
                rows.append(run_phase(client, store, n, args.warmup, args.seconds, f"{tag}-{phase}",
                                      proc.pid, worker_pids, args.latency) | {"processes": processes})
            finally:
                for t in {id(sender): sender, id(transport): transport}.values():
                    t.close()
            r = rows[-1]
            print(f"  N={n:<4} procs={processes} {r['rate']:8.1f} calls/s ({r['ratio']:.1%} of ideal)", file=sys.stderr, flush=True)
        ledger.close()
        store.close()
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        tmp.cleanup()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"LLM client throughput: fake Anthropic server (separate process) at {args.latency * 1000:.0f} ms "
          f"latency; {cores} cores ({platform.processor() or platform.machine()}), Python "
          f"{platform.python_version()}; {args.warmup:g} s warm-up + {args.seconds:g} s measured per N; "
          f"policy.processes in {args.processes}")
    head = f"{'N':>5} {'procs':>5} {'calls':>7} {'seconds':>8} {'calls/s':>9} {f'ideal N/{args.latency:g}':>12} {'ratio':>7} " \
           f"{'completed':>10} {'committed':>10} {'cpu ms/call: main + workers + server':>36}  verdict"
    print(head)
    print("-" * len(head))
    ok_all = True
    best = {r["n"]: r for r in sorted(rows, key=lambda r: r["ratio"])}  # the best setting per N decides
    for r in rows:
        ok = r["ratio"] >= args.target and r["committed"] == r["completed"]
        ok_all &= r["committed"] == r["completed"]  # every row must commit every call
        if best[r["n"]] is r:
            ok_all &= ok
        print(f"{r['n']:>5} {r['processes']:>5} {r['calls']:>7} {r['seconds']:>8.1f} {r['rate']:>9.1f} {r['ideal']:>12.1f} "
              f"{r['ratio']:>7.1%} {r['completed']:>10} {r['committed']:>10} "
              f"{r['client_ms']:>15.2f} + {r['worker_ms']:.2f} + {r['server_ms']:<10.2f}  "
              f"{'ok' if ok else 'BELOW' if r['committed'] == r['completed'] else 'UNCOMMITTED'}")
    print("procs: SDK worker processes (0: calls sent from this process); "
          "calls: completed in the measured window; completed/committed: every call of the phase "
          "(warm-up and drain included) vs status='ok' rows it added to raw.llm_calls; "
          "cpu ms/call: CPU seconds of this process, of the SDK worker processes (if any) and of the "
          "server process over the window, per call.")
    print(f"target: ratio >= {args.target:.0%} and committed == completed: {'PASS' if ok_all else 'FAIL'}")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
