"""Message Batches: many calls, one batch, half price — and never submitted twice.

Work items run concurrently; their calls queue here. When no new call has
arrived for ``idle_s`` (every running rollout is waiting on its next step),
the queued calls go out as one Message Batch. A caller that knows how many
calls belong together (a reward model's scoring batch) says so with
``expect(n)``: they go out as soon as all n arrived, however slowly the
threads that make them start, so one scoring batch is one Message Batch. The batch id and its requests
are committed to the store *before* waiting, so a campaign killed while a
batch runs resumes by polling that batch, never by resubmitting it. Results
are committed to the ledger at the batch price; answers that failed or lack
the expected tool call come back as non-ok records and the client retries
them directly.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from evoagent.llm.errors import TransientError
from evoagent.llm.ledger import CallRecord, Ledger
from evoagent.llm.pricing import cost_usd
from evoagent.llm.transports import TRANSIENT, message_to_answer


GROUP_PATIENCE = 40  # quiet periods an announced group waits for a call that never comes


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _event(batch_id: str, status: str, n: int) -> pa.Table:
    return pa.table({"batch_id": [batch_id], "status": [status], "n_requests": pa.array([n], pa.int32()),
                     "event_at": pa.array([_now()], pa.timestamp("us"))})


class _Waiter:
    def __init__(self, key: str, request: dict[str, Any], meta: dict[str, Any],
                 valid: Callable[[dict[str, Any]], bool]):
        self.key, self.request, self.meta, self.valid = key, request, meta, valid
        self.done = threading.Event()
        self.record: CallRecord | None = None


class BatchCollector:
    """Groups concurrent calls into Message Batches; see the module docstring."""

    def __init__(self, sdk: Any, ledger: Ledger, model: str, *, idle_s: float = 0.25,
                 poll_s: float = 5.0, max_batch: int = 10_000, max_attempts: int = 8,
                 retry_base_s: float = 0.5):
        self.sdk, self.ledger, self.model = sdk, ledger, model
        self.idle_s, self.poll_s, self.max_batch = idle_s, poll_s, max_batch
        self.max_attempts, self.retry_base_s = max_attempts, retry_base_s
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._last = 0.0
        self._flusher: threading.Thread | None = None
        # Batches submitted by an earlier process and not yet collected: key -> batch id.
        self._open = ledger.store.uncollected_batch_items()
        self._watchers: dict[str, list[_Waiter]] = {}
        self._collecting: set[str] = set()  # batches being polled by this process
        self._done: set[str] = set()  # batches whose answers this process committed
        self._expected = 0  # calls of the announced group still to arrive (0: no group)
        self._group_complete = False

    def expect(self, n: int) -> None:
        """The next ``n`` calls belong together: send them as one batch once all arrived. Groups
        announced while one is still arriving (two scorers at once) add up: they go out together."""
        with self._lock:
            self._expected += n

    def skip(self) -> None:
        """A call of the announced group that will not come here (answered from the ledger, refused)."""
        with self._lock:
            self._arrive()

    def _arrive(self) -> None:
        if self._expected:
            self._expected -= 1
            self._group_complete = not self._expected  # flush without waiting for quiet

    # -- callers ---------------------------------------------------------------
    def submit(self, key: str, request: dict[str, Any], meta: dict[str, Any],
               valid: Callable[[dict[str, Any]], bool] = lambda a: True) -> CallRecord:
        """Block until this call's answer is committed; returns its record."""
        w = _Waiter(key, request, meta, valid)
        hit = self.ledger.lookup(key)  # answered by a batch collected since the caller looked
        if hit is not None:
            self.skip()
            return CallRecord(key, self.model, request, hit["response"], hit["usage"], hit["cost_usd"], **meta)
        with self._lock:
            self._arrive()
            batch_id = self._open.get(key)
            finished = batch_id is not None and batch_id in self._done
            if batch_id is not None and not finished:
                # Submitted already (maybe by a process that was killed): poll it, never resubmit.
                self._watchers.setdefault(batch_id, []).append(w)
                if batch_id not in self._collecting:
                    self._collecting.add(batch_id)
                    threading.Thread(target=self._collect, args=(batch_id,), daemon=True).start()
            elif finished and (hit := self.ledger.lookup(key)) is not None:  # collected meanwhile
                return CallRecord(key, self.model, request, hit["response"], hit["usage"], hit["cost_usd"], **meta)
            else:
                self._queue.append(w)
                self._last = time.monotonic()
                if self._flusher is None:
                    self._flusher = threading.Thread(target=self._flush_when_idle, daemon=True)
                    self._flusher.start()
        w.done.wait()
        assert w.record is not None
        return w.record

    # -- the batch's life ----------------------------------------------------------
    def _retry(self, fn: Callable[[], Any], idempotent: bool = True) -> Any:
        """Retry transient faults. A request that is not idempotent (creating a batch) is only
        retried when the server answered that it refused it, never after a lost answer
        (timeout, broken connection), which might mean the batch exists and would be paid twice."""
        for attempt in range(self.max_attempts):
            try:
                return fn()
            except Exception as exc:  # SDK errors: retry the transient ones
                status = getattr(exc, "status_code", None)
                lost = status is None and ("Timeout" in type(exc).__name__ or "Connection" in type(exc).__name__)
                transient = status in TRANSIENT or isinstance(exc, TransientError) or (lost and idempotent)
                if not transient or attempt + 1 == self.max_attempts:
                    raise
                headers = getattr(getattr(exc, "response", None), "headers", None) or {}
                wait = headers.get("retry-after")
                time.sleep(float(wait) if wait else self.retry_base_s * 2 ** attempt)
        raise AssertionError("unreachable")

    def _flush_when_idle(self) -> None:
        while True:
            with self._lock:
                quiet = time.monotonic() - self._last
                # A group's calls wait for the group (or, should a call of it never come, for
                # GROUP_PATIENCE quiet periods); other calls wait for quiet.
                due = (self._group_complete or quiet >= self.idle_s * GROUP_PATIENCE
                       or (not self._expected and quiet >= self.idle_s))
                if self._queue and (due or len(self._queue) >= self.max_batch):
                    batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
                    self._group_complete = False
                    if quiet >= self.idle_s * GROUP_PATIENCE:
                        self._expected = 0
                elif not self._queue:
                    self._flusher = None
                    return
                else:
                    batch = []
            if batch:
                threading.Thread(target=self._run_batch, args=(batch,), daemon=True).start()
            else:
                time.sleep(0.02 if self._expected else max(self.idle_s - quiet, 0.01))

    def _run_batch(self, waiters: list[_Waiter]) -> None:
        unique: dict[str, _Waiter] = {}
        for w in waiters:
            unique.setdefault(w.key, w)
        try:
            created = self._retry(lambda: self.sdk.messages.batches.create(requests=[
                {"custom_id": k, "params": w.request} for k, w in unique.items()]), idempotent=False)
        except Exception as exc:  # noqa: BLE001 - every waiter learns why
            self._fail(waiters, f"batch create failed: {type(exc).__name__}: {exc}"[:300])
            return
        items = pa.table({"batch_id": [created.id] * len(unique), "custom_id": list(unique),
                          "call_key": list(unique),
                          "request": [json.dumps(w.request, sort_keys=True) for w in unique.values()],
                          "meta": [json.dumps(w.meta, default=str) for w in unique.values()]})
        self.ledger.commit({"llm_batches": _event(created.id, "submitted", len(unique)), "llm_batch_items": items})
        with self._lock:
            self._watchers.setdefault(created.id, []).extend(waiters)
            self._collecting.add(created.id)
            for k in unique:
                self._open[k] = created.id
        self._collect(created.id)

    def _collect(self, batch_id: str) -> None:
        """Poll a submitted batch to its end, commit its answers, wake its waiters."""
        try:
            while self._retry(lambda: self.sdk.messages.batches.retrieve(batch_id)).processing_status != "ended":
                time.sleep(self.poll_s)
            results = self._retry(lambda: list(self.sdk.messages.batches.results(batch_id)))
        except Exception as exc:  # noqa: BLE001
            with self._lock:
                waiters = self._watchers.pop(batch_id, [])
                self._collecting.discard(batch_id)
            self._fail(waiters, f"batch {batch_id} failed: {type(exc).__name__}: {exc}"[:300])
            return
        with self._lock:
            early = list(self._watchers.get(batch_id, []))
        by_key = {w.key: w for w in early}
        stored = {r["call_key"]: r for r in self.ledger.store.batch_items(batch_id)}
        requests = {k: json.loads(r["request"]) for k, r in stored.items()}
        records = []
        for item in results:
            key = item.custom_id
            w = by_key.get(key)
            # labels of the call that asked, even if that process was killed meanwhile
            meta = w.meta if w else json.loads(stored.get(key, {}).get("meta") or "{}")
            if item.result.type == "succeeded":
                answer = message_to_answer(item.result.message.model_dump())
                ok = w.valid(answer) if w else True
                records.append(CallRecord(
                    key, self.model, requests.get(key, {}), answer, answer["usage"],
                    cost_usd(self.model, answer["usage"], batch=True), 0.0, 1,
                    [] if ok else ["malformed answer in batch"], "ok" if ok else "malformed",
                    batch_id, **meta))
            else:
                records.append(CallRecord(key, self.model, requests.get(key, {}), None, {}, 0.0, 0.0, 1,
                                          [f"batch result {item.result.type}"], "failed", batch_id, **meta))
        self.ledger.record(records, extra={"llm_batches": _event(batch_id, "collected", len(records))})
        got = {r.call_key: r for r in records}
        with self._lock:  # from here on, late callers find these answers in the ledger
            self._done.add(batch_id)
            self._collecting.discard(batch_id)
            waiters = self._watchers.pop(batch_id, [])
        for w in waiters:
            w.record = got.get(w.key) or CallRecord(w.key, self.model, w.request, None, status="failed",
                                                    errors=["missing from batch results"], batch_id=batch_id)
            w.done.set()

    def _fail(self, waiters: list[_Waiter], why: str) -> None:
        for w in waiters:
            w.record = CallRecord(w.key, self.model, w.request, None, status="failed", errors=[why])
            w.done.set()
