"""Model names and prices in one table (USD per million tokens).

Source: Anthropic's pricing page (platform.claude.com/docs/en/about-claude/pricing),
read 2026-11: base input, 5-minute cache writes (1.25x input), cache hits
(0.1x input), output; the Message Batches API bills every token at 50%.
"""
from __future__ import annotations

from dataclasses import dataclass

from evoagent.errors import UserError

BATCH_DISCOUNT = 0.5


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_write: float
    cache_read: float


def _tier(input_usd: float, output_usd: float) -> Price:
    return Price(input_usd, output_usd, input_usd * 1.25, input_usd * 0.1)


MODELS: dict[str, Price] = {
    "claude-opus-4-8": _tier(5.0, 25.0),
    "claude-opus-4-5": _tier(5.0, 25.0),
    "claude-sonnet-4-6": _tier(3.0, 15.0),
    "claude-sonnet-4-5": _tier(3.0, 15.0),
    "claude-haiku-4-5": _tier(1.0, 5.0),
    # Local OpenAI-compatible servers (vLLM, SGLang, llama.cpp) cost nothing per token.
    "local": Price(0.0, 0.0, 0.0, 0.0),
}


def price_of(model: str) -> Price:
    """Prices of a model; local servers are free, unknown Claude names are an error."""
    if model in MODELS:
        return MODELS[model]
    raise UserError(f"no price known for model {model!r} (have {', '.join(sorted(MODELS))})")


def cost_usd(model: str, usage: dict[str, int], *, batch: bool = False) -> float:
    """Dollars for one call's usage (input, output, cache-write, cache-read tokens)."""
    p = price_of(model)
    usd = (usage.get("input_tokens", 0) * p.input + usage.get("output_tokens", 0) * p.output
           + usage.get("cache_write_tokens", 0) * p.cache_write
           + usage.get("cache_read_tokens", 0) * p.cache_read) / 1e6
    return usd * (BATCH_DISCOUNT if batch else 1.0)
