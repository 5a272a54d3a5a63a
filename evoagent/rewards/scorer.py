"""The store-backed cache and batcher in front of one reward model.

Every running item asks for scores through one ``Scorer``. Queries wait in one
queue; a single thread takes up to ``batch_size`` of them (or whatever is
queued ``wait_s`` after the first arrived), looks them up in the store's
``rewards`` table, sends only the missing ones to the model as one batch,
writes the new scores to the store, and only then hands them back. A query
already in flight for another item is joined, not sent again; so no score is
computed twice, across threads, resumes and re-runs (the rule of the LLM call
ledger). Memory holds only the queries in flight.
"""
from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from evoagent.rewards.base import Query, RewardModel, Score

# Environment steps spent on scoring by the current work item (set by the runner).
scoring_steps: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("scoring_steps", default=None)


@dataclass
class _Slot:
    query: Query
    done: threading.Event = field(default_factory=threading.Event)
    score: Score | None = None
    error: BaseException | None = None


@dataclass
class ScorerStats:
    """Counters for benchmarks and tests: queries sent to the model, batches, cache hits."""

    computed: int = 0
    batches: int = 0
    hits: int = 0
    env_steps: int = 0
    largest_batch: int = 0


class Scorer:
    """Scores queries with ``model``: cache lookup, batching, write-before-use."""

    def __init__(self, model: RewardModel, store: object, *, batch_size: int = 64, wait_s: float = 0.005):
        self.model, self.store = model, store
        self.batch_size, self.wait_s = batch_size, wait_s
        self.stats = ScorerStats()
        self._cond = threading.Condition()
        self._queue: list[_Slot] = []
        self._inflight: dict[tuple[str, int], _Slot] = {}
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def source(self) -> str:
        return self.model.source

    def score(self, queries: Sequence[Query]) -> list[float]:
        """One value per query; blocks until all are known (and stored)."""
        if self.model.observes and all(q.observed is not None for q in queries):
            # The step's own observation: recorded with the trajectory that observed it.
            return [float(q.observed) for q in queries]  # type: ignore[arg-type]
        mine: list[_Slot] = []
        slots: list[_Slot] = []
        with self._cond:
            if self._closed:
                raise RuntimeError("scorer is closed")
            for q in queries:
                slot = self._inflight.get(q.key)
                if slot is None:
                    slot = self._inflight[q.key] = _Slot(q)
                    self._queue.append(slot)
                    mine.append(slot)
                slots.append(slot)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="scorer", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        for slot in slots:
            slot.done.wait()
            if slot.error is not None:
                raise slot.error
        counter = scoring_steps.get()
        if counter is not None:
            counter[0] += sum(s.score.env_steps for s in mine if s.score is not None)
        return [s.score.value for s in slots]  # type: ignore[union-attr]

    def _next_batch(self) -> list[_Slot] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed and not self._queue:
                return None
            deadline = time.monotonic() + self.wait_s
            while len(self._queue) < self.batch_size and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, self._queue = self._queue[: self.batch_size], self._queue[self.batch_size:]
            return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._run(batch)
            except BaseException as exc:  # handed to every waiting caller
                for slot in batch:
                    slot.error = exc
            with self._cond:
                for slot in batch:
                    self._inflight.pop(slot.query.key, None)
            for slot in batch:
                slot.done.set()

    def _run(self, batch: list[_Slot]) -> None:
        found = self.store.reward_values(self.source, [s.query.key for s in batch])  # type: ignore[attr-defined]
        missing = [s for s in batch if s.query.key not in found]
        for s in batch:
            if s.query.key in found:
                s.score = Score(found[s.query.key])
        self.stats.hits += len(batch) - len(missing)
        if not missing:
            return
        scores = self.model.score([s.query for s in missing])
        rows = [(s.query.prefix_id, s.query.step_idx, sc.value) for s, sc in zip(missing, scores)]
        self.store.write_rewards(self.source, rows)  # type: ignore[attr-defined]  # before any use
        for s, sc in zip(missing, scores):
            s.score = sc
        self.stats.computed += len(missing)
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(missing))
        self.stats.env_steps += sum(sc.env_steps for sc in scores)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.model.close()
