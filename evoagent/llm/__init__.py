"""LLM policies' machinery: transports, the call ledger, Message Batches, budgets.

``build_client(transport, campaign, store)`` assembles what an LLM policy
part (an environment's ``anthropic`` or ``openai``) needs: one ledger-backed
client and the shared budget; ``KEYS`` are the ``policy.*`` keys they read. Imports stay inside the
functions, so a sender worker process (``workers.py``) loads only the SDK.
"""
from __future__ import annotations

import functools
import os
from typing import Any

from evoagent.registry import Key


def batch_mode(setting: Any) -> bool:
    """``policy.batch``: Message Batches only when set to ``true``.

    Never inferred from the terminal: batches at low concurrency are much slower
    (each round waits for its batch), so that trade is the user's explicit choice.
    A store written when ``"auto"`` existed resumes with direct calls.
    """
    return setting is True


def sender_processes(setting: Any, max_in_flight: int) -> int:
    """``policy.processes``: "auto" sends from 2+ worker processes past 64 calls in flight.

    One interpreter spends ~2.3 ms of CPU per SDK call, so it saturates near 450
    calls/s (see experiments/bench_llm.py); up to 64 in flight it keeps up.
    """
    if setting == "auto":
        return 0 if max_in_flight <= 64 else max(2, min(4, os.cpu_count() or 1))
    return int(setting)


def make_transports(kind: str, base_url: str, timeout_s: float, in_flight: int,
                    processes: int) -> tuple[Any, Any]:
    """(transport in this process, sender for direct calls): the same object unless
    ``processes`` > 0, when the sender spreads calls over that many worker processes."""
    from evoagent.llm.transports import AnthropicTransport, OpenAITransport
    from evoagent.llm.workers import ProcessTransport

    threads = -(-in_flight // max(processes, 1))
    if kind == "anthropic":  # a few connections more than callers: batch polling shares the pool
        factory: Any = functools.partial(AnthropicTransport, base_url or None, timeout_s,
                                         max_connections=threads + 8)
    else:
        factory = functools.partial(OpenAITransport, base_url, timeout_s)
    transport = factory()  # also checks the key / URL before any worker starts
    return transport, ProcessTransport(factory, processes, threads) if processes else transport


def _upto(hi: float, lo: float = 0, *, open_low: bool = False) -> Any:
    return lambda x: (lo < x if open_low else lo <= x) and x <= hi


# The keys every LLM policy reads (anthropic and openai, on any environment), by full path.
KEYS: dict[str, Key] = {
    "policy.model": Key(str, "claude-haiku-4-5", bool, "a model name"),
    "policy.base_url": Key(str, ""),
    "policy.max_tokens": Key(int, 512, _upto(200_000, 1), "within 1..200000"),
    "policy.temperature": Key((int, float), 1.0, lambda x: 0 <= x <= 2, "within [0, 2]"),
    "policy.batch": Key((bool, str), False, lambda x: isinstance(x, bool),
                        'true or false ("auto" is gone: batching is never switched on implicitly)'),
    "policy.batch_idle_s": Key((int, float), 0.25, _upto(3600, open_low=True), "> 0 and <= 3600"),
    "policy.batch_poll_s": Key((int, float), 5.0, _upto(3600, open_low=True), "> 0 and <= 3600"),
    "policy.max_in_flight": Key(int, 32, _upto(10_000, 1), "within 1..10000"),
    "policy.processes": Key((int, str), "auto", lambda x: x == "auto" or (isinstance(x, int) and 0 <= x <= 32),
                            '"auto" or 0..32 (0 = send from the campaign process)'),
    "policy.tokens_per_minute": Key(int, 0, _upto(10**12), "within 0..10^12 (0 = no limit)"),
    "policy.max_attempts": Key(int, 6, _upto(100, 1), "within 1..100"),
    "policy.retry_base_s": Key((int, float), 0.5, _upto(600), "within 0..600"),
    "policy.timeout_s": Key((int, float), 60.0, _upto(3600, open_low=True), "> 0 and <= 3600"),
    "policy.observation_chars": Key(int, 2000, _upto(10**6, 1), "within 1..1000000"),
}


def check(transport: str, c: Any) -> None:
    """Fail before any work when an LLM policy cannot run (no key, no URL, unknown model)."""
    from evoagent.errors import UserError
    from evoagent.llm.pricing import price_of

    if transport == "anthropic":
        price_of(c.get("policy.model"))
        if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
            raise UserError("policy.kind = anthropic needs ANTHROPIC_API_KEY in the environment")
    elif not c.get("policy.base_url"):
        raise UserError("key 'policy.base_url': policy.kind = openai needs the server's URL, "
                        "e.g. http://127.0.0.1:8000/v1")


def build_client(transport: str, c: Any, store: Any) -> tuple[Any, Any, list[Any]]:
    """(client, budget, closers) for an LLM policy over ``transport`` (anthropic or openai): one
    ledger-backed client, shared by the policy and the operators' advisor."""
    from evoagent.errors import UserError
    from evoagent.llm.batching import BatchCollector
    from evoagent.llm.client import Budget, ClientSettings, LLMClient
    from evoagent.llm.ledger import Ledger, spent

    if store is None:
        raise UserError(f"policy {transport!r} needs a store for its call ledger")
    model = c.get("policy.model")
    model_for_price = "local" if transport == "openai" else model  # local servers cost nothing
    in_flight = c.get("policy.max_in_flight")
    batched = transport == "anthropic" and batch_mode(c.get("policy.batch"))
    # Batches make few HTTP calls: they send from this process, like low concurrency does.
    processes = 0 if batched else sender_processes(c.get("policy.processes"), in_flight)
    sdk_transport, sender = make_transports(transport, c.get("policy.base_url"), c.get("policy.timeout_s"),
                                            in_flight, processes)
    budget = Budget(c.get("budget.usd"), c.get("budget.tokens"), *spent(store))
    ledger = Ledger(store)
    settings = ClientSettings(model_for_price, max_attempts=c.get("policy.max_attempts"),
                              retry_base_s=c.get("policy.retry_base_s"),
                              max_in_flight=in_flight,
                              tokens_per_minute=c.get("policy.tokens_per_minute"))
    batcher = None
    if batched:
        batcher = BatchCollector(sdk_transport.sdk, ledger, model_for_price, idle_s=c.get("policy.batch_idle_s"),
                                 poll_s=c.get("policy.batch_poll_s"), max_attempts=c.get("policy.max_attempts"),
                                 retry_base_s=c.get("policy.retry_base_s"))
    client = LLMClient(sender, ledger, settings, budget, batcher, seed=c.get("seed"))
    closers = [sender.close] if sender is not sdk_transport else []
    return client, budget, [*closers, sdk_transport.close, ledger.close]


def policy_part(env: str, transport: str, build: Any, doc: str) -> Any:
    """The policy part ``<env>.<transport>``: an LLM agent of environment ``env`` over ``transport``.

    ``build(c, client)`` returns (the policy, the operators' advisor or None), both on the campaign's one
    ledger-backed client; the part checks the key (or URL) before any work and reads ``KEYS``."""
    from evoagent.policies.base import Made, PolicyPart

    def make(c: Any, store: Any) -> Made:
        client, budget, closers = build_client(transport, c, store)
        policy, advisor = build(c, client)
        return Made(policy, advisor, budget, closers)

    return PolicyPart(f"{env}.{transport}", make, KEYS, envs=(env,), needs_store=True,
                      check=lambda c: check(transport, c), doc=doc)


__all__ = ["KEYS", "batch_mode", "build_client", "check", "make_transports", "policy_part", "sender_processes"]
