"""Send LLM requests from worker processes, so the SDK's CPU is not all under one GIL.

The official SDK spends ~2.3 ms of Python per call building the request and
reading the answer; near 450 calls/s one interpreter is saturated. A
``ProcessTransport`` keeps the same ``send(request) -> answer`` contract but
hands each request to one of a few worker processes (``python -m
evoagent.llm.workers``), each with its own transport (e.g. its own SDK
client) and a pool of threads. The ledger, budget and retries stay in the
campaign's process: a worker only sends and answers.

Wire: one Unix socket pair per worker, pickled tuples framed by
``multiprocessing.connection``. Parent to worker: the transport factory
first, then ``(call_id, request)``, ``None`` to stop. Worker to parent:
``("ready",)`` or ``("broken", why)``, then ``(call_id, "ok", answer)``,
``(call_id, "transient", why, retry_after)`` or ``(call_id, "error", why)``.
A worker exits when its socket closes, so it never outlives the campaign
(even one killed with SIGKILL); it runs in its own process group and ignores
Ctrl-C, which is the campaign's to handle. A worker that dies fails its calls
in flight as transient (the client retries them) and is started again on the
next send. The API key reaches workers only through the inherited environment.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from evoagent.llm.errors import LLMError, TransientError
from evoagent.spawn import spawn_worker

START_TIMEOUT_S = 60.0


class _Worker:
    """One worker process, its socket, and the calls waiting on it."""

    def __init__(self, factory: Callable[[], Any], threads: int):
        self.proc, self.conn = spawn_worker("evoagent.llm.workers")  # own process group: Ctrl-C is the campaign's
        self.send_lock = threading.Lock()
        self.pending: dict[int, list[Any]] = {}  # call id -> [done lock, result]
        self.pending_lock = threading.Lock()
        self.alive = False  # until its transport is ready and a reader serves it
        self.reader: threading.Thread | None = None
        try:
            self.conn.send((factory, threads))
        except BaseException:
            self.stop()
            raise

    def wait_ready(self) -> None:
        """Wait for the worker's transport; then start reading its answers."""
        if not self.conn.poll(START_TIMEOUT_S):
            self.stop()
            raise LLMError(f"LLM worker process did not start within {START_TIMEOUT_S:.0f} s")
        try:
            first = self.conn.recv()
        except (EOFError, OSError):
            first = ("broken", f"the process exited with status {self.proc.wait()}")
        if first[0] != "ready":
            self.stop()
            raise LLMError(f"LLM worker process could not start its transport: {first[1]}")
        self.alive = True
        self.reader = threading.Thread(target=self._read, name="llm-worker-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            while True:
                msg = self.conn.recv()
                with self.pending_lock:
                    slot = self.pending.pop(msg[0], None)
                if slot is not None:
                    slot[1] = msg
                    slot[0].release()
        except (EOFError, OSError):
            pass
        self.alive = False
        with self.pending_lock:
            orphans, self.pending = list(self.pending.values()), {}
        for slot in orphans:
            slot[1] = (None, "transient", "LLM worker process exited", None)
            slot[0].release()

    def call(self, call_id: int, request: dict[str, Any]) -> tuple[Any, ...]:
        done = threading.Lock()
        done.acquire()
        slot: list[Any] = [done, None]
        with self.pending_lock:
            if not self.alive:
                return (call_id, "transient", "LLM worker process exited", None)
            self.pending[call_id] = slot
        try:
            with self.send_lock:
                self.conn.send((call_id, request))
        except Exception as exc:  # noqa: BLE001 - a closed socket, or a request pickle refuses
            with self.pending_lock:
                self.pending.pop(call_id, None)
            if isinstance(exc, OSError):
                return (call_id, "transient", "LLM worker process exited", None)
            return (call_id, "error", f"cannot send the request to a worker: {type(exc).__name__}: {exc}")
        done.acquire()  # released by the reader thread
        return slot[1]

    def in_flight(self) -> int:
        return len(self.pending)

    def ask_to_stop(self) -> None:
        """Ask the worker to finish the calls in hand and exit."""
        try:
            with self.send_lock:
                self.conn.send(None)
        except (OSError, ValueError):  # gone already, or the socket is closed
            pass

    def stop(self, deadline: float | None = None) -> None:
        """Stop it by ``deadline`` (monotonic seconds; default: now), killing it if it is late."""
        if self.conn.closed:
            return
        self.ask_to_stop()
        try:
            self.proc.wait(max(0.0, (deadline or 0.0) - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.reader is not None:
            self.reader.join(5)  # it reads what the worker sent, then sees the socket end
        with self.send_lock:
            self.conn.close()


class ProcessTransport:
    """``send`` through ``processes`` workers, each running ``factory()`` with ``threads`` threads.

    ``factory`` must be picklable (a class or ``functools.partial`` of one);
    workers start on the first ``send``, so a campaign answered from the
    ledger starts none.
    """

    def __init__(self, factory: Callable[[], Any], processes: int, threads: int):
        if processes < 1 or threads < 1:
            raise ValueError("processes and threads must be >= 1")
        self.factory, self.processes, self.threads = factory, processes, threads
        self._workers: list[_Worker | None] = [None] * processes
        self._lock = threading.Lock()
        self._ids = 0
        self._started = False
        self._closed = False

    def start(self) -> list[int]:
        """Start any worker not running (``send`` does this too); their process ids."""
        with self._lock:
            return [w.proc.pid for w in self._start_locked()]

    def _start_locked(self) -> list[_Worker]:
        if self._closed:
            raise LLMError("transport closed")
        fresh: list[int] = []
        try:
            for i, w in enumerate(self._workers):
                if w is None or not w.alive:
                    if w is not None:
                        w.stop()
                    self._workers[i] = None
                    self._workers[i] = _Worker(self.factory, self.threads)
                    fresh.append(i)
            for i in fresh:  # they start side by side (~1.5 s: importing the SDK)
                self._workers[i].wait_ready()  # type: ignore[union-attr]
        except BaseException as exc:
            for i in fresh:
                w = self._workers[i]
                if w is not None:
                    w.stop()
                self._workers[i] = None
            if self._started and isinstance(exc, (LLMError, OSError)):
                # A restart that failed: the call is retried (by then, maybe it works).
                raise TransientError(f"LLM worker process restart failed: {exc}") from None
            raise
        self._started = True
        return [w for w in self._workers if w is not None]

    def _pick(self) -> tuple[int, _Worker]:
        with self._lock:
            live = self._start_locked()
            self._ids += 1
            return self._ids, min(live, key=_Worker.in_flight)

    def send(self, request: dict[str, Any]) -> dict[str, Any]:
        call_id, worker = self._pick()
        msg = worker.call(call_id, request)
        if msg[1] == "ok":
            return msg[2]
        if msg[1] == "transient":
            raise TransientError(msg[2], msg[3])
        raise LLMError(msg[2])

    def close(self, grace_s: float = 10.0) -> None:
        """Stop every worker. With no call in flight (a campaign's end) each exits cleanly
        within ``grace_s`` in all; calls still in flight (an abort) are abandoned at once."""
        with self._lock:
            self._closed = True
            workers = [w for w in self._workers if w is not None]
            self._workers = [None] * self.processes
        busy = any(w.in_flight() for w in workers)
        for w in workers:
            w.ask_to_stop()
        deadline = time.monotonic() + (0.0 if busy else grace_s)
        for w in workers:
            w.stop(deadline)


def _serve(fd: int) -> None:
    # Ctrl-C in a terminal reaches the whole process group; the campaign decides what it
    # means (finish the items in flight, or abort) and ends this worker by closing its socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        factory, threads = conn.recv()
        transport = factory()
    except (EOFError, OSError):
        os._exit(0)  # the campaign is gone
    except Exception as exc:  # noqa: BLE001 - e.g. a factory this process cannot import: told to the parent
        conn.send(("broken", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready",))
    send_lock = threading.Lock()

    def answer(call_id: int, request: dict[str, Any]) -> None:
        try:
            msg: tuple[Any, ...] = (call_id, "ok", transport.send(request))
        except TransientError as exc:
            msg = (call_id, "transient", str(exc), exc.retry_after)
        except Exception as exc:  # noqa: BLE001 - LLMError or a bug: the caller's call fails
            msg = (call_id, "error", str(exc) if isinstance(exc, LLMError) else f"{type(exc).__name__}: {exc}")
        try:
            with send_lock:
                conn.send(msg)
        except OSError:
            os._exit(0)  # the campaign is gone

    with ThreadPoolExecutor(threads, thread_name_prefix="llm-send") as pool:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                os._exit(0)  # the campaign is gone: nobody to answer
            if msg is None:
                break
            pool.submit(answer, *msg)
    getattr(transport, "close", lambda: None)()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
