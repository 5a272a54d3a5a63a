"""LLM policies' machinery: transports, the call ledger, Message Batches, budgets.

``build(campaign, store)`` assembles what a campaign with ``policy.kind =
anthropic`` or ``openai`` needs: the policy, the operators' advisor and the
shared budget, all over one ledger-backed client. Imports stay inside the
functions, so a sender worker process (``workers.py``) loads only the SDK.
"""
from __future__ import annotations

import functools
import os
from typing import Any

LLM_POLICIES = ("anthropic", "openai")


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


def build(c: Any, store: Any) -> tuple[Any, Any, Any, list[Any]]:
    """(policy, advisor or None, budget, closers) for an LLM campaign."""
    from evoagent.llm.batching import BatchCollector
    from evoagent.llm.client import Budget, ClientSettings, LLMClient
    from evoagent.llm.ledger import Ledger, spent
    from evoagent.policies.llm import LLMPolicy
    from evoagent.llm.advisor import Advisor

    kind, model = c.get("policy.kind"), c.get("policy.model")
    model_for_price = "local" if kind == "openai" else model  # local servers cost nothing
    in_flight = c.get("policy.max_in_flight")
    batched = kind == "anthropic" and batch_mode(c.get("policy.batch"))
    # Batches make few HTTP calls: they send from this process, like low concurrency does.
    processes = 0 if batched else sender_processes(c.get("policy.processes"), in_flight)
    transport, sender = make_transports(kind, c.get("policy.base_url"), c.get("policy.timeout_s"),
                                        in_flight, processes)
    budget = Budget(c.get("budget.usd"), c.get("budget.tokens"), *spent(store))
    ledger = Ledger(store)
    settings = ClientSettings(model_for_price, max_attempts=c.get("policy.max_attempts"),
                              retry_base_s=c.get("policy.retry_base_s"),
                              max_in_flight=in_flight,
                              tokens_per_minute=c.get("policy.tokens_per_minute"))
    batcher = None
    if batched:
        batcher = BatchCollector(transport.sdk, ledger, model_for_price, idle_s=c.get("policy.batch_idle_s"),
                                 poll_s=c.get("policy.batch_poll_s"), max_attempts=c.get("policy.max_attempts"),
                                 retry_base_s=c.get("policy.retry_base_s"))
    client = LLMClient(sender, ledger, settings, budget, batcher, seed=c.get("seed"))
    policy = LLMPolicy(kind, client, model=model, max_tokens=c.get("policy.max_tokens"),
                       temperature=c.get("policy.temperature"), max_steps=c.get("env.max_steps"),
                       observation_chars=c.get("policy.observation_chars"))
    from evoagent import registry

    seen = not registry.get("reward", c.get("search.reward")).uses_gold
    advisor = (Advisor(client, model=model, max_tokens=c.get("policy.max_tokens"), show_rewards=seen)
               if c.get("operators.llm") else None)
    closers = [sender.close] if sender is not transport else []
    return policy, advisor, budget, [*closers, transport.close, ledger.close]


__all__ = ["LLM_POLICIES", "batch_mode", "build", "make_transports", "sender_processes"]
