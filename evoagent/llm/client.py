"""One way to call an LLM: ledger first, then budget, rate limits, retries.

``LLMClient.complete`` looks the request up in the ledger (no call is paid
twice), reserves its worst-case cost against the budget (counting calls in
flight), waits for a slot under the in-flight and tokens-per-minute limits,
sends it through a transport (the official ``anthropic`` SDK, or an
OpenAI-compatible server), retries transient faults (429 honouring
retry-after, 529, 5xx, timeouts, answers without the expected tool call) with
exponential backoff and jitter, and commits the answer before returning it.
"""
from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from evoagent.llm.errors import BudgetExceeded, LLMError, TransientError
from evoagent.llm.ledger import CALL_CONTEXT, CallRecord, Ledger, call_key
from evoagent.llm.pricing import BATCH_DISCOUNT, cost_usd, price_of

__all__ = ["Budget", "BudgetExceeded", "ClientSettings", "LLMClient", "LLMError", "RateLimiter", "Reply",
           "TransientError", "Transport", "estimate_tokens"]


class Transport(Protocol):
    """Sends one request; returns ``{"content": [...], "stop_reason": ..., "usage": {...}}``."""

    def send(self, request: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Reply:
    content: list[dict[str, Any]]
    usage: dict[str, int]
    cost_usd: float
    cached: bool
    call_key: str


class Budget:
    """Dollars and tokens: spent plus reserved for calls in flight never exceed the limits."""

    def __init__(self, usd: float = 0.0, tokens: int = 0, spent_usd: float = 0.0, spent_tokens: int = 0):
        self.usd, self.tokens = usd, tokens
        self.spent_usd, self.spent_tokens = spent_usd, spent_tokens
        self.reserved_usd, self.reserved_tokens = 0.0, 0
        self._lock = threading.Lock()

    def reserve(self, usd: float, tokens: int) -> None:
        with self._lock:
            if self.usd and self.spent_usd + self.reserved_usd + usd > self.usd:
                raise BudgetExceeded("budget.usd")
            if self.tokens and self.spent_tokens + self.reserved_tokens + tokens > self.tokens:
                raise BudgetExceeded("budget.tokens")
            self.reserved_usd += usd
            self.reserved_tokens += tokens

    def settle(self, reserved_usd: float, reserved_tokens: int, usd: float, tokens: int) -> None:
        with self._lock:
            self.reserved_usd -= reserved_usd
            self.reserved_tokens -= reserved_tokens
            self.spent_usd += usd
            self.spent_tokens += tokens


class RateLimiter:
    """At most ``max_in_flight`` calls at once and ``tokens_per_minute`` (0 = no limit)."""

    def __init__(self, max_in_flight: int, tokens_per_minute: int = 0):
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self.tpm = tokens_per_minute
        self._tokens = float(tokens_per_minute)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, tokens: int) -> None:
        self._slots.acquire()
        while self.tpm:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.tpm, self._tokens + (now - self._stamp) * self.tpm / 60.0)
                self._stamp = now
                if self._tokens >= min(tokens, self.tpm):
                    self._tokens -= tokens
                    return
                wait = (min(tokens, self.tpm) - self._tokens) * 60.0 / self.tpm
            time.sleep(wait)

    def release(self) -> None:
        self._slots.release()


def estimate_tokens(request: dict[str, Any]) -> int:
    """A cheap upper-ish estimate of input tokens (4 characters a token)."""
    text = json.dumps([request.get("system"), request.get("messages"), request.get("tools")], default=str)
    return len(text) // 4 + 1


def _add_usage(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    """Token counts of two answers together."""
    return {k: a.get(k, 0) + b.get(k, 0) for k in {*a, *b}} if a else dict(b)


@dataclass
class ClientSettings:
    model: str
    max_attempts: int = 6
    retry_base_s: float = 0.5
    retry_cap_s: float = 30.0
    max_in_flight: int = 32
    tokens_per_minute: int = 0


class LLMClient:
    """Thread-safe; see the module docstring. ``batcher`` routes calls into Message Batches."""

    def __init__(self, transport: Transport, ledger: Ledger, settings: ClientSettings,
                 budget: Budget | None = None, batcher: Any = None, seed: int = 0):
        self.transport, self.ledger, self.s = transport, ledger, settings
        self.budget = budget or Budget()
        self.batcher = batcher
        self.limiter = RateLimiter(settings.max_in_flight, settings.tokens_per_minute)
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        price_of(settings.model)  # unknown model: fail before any call

    def complete(self, request: dict[str, Any], *, template: str, template_hash: str, nonce: str,
                 valid: Callable[[dict[str, Any]], bool] = lambda r: True) -> Reply:
        """The answer to ``request``: from the ledger, else from the provider (then committed)."""
        key = call_key(request, template_hash, nonce)
        hit = self.ledger.lookup(key)
        # A stored answer that fails the caller's check (e.g. collected from a batch after a
        # crash, with nobody to check it) is retried directly, like a malformed live answer.
        if hit is not None and valid(hit["response"]):
            if self.batcher is not None:
                self.batcher.skip()
            self._account(hit["cost_usd"], hit["usage"])
            return Reply(hit["response"]["content"], hit["usage"], hit["cost_usd"], True, key)
        retry_directly = hit is not None
        if self.batcher is not None and retry_directly:
            self.batcher.skip()
        est_input = estimate_tokens(request)
        est_tokens = est_input + int(request.get("max_tokens", 0))
        p = price_of(self.s.model)
        est_usd = (est_input * max(p.input, p.cache_write)
                   + int(request.get("max_tokens", 0)) * p.output) / 1e6
        via_batch = self.batcher is not None and not retry_directly
        reserved = est_usd * (BATCH_DISCOUNT if via_batch else 1.0)
        try:
            self.budget.reserve(reserved, est_tokens)
        except BaseException:
            if via_batch:
                self.batcher.skip()  # refused: this call never reaches its batch
            raise
        usd = tokens = 0
        try:
            meta = {"template": template, "template_hash": template_hash,
                    "context": {k: v for k, v in CALL_CONTEXT.get({}).items() if k != "spend"}}
            if via_batch:
                record = self.batcher.submit(key, request, meta, valid)
                if record.status != "ok":  # failed or malformed in the batch: paid for what it
                    usd, tokens = record.cost_usd, sum(record.usage.values())  # got, then retried
                    self.budget.reserve(est_usd - reserved, 0)  # directly, at the full price
                    reserved = est_usd
                    record = self._call(key, request, meta, valid, est_tokens)
            else:
                record = self._call(key, request, meta, valid, est_tokens)
            usd += record.cost_usd
            tokens += sum(record.usage.values())
        finally:
            self.budget.settle(reserved, est_tokens, usd, tokens)
        if record.status != "ok" or record.response is None:
            raise LLMError(f"LLM call failed after {record.attempts} attempts: {'; '.join(record.errors[-3:])}")
        self._account(record.cost_usd, record.usage)
        return Reply(record.response["content"], record.usage, record.cost_usd, False, key)

    @staticmethod
    def _account(usd: float, usage: dict[str, int]) -> None:
        """Add a call's cost and tokens to the work item it was made for (if any)."""
        spend = CALL_CONTEXT.get({}).get("spend")
        if spend is not None:
            spend[0] += usd
            spend[1] += usage.get("input_tokens", 0) + usage.get("cache_write_tokens", 0) + usage.get("cache_read_tokens", 0)
            spend[2] += usage.get("output_tokens", 0)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.s.retry_cap_s)
        with self._rng_lock:
            jitter = self._rng.uniform(0.5, 1.0)
        return min(self.s.retry_cap_s, self.s.retry_base_s * 2 ** attempt) * jitter

    def _call(self, key: str, request: dict[str, Any], meta: dict[str, Any],
              valid: Callable[[dict[str, Any]], bool], tokens: int) -> CallRecord:
        errors: list[str] = []
        paid: dict[str, int] = {}  # usage of answers rejected as malformed: billed all the same
        t0 = time.perf_counter()
        for attempt in range(self.s.max_attempts):
            self.limiter.acquire(tokens)
            try:
                answer = self.transport.send(request)
            except TransientError as exc:
                errors.append(str(exc))
                retry_after = exc.retry_after
            except LLMError as exc:  # permanent: a bad request, an auth failure
                errors.append(str(exc))
                break
            else:
                usage = _add_usage(paid, answer.get("usage", {}))
                if valid(answer):
                    record = CallRecord(key, self.s.model, request, answer, usage,
                                        cost_usd(self.s.model, usage), time.perf_counter() - t0,
                                        attempt + 1, errors, **meta)
                    self.ledger.record([record])
                    return record
                errors.append("malformed answer: " + json.dumps(answer.get("content"))[:200])
                paid, retry_after = usage, None
            finally:
                self.limiter.release()
            if attempt + 1 < self.s.max_attempts:
                time.sleep(self._delay(attempt, retry_after))
        record = CallRecord(key, self.s.model, request, None, paid, cost_usd(self.s.model, paid) if paid else 0.0,
                            time.perf_counter() - t0, len(errors), errors, status="failed", **meta)
        self.ledger.record([record])
        return record
