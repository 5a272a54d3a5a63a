"""Dynamic batching for a reward model behind an asyncio server.

Requests arrive one by one (often one text each); a model is fast only on
batches. The batcher queues requests and runs the model when ``max_batch``
texts are waiting or ``max_wait_ms`` after the first one arrived, whichever
comes first; while the model runs, the next batch fills up, so under load
batches grow on their own. A collected batch is sorted by length and cut into
sub-batches of similar length (a sub-batch closes when the next text is more
than ``LENGTH_RATIO`` times as long as its shortest one and it already holds
``MIN_SUB_BATCH`` texts), which bounds the padding a transformer pays. The
model runs in one worker thread, so the event loop keeps accepting requests.

With ``parallel`` > 1 (model replicas in worker processes), that many batches
are in flight at once, each collected while the others run.

One bad request cannot fail the others: when a batch raises (or answers with
the wrong count or a non-finite value), each request in it is scored alone
and only those that fail again get the error. Memory is bounded: more than
``max_queued`` waiting texts and new requests are refused (:class:`Overloaded`).
"""
from __future__ import annotations

import asyncio
import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

__all__ = ["BatchStats", "DynamicBatcher", "ModelFailure", "Overloaded"]

LENGTH_RATIO = 2.0  # longest / shortest text of a sub-batch, once it holds MIN_SUB_BATCH texts
MIN_SUB_BATCH = 16

ScoreFn = Callable[[Sequence[str]], Sequence[float]]


class Overloaded(Exception):
    """Too many texts are waiting; the request should be retried later (HTTP 503)."""


class ModelFailure(Exception):
    """The model could not score this request's texts (HTTP 500, for this request only)."""


@dataclass
class BatchStats:
    """What the batcher did: requests and texts scored, model calls, the largest call."""

    requests: int = 0
    texts: int = 0
    batches: int = 0  # collected batches (one worker-thread hop each)
    forward_passes: int = 0  # model calls (sub-batches), retries of failed batches included
    largest_forward: int = 0
    failed_requests: int = 0


@dataclass
class _Request:
    texts: list[str]
    future: asyncio.Future[list[float]]


def length_groups(texts: Sequence[str]) -> list[list[int]]:
    """Indices of ``texts`` sorted by length and cut into sub-batches of similar length."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    groups: list[list[int]] = []
    for i in order:
        group = groups[-1] if groups else None
        if (group is None or (len(group) >= MIN_SUB_BATCH
                              and len(texts[i]) > LENGTH_RATIO * max(1, len(texts[group[0]])))):
            groups.append([i])
        else:
            group.append(i)
    return groups


class DynamicBatcher:
    """Collects requests into model calls; see the module docstring. Use on one event loop."""

    def __init__(self, score: ScoreFn, *, max_batch: int = 64, max_wait_ms: float = 5.0,
                 max_queued: int = 8192, parallel: int = 1):
        if max_batch < 1 or max_wait_ms < 0 or max_queued < 1 or parallel < 1:
            raise ValueError("max_batch, max_queued and parallel must be >= 1, max_wait_ms >= 0")
        self._score = score
        self.max_batch, self.max_wait_s, self.max_queued = max_batch, max_wait_ms / 1000, max_queued
        self.stats = BatchStats()
        self._queue: deque[_Request] = deque()
        self._queued = 0  # texts waiting
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # ``parallel`` batches in flight at once (one per model replica); 1 for a model in this process
        self._slots: asyncio.Semaphore | None = None
        self._parallel = parallel
        self._running: set[asyncio.Task[None]] = set()
        self._pool = ThreadPoolExecutor(parallel, thread_name_prefix="rm-forward")
        self._stats_lock = threading.Lock()

    @property
    def queued(self) -> int:
        """Texts waiting for a model call."""
        return self._queued

    async def start(self) -> None:
        """Start collecting (call on the loop that will serve requests)."""
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(self._parallel)
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def close(self) -> None:
        """Stop collecting; waiting requests fail with :class:`Overloaded`."""
        for task in [self._task, *self._running]:
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        while self._queue:
            req = self._queue.popleft()
            if not req.future.done():
                req.future.set_exception(Overloaded("the server is shutting down"))
        self._pool.shutdown(wait=True)

    async def score(self, texts: list[str]) -> list[float]:
        """One value per text, scored in some batch; raises Overloaded or ModelFailure."""
        if self._arrived is None:
            raise RuntimeError("DynamicBatcher.start() was not awaited")
        if not texts:
            return []
        if self._queued + len(texts) > self.max_queued:
            raise Overloaded(f"{self._queued} texts are waiting (limit {self.max_queued}); retry later")
        req = _Request(texts, asyncio.get_running_loop().create_future())
        self._queue.append(req)
        self._queued += len(texts)
        self._arrived.set()
        return await req.future

    async def _collect(self) -> None:
        assert self._arrived is not None and self._slots is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()  # a replica is free: the next batch collects for it
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = loop.time() + self.max_wait_s
            while self._queued < self.max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
            batch = [self._queue.popleft()]  # a request larger than max_batch goes alone
            taken = len(batch[0].texts)
            while self._queue and taken + len(self._queue[0].texts) <= self.max_batch:
                taken += len(self._queue[0].texts)
                batch.append(self._queue.popleft())
            self._queued -= taken
            batch = [r for r in batch if not r.future.done()]  # e.g. a client that went away
            if not batch:
                self._slots.release()
                continue
            task = loop.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Request]) -> None:
        assert self._slots is not None
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._pool, self._forward, batch)
        finally:
            self._slots.release()
        for req, outcome in zip(batch, results):
            if req.future.done():
                continue
            if isinstance(outcome, BaseException):
                req.future.set_exception(outcome)
            else:
                req.future.set_result(outcome)

    # -- in the worker thread --------------------------------------------------
    def _call(self, texts: list[str]) -> list[float]:
        values = [float(v) for v in self._score(texts)]
        with self._stats_lock:
            self.stats.forward_passes += 1
            self.stats.largest_forward = max(self.stats.largest_forward, len(texts))
        if len(values) != len(texts):
            raise ModelFailure(f"the model returned {len(values)} values for {len(texts)} texts")
        if not all(math.isfinite(v) for v in values):
            raise ModelFailure("the model returned a non-finite value")
        return values

    def _forward(self, batch: list[_Request]) -> list[list[float] | BaseException]:
        texts = [t for req in batch for t in req.texts]
        with self._stats_lock:
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.texts += len(texts)
        try:
            values = [0.0] * len(texts)
            for group in length_groups(texts):
                for i, v in zip(group, self._call([texts[i] for i in group])):
                    values[i] = v
        except Exception as exc:  # noqa: BLE001 - find the request(s) to blame: each alone
            return [self._alone(req) for req in batch] if len(batch) > 1 else [self._failure(exc)]
        out: list[list[float] | BaseException] = []
        at = 0
        for req in batch:
            out.append(values[at:at + len(req.texts)])
            at += len(req.texts)
        return out

    def _alone(self, req: _Request) -> list[float] | BaseException:
        try:
            return self._call(req.texts)
        except Exception as exc:  # noqa: BLE001
            return self._failure(exc)

    def _failure(self, exc: Exception) -> ModelFailure:
        with self._stats_lock:
            self.stats.failed_requests += 1
        if isinstance(exc, ModelFailure):
            return exc
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        return ModelFailure(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
