"""Where a served reward model runs besides ``evoagent rm serve``'s own process and thread.

:class:`ProcessReplicas` are copies of a model in worker processes (``--workers``);
:class:`AppThread` runs any aiohttp application on a thread of its own, and
:class:`BackgroundServer` is the reward server run that way (tests, benchmarks,
campaigns on loopback).
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evoagent.rm.server import Limits, ScoresTexts, _build, _listen, _url

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    from aiohttp import web

    from evoagent.rm.batching import BatchStats, DynamicBatcher

__all__ = ["AppThread", "BackgroundServer", "ProcessReplicas"]

_REPLICA: Any = None  # the model of a replica process


def _load_replica(path: str, digest: str) -> None:
    global _REPLICA
    from evoagent.rm.model import load_model

    _REPLICA = load_model(path)
    if digest and _REPLICA.digest != digest:  # retrained since the server loaded it: not the served model
        raise RuntimeError(f"{path} changed since the server loaded it (digest {digest} -> {_REPLICA.digest})")


def _score_replica(texts: list[str]) -> list[float]:
    return _REPLICA.score_texts(texts)


class ProcessReplicas:
    """``n`` copies of a model directory in worker processes (``--workers``).

    The CPU backbone's forward pass is Python work: in the server's process it
    shares one interpreter lock with the event loop. In replicas it runs beside
    it, on other cores, ``n`` batches at once. A replica that dies (killed, out
    of memory) fails the batch it held (500) and the replicas are started afresh.
    """

    def __init__(self, path: str | Path, n: int, name: str, digest: str = ""):
        self.name, self.digest, self._path, self._n = name, digest, str(path), n
        self._lock = threading.Lock()
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(self._n, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_load_replica, initargs=(self._path, self.digest))
        for f in [pool.submit(_score_replica, []) for _ in range(self._n)]:
            f.result()  # every replica has loaded the model before the server says it is ready
        return pool

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        from concurrent.futures.process import BrokenProcessPool

        from evoagent.rm.batching import ModelFailure

        pool = self._pool
        try:
            return pool.submit(_score_replica, list(texts)).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._start()
            raise ModelFailure("a model replica died; the replicas were restarted") from None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)



class AppThread:
    """Any aiohttp application on its own thread and event loop; port 0 picks a free one.

    ``with AppThread(app) as t: ... t.url ...``: tests' replay and fault servers use it as they are.
    """

    def __init__(self, app: web.Application, *, host: str = "127.0.0.1", port: int = 0,
                 idle_timeout_s: float = Limits.idle_timeout_s):
        import asyncio

        from aiohttp import web

        self.app = app
        self._sock = _listen(host, port)
        self.url = _url(self._sock)
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, keepalive_timeout=idle_timeout_s)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rm-server", daemon=True)

    def _run(self) -> None:
        import asyncio

        from aiohttp import web

        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._runner.setup())
            self._loop.run_until_complete(web.SockSite(self._runner, self._sock).start())
        finally:
            self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def start(self) -> AppThread:
        self._thread.start()
        self._ready.wait(30)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def __enter__(self) -> AppThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BackgroundServer(AppThread):
    """``evoagent rm serve`` in-process (tests, benchmarks, campaigns on loopback)."""

    def __init__(self, model: ScoresTexts, *, host: str = "127.0.0.1", port: int = 0, limits: Limits = Limits(),
                 parallel: int = 1):
        limits.check()
        app, self._routes = _build(model, limits, parallel)
        super().__init__(app, host=host, port=port, idle_timeout_s=limits.idle_timeout_s)

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    @property
    def batcher(self) -> DynamicBatcher:
        return self._routes.batcher

    @property
    def stats(self) -> BatchStats:
        return self._routes.batcher.stats
