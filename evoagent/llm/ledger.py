"""The call ledger: every LLM request content-addressed, every answer committed first.

A request's key hashes the model, system, messages, tools, parameters, the
prompt template's hash and a per-call nonce (the work item's seed and step);
the API key is never part of it, nor stored. An answer is committed to the
store before the caller sees it, so a resumed or repeated campaign reads it
back instead of paying again. Commits are grouped by a writer thread: callers
block until their row is in the file, many rows share one transaction.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import functools
import hashlib
import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stores.base import Store

if TYPE_CHECKING:  # Arrow loads when calls are written, not for `evoagent status`'s spent()
    import pyarrow as pa

# Which work item a call belongs to (set by the engine around each item).
CALL_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("llm_call_context")


@contextmanager
def call_context(**fields: Any) -> Iterator[None]:
    """Tag the LLM calls made inside with operator / generation / item_id."""
    token = CALL_CONTEXT.set({**CALL_CONTEXT.get({}), **fields})
    try:
        yield
    finally:
        CALL_CONTEXT.reset(token)


def call_key(request: dict[str, Any], template_hash: str, nonce: str) -> str:
    """The content address of a request (hex sha256)."""
    material = json.dumps({"request": request, "template": template_hash, "nonce": nonce},
                          sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(material.encode()).hexdigest()


def spent(store: Store) -> tuple[float, int]:
    """Dollars and tokens paid so far: every stored call, answered or not (a failed call's row
    carries what its rejected answers cost)."""
    row = store.scalar("SELECT {'usd': coalesce(sum(cost_usd), 0), 'tokens': coalesce(sum(input_tokens + "
                       "output_tokens + cache_write_tokens + cache_read_tokens), 0)} FROM llm_calls")
    return float(row["usd"]), int(row["tokens"])


@dataclass(frozen=True)
class CallRecord:
    """One answered (or failed) call, as committed to ``raw.llm_calls``."""

    call_key: str
    model: str
    request: dict[str, Any]
    response: dict[str, Any] | None
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    attempts: int = 1
    errors: list[str] = field(default_factory=list)
    status: str = "ok"
    batch_id: str | None = None
    template: str = ""
    template_hash: str = ""
    context: dict[str, Any] = field(default_factory=dict)


@functools.cache
def _call_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([
        ("call_key", pa.string()), ("model", pa.string()), ("operator", pa.string()),
        ("generation", pa.int32()), ("item_id", pa.int32()), ("template", pa.string()),
        ("template_hash", pa.string()), ("status", pa.string()), ("batch_id", pa.string()),
        ("input_tokens", pa.int64()), ("output_tokens", pa.int64()), ("cache_write_tokens", pa.int64()),
        ("cache_read_tokens", pa.int64()), ("cost_usd", pa.float64()), ("latency_s", pa.float64()),
        ("attempts", pa.int32()), ("errors", pa.string()), ("request", pa.string()),
        ("response", pa.string()), ("created_at", pa.timestamp("us")),
    ])


def _rows(records: list[CallRecord]) -> pa.Table:
    import pyarrow as pa

    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

    schema = _call_schema()
    cols: dict[str, list[Any]] = {name: [] for name in schema.names}
    for r in records:
        cols["call_key"].append(r.call_key)
        cols["model"].append(r.model)
        cols["operator"].append(r.context.get("operator"))
        cols["generation"].append(r.context.get("generation"))
        cols["item_id"].append(r.context.get("item_id"))
        cols["template"].append(r.template)
        cols["template_hash"].append(r.template_hash)
        cols["status"].append(r.status)
        cols["batch_id"].append(r.batch_id)
        for k in ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens"):
            cols[k].append(int(r.usage.get(k, 0)))
        cols["cost_usd"].append(r.cost_usd)
        cols["latency_s"].append(r.latency_s)
        cols["attempts"].append(r.attempts)
        cols["errors"].append(json.dumps(r.errors) if r.errors else None)
        cols["request"].append(json.dumps(r.request, sort_keys=True, default=str))
        cols["response"].append(json.dumps(r.response) if r.response is not None else None)
        cols["created_at"].append(now)
    return pa.table(cols, schema=schema)


class Ledger:
    """Reads answers by key and group-commits new records; thread-safe."""

    def __init__(self, store: Store):
        self.store = store
        self._known = store.answered_call_keys()
        self._lock = threading.Lock()
        # Jobs for the writer: [records, tables, done, error]. ``done`` is a plain lock held by
        # the caller until the writer releases it (cheaper than an Event: no Condition).
        self._queue: queue.SimpleQueue[list[Any]] = queue.SimpleQueue()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)
        self._writer.start()

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The committed answer (response, usage, cost) for a key, if any."""
        if key not in self._known:
            return None
        r = self.store.answered_call(key)
        if r is None:
            return None
        usage = {k: r[k] for k in ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens")}
        return {"response": json.loads(r["response"]), "usage": usage, "cost_usd": r["cost_usd"]}

    def record(self, records: list[CallRecord], extra: dict[str, pa.Table] | None = None) -> None:
        """Commit records (and optional batch-journal rows); returns once they are in the file."""
        # The writer builds the rows, one Arrow table for the whole group: building a table per
        # call in each caller costs several times more CPU (measured: 1.95 vs 2.9 ms per call
        # at 128 callers, see experiments/bench_llm.py) and gives DuckDB one batch per row.
        self._submit(list(records), dict(extra or {}))
        with self._lock:
            self._known.update(r.call_key for r in records if r.status == "ok")

    def commit(self, tables: dict[str, pa.Table]) -> None:
        self._submit([], dict(tables))

    def _submit(self, records: list[CallRecord], tables: dict[str, pa.Table]) -> None:
        done = threading.Lock()
        done.acquire()
        job: list[Any] = [records, tables, done, None]
        with self._lock:
            if self._closed:  # no writer left to release the caller
                raise RuntimeError("the call ledger is closed")
            self._queue.put(job)
        done.acquire()  # released by the writer once the group is committed (or failed)
        if job[3] is not None:
            raise job[3]

    def close(self) -> None:
        """Stop the writer thread once it has committed what it was given."""
        with self._lock:
            self._closed = True
            if self._writer.is_alive():
                self._queue.put(None)
        self._writer.join()

    def _write_loop(self) -> None:
        import pyarrow as pa

        while True:
            jobs = [self._queue.get()]
            while True:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = None in jobs
            jobs = [j for j in jobs if j is not None]
            try:
                merged: dict[str, list[pa.Table]] = {}
                calls = [r for job in jobs for r in job[0]]
                if calls:
                    try:
                        merged["llm_calls"] = [_rows(calls)]
                    except Exception:  # a record that cannot be stored fails its own caller only
                        kept = []
                        for job in jobs:
                            try:
                                if job[0]:
                                    merged.setdefault("llm_calls", []).append(_rows(job[0]))
                                kept.append(job)
                            except Exception as exc:  # noqa: BLE001 - surfaces in that caller
                                job[3] = exc
                                job[2].release()
                        jobs = kept
                for job in jobs:
                    for name, t in job[1].items():
                        merged.setdefault(name, []).append(t)
                if merged:
                    self.store.append_ledger(
                        {n: ts[0] if len(ts) == 1 else pa.concat_tables(ts).combine_chunks()
                         for n, ts in merged.items()})
            except BaseException as exc:  # surfaces in every waiting caller
                for job in jobs:
                    job[3] = exc
            for job in jobs:
                job[2].release()
            if stopping:
                return
