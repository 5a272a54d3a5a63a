"""SQL worker processes: agent SQL runs outside the campaign's process, in bounded memory and time.

DuckDB's ``memory_limit`` covers its buffer-managed memory (hash tables,
sorts, aggregates) but not the vectors a scalar function fills: 2,048 rows of
``repeat('x', 10^7)`` are 20 GB before a single row is returned, and turning
a result into Python objects is outside it too. No check of the SQL text can
foresee that, so statements run in worker processes (``python -m
evoagent.envs.intercode_sql.sandbox``) whose data segment is capped with
``RLIMIT_DATA``: past the cap an allocation fails, DuckDB reports "Out of
Memory" and Python raises MemoryError, and either becomes the statement's
error observation. A worker that ran out of Python memory, or whose DuckDB
was invalidated, answers and exits; so does one whose data segment passed
``RECYCLE_AT`` of the cap (allocators keep what a big statement took), so
that no statement's outcome depends on what ran before it. The next
statement gets a fresh worker.

Each request is self-contained (action, database, dialect, limits), so any
worker serves any environment: one pool per process holds at most
``POOL_SIZE`` workers, shared by all environments and threads, started on
demand. Wire: ``multiprocessing.connection`` framing over a socket pair, JSON
both ways (the worker runs untrusted SQL, so nothing richer than JSON is
parsed from it). A worker exits when its socket closes, so it never outlives
the campaign; it runs in its own process group and ignores Ctrl-C, which is
the campaign's to handle. A statement still running ``GRACE_S`` after twice
its time limit (the watchdog inside the worker missed it) is ended by killing
the worker. A worker that dies mid-statement for another reason is replaced
and the statement retried once on the new one.
"""
from __future__ import annotations

import atexit
import json
import math
import os
import resource
import signal
import subprocess
import sys
import threading
from collections import OrderedDict
from dataclasses import asdict
from functools import lru_cache
from multiprocessing.connection import Connection

from evoagent.envs.intercode_sql.executor import ERROR_PREFIX, INTERRUPTED, Executor, Limits
from evoagent.spawn import SocketWorker, spawn_worker

DATA_LIMIT_BYTES = 1 << 30  # RLIMIT_DATA of a worker: its heap and anonymous mappings, DuckDB's included
POOL_SIZE = max(2, min(4, os.cpu_count() or 1))
START_TIMEOUT_S = 60.0
GRACE_S = 5.0
MAX_WAIT_S = 1e6  # a longer time limit means none (select() refuses absurd timeouts)
RECYCLE_AT = 0.4  # a worker whose data segment passed this share of its limit exits after answering
RESULT_CACHE_BYTES = 64 << 20  # per pool: replies kept for statements run before (0: keep none)
_ENTRY_OVERHEAD = 256  # bytes counted per kept reply besides its text (key, dict slot)

_CRASHED = "the SQL engine's process died while running this statement (twice)"
_OF_THE_MOMENT = (INTERRUPTED, "Out of Memory", _CRASHED)  # errors a later run of the statement may not repeat


class SandboxError(RuntimeError):
    """The SQL worker process could not be started: the environment itself is broken, not the action."""


class _Worker(SocketWorker):
    """One worker process and the parent's end of its socket."""

    def __init__(self, path: str, collation: str) -> None:
        self.proc, self.conn = spawn_worker("evoagent.envs.intercode_sql.sandbox", quiet_stderr=True)
        try:
            self.conn.send_bytes(json.dumps({"path": path, "collation": collation,
                                             "data_limit": DATA_LIMIT_BYTES}).encode())
            first = json.loads(self.conn.recv_bytes()) if self.conn.poll(START_TIMEOUT_S) else {
                "broken": f"no answer within {START_TIMEOUT_S:.0f} s"}
        except (EOFError, OSError, ValueError) as err:
            first = {"broken": f"it exited ({err or 'connection closed'})"}
        if not first.get("ready"):
            self.kill()
            raise SandboxError(f"the SQL worker process could not start: {first.get('broken')}")

    def call(self, request: bytes, deadline_s: float | None) -> tuple[dict, bytes | None] | str:
        """The worker's reply (parsed, and as sent unless the worker is leaving), or why there is
        none: "timeout" (then killed) or "died"."""
        try:
            self.conn.send_bytes(request)
            if not self.conn.poll(deadline_s):
                self.kill()
                return "timeout"
            raw = self.conn.recv_bytes()
            reply = json.loads(raw)
        except (EOFError, OSError, ValueError):
            self.kill()
            return "died"
        except BaseException:  # e.g. Ctrl-C while waiting: its answer would reach the next caller
            self.kill()
            raise
        if reply.pop("bye", False):
            self.stop()  # it exits after this answer: never lend it again
            return reply, None
        return reply, raw

    def stop(self, timeout: float = 5.0) -> None:
        """Close its socket (it exits after its statement in hand), killing it if it is late."""
        if not self.conn.closed:
            self.conn.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class WorkerPool:
    """Up to ``size`` workers on one database file, lent out one statement at a time."""

    def __init__(self, path: str, collation: str, size: int = POOL_SIZE, grace_s: float = GRACE_S,
                 cache_bytes: int | None = None) -> None:
        self.path, self.collation, self.size, self.grace_s = path, collation, size, grace_s
        self._idle: list[_Worker] = []
        self._count = 0
        self._cv = threading.Condition()
        self.started = 0  # workers started so far (tests and diagnostics)
        self.cache_bytes = RESULT_CACHE_BYTES if cache_bytes is None else cache_bytes
        self._replies: OrderedDict[tuple[str, str, str, Limits], bytes] = OrderedDict()
        self._kept = 0  # bytes counted for ``_replies``
        self._cache_lock = threading.Lock()
        self.executed = 0  # statements sent to a worker (tests and diagnostics)
        self.repeated = 0  # statements answered from the kept replies

    def run(self, action: str, db: str, dialect: str, limits: Limits) -> dict:
        """The reply for one action: ``obs``, ``rows``, ``info`` and the ``db`` it left the worker in."""
        key = (action, db, dialect, limits)
        with self._cache_lock:
            kept = self._replies.get(key)
            if kept is not None:
                self._replies.move_to_end(key)
                self.repeated += 1
            else:
                self.executed += 1
        if kept is not None:
            return json.loads(kept)  # fresh objects: a caller may change what it gets
        request = json.dumps({"action": action, "db": db, "dialect": dialect, "limits": _fields(limits)}).encode()
        bounded = math.isfinite(limits.timeout_s) and limits.timeout_s < MAX_WAIT_S
        deadline_s = 2 * max(limits.timeout_s, 0.0) + self.grace_s if bounded else None
        for _ in range(2):
            worker = self._take()
            try:
                answer = worker.call(request, deadline_s)
            finally:
                self._give(worker)
            if answer == "timeout":
                return _failure(INTERRUPTED, db)
            if answer != "died":
                reply, raw = answer  # type: ignore[misc]
                if raw is not None:
                    self._keep(key, reply, raw)
                return reply
        return _failure(_CRASHED, db)

    def _keep(self, key: tuple[str, str, str, Limits], reply: dict, raw: bytes) -> None:
        """Keep a reply for the statement's next run, unless its outcome was of the moment."""
        error = reply.get("info", {}).get("error") or ""
        if any(mark in error for mark in _OF_THE_MOMENT):
            return
        size = len(raw) + len(key[0]) + _ENTRY_OVERHEAD
        if size > self.cache_bytes // 8:
            return  # a huge result: running it again costs less than what it would push out
        with self._cache_lock:
            if key in self._replies:
                return
            self._replies[key] = raw
            self._kept += size
            while self._kept > self.cache_bytes:
                old_key, old = self._replies.popitem(last=False)
                self._kept -= len(old) + len(old_key[0]) + _ENTRY_OVERHEAD

    def _take(self) -> _Worker:
        with self._cv:
            while not self._idle and self._count >= self.size:
                self._cv.wait()
            if self._idle:
                return self._idle.pop()
            self._count += 1
            self.started += 1
        try:
            return _Worker(self.path, self.collation)
        except BaseException:
            with self._cv:
                self._count -= 1
                self._cv.notify()
            raise

    def _give(self, worker: _Worker) -> None:
        alive = worker.alive
        if not alive:
            worker.kill()
        with self._cv:
            if alive:
                self._idle.append(worker)
            else:
                self._count -= 1
            self._cv.notify()

    def pids(self) -> list[int]:
        """Process ids of the idle workers (for diagnostics and tests)."""
        with self._cv:
            return [w.proc.pid for w in self._idle]

    def close(self) -> None:
        """Stop the idle workers (ones lent out stop when they come back dead; none should be)."""
        with self._cv:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for worker in idle:
            worker.stop()


@lru_cache(maxsize=64)
def _fields(limits: Limits) -> dict:
    """``limits`` as the request carries them (a frozen value: converted once)."""
    return asdict(limits)


def _failure(msg: str, db: str) -> dict:
    return {"obs": ERROR_PREFIX + msg, "rows": None, "info": {"valid": False, "error": msg}, "db": db}


_pools: dict[tuple[str, str], WorkerPool] = {}
_pools_lock = threading.Lock()


def pool_for(path: str, collation: str) -> WorkerPool:
    """This process's pool of workers for the database file ``path`` under ``collation``."""
    with _pools_lock:
        pool = _pools.get((path, collation))
        if pool is None:
            pool = _pools[(path, collation)] = WorkerPool(path, collation)
        return pool


def pool_pids() -> list[int]:
    """Process ids of this process's idle SQL workers, all pools (benchmarks and diagnostics)."""
    with _pools_lock:
        pools = list(_pools.values())
    return [pid for pool in pools for pid in pool.pids()]


def forget_replies() -> None:
    """Drop every pool's kept replies (benchmarks: each side of a comparison starts without them)."""
    with _pools_lock:
        pools = list(_pools.values())
    for pool in pools:
        with pool._cache_lock:
            pool._replies.clear()
            pool._kept = 0


@atexit.register
def close_workers() -> None:
    """Stop every idle worker of this process (they would also exit on their own when it ends)."""
    with _pools_lock:
        pools = list(_pools.values())
    for pool in pools:
        pool.close()


# -- the worker process ----------------------------------------------------------
def _serve(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the campaign's to handle
    conn = Connection(fd)
    try:
        cfg = json.loads(conn.recv_bytes())
        hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
        soft = cfg["data_limit"] if hard == resource.RLIM_INFINITY else min(cfg["data_limit"], hard)
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
        executor = Executor(cfg["collation"], cfg["path"])
        conn.send_bytes(b'{"ready": true}')
    except (EOFError, OSError):
        return
    except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send_bytes(json.dumps({"broken": f"{type(err).__name__}: {err}"}).encode())
        return
    while True:
        try:
            req = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        obs, rows, info = executor.run(req["action"], req["db"], req["dialect"], Limits(**req["limits"]))
        try:
            reply = json.dumps({"obs": obs, "rows": rows, "info": info, "db": executor.db}).encode()
        except MemoryError:
            executor.fatal = True
            rows = None
            reply = json.dumps(_failure("Out of Memory Error: the result did not fit in this environment's "
                                        "memory", executor.db)).encode()
        del obs, rows
        # Its allocators keep what a big statement took (RLIMIT_DATA counts it): past RECYCLE_AT of
        # the limit it exits after answering, so no statement's outcome depends on the ones before.
        bye = executor.fatal or _data_bytes() > cfg["data_limit"] * RECYCLE_AT
        try:
            conn.send_bytes(reply[:-1] + b', "bye": true}' if bye else reply)
        except OSError:
            return
        if bye:
            return


def _data_bytes() -> int:
    """This process's data segment (what RLIMIT_DATA counts), 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[5]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return 0


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
