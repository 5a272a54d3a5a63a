"""LLM policies' machinery: transports, the call ledger, Message Batches, budgets.

``build(campaign, store)`` assembles what a campaign with ``policy.kind =
anthropic`` or ``openai`` needs: the policy, the operators' advisor and the
shared budget, all over one ledger-backed client.
"""
from __future__ import annotations

import sys
from typing import Any

from evoagent.llm.client import Budget, BudgetExceeded, ClientSettings, LLMClient, LLMError
from evoagent.llm.ledger import Ledger, call_context

LLM_POLICIES = ("anthropic", "openai")


def batch_mode(setting: Any) -> bool:
    """``policy.batch``: true, false, or "auto" (batches when not run from a terminal)."""
    if setting == "auto":
        return not sys.stdin.isatty()
    return bool(setting)


def build(c: Any, store: Any) -> tuple[Any, Any, Budget, list[Any]]:
    """(policy, advisor or None, budget, closers) for an LLM campaign."""
    from evoagent.llm.batching import BatchCollector
    from evoagent.llm.transports import AnthropicTransport, OpenAITransport
    from evoagent.policies.llm import LLMPolicy
    from operators.advisor import Advisor

    kind, model = c.get("policy.kind"), c.get("policy.model")
    model_for_price = "local" if kind == "openai" else model  # local servers cost nothing
    timeout = c.get("policy.timeout_s")
    if kind == "anthropic":
        transport: Any = AnthropicTransport(c.get("policy.base_url") or None, timeout)
    else:
        transport = OpenAITransport(c.get("policy.base_url"), timeout)
    spent = store.query("SELECT coalesce(sum(cost_usd), 0), coalesce(sum(input_tokens + output_tokens + "
                        "cache_write_tokens + cache_read_tokens), 0) FROM raw.llm_calls WHERE status = 'ok'"
                        ).to_pylist()[0]
    usd, tokens = list(spent.values())
    budget = Budget(c.get("budget.usd"), c.get("budget.tokens"), float(usd), int(tokens))
    ledger = Ledger(store)
    settings = ClientSettings(model_for_price, max_attempts=c.get("policy.max_attempts"),
                              retry_base_s=c.get("policy.retry_base_s"),
                              max_in_flight=c.get("policy.max_in_flight"),
                              tokens_per_minute=c.get("policy.tokens_per_minute"))
    batcher = None
    if kind == "anthropic" and batch_mode(c.get("policy.batch")):
        batcher = BatchCollector(transport.sdk, ledger, model_for_price, idle_s=c.get("policy.batch_idle_s"),
                                 poll_s=c.get("policy.batch_poll_s"), max_attempts=c.get("policy.max_attempts"),
                                 retry_base_s=c.get("policy.retry_base_s"))
    client = LLMClient(transport, ledger, settings, budget, batcher, seed=c.get("seed"))
    policy = LLMPolicy(kind, client, model=model, max_tokens=c.get("policy.max_tokens"),
                       temperature=c.get("policy.temperature"), max_steps=c.get("env.max_steps"),
                       observation_chars=c.get("policy.observation_chars"))
    advisor = Advisor(client, model=model, max_tokens=c.get("policy.max_tokens")) if c.get("operators.llm") else None
    return policy, advisor, budget, [transport.close, ledger.close]


__all__ = ["Budget", "BudgetExceeded", "LLMClient", "LLMError", "LLM_POLICIES", "Ledger", "build", "call_context"]
