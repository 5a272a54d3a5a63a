"""Policies by name. ``replay`` is the offline default; LLM policies plug in here too."""
from __future__ import annotations

from typing import Any

from evoagent.errors import UserError
from evoagent.policies.base import SUBMIT, Action, Guidance, Policy, masked
from evoagent.policies.replay import ReplayPolicy

POLICIES = ("replay", "anthropic", "openai", "enumerate")  # enumerate: game24 only


def make_policy(kind: str, **params: Any) -> Policy:
    """Build the policy a campaign file names under ``[policy]``."""
    if kind in ("anthropic", "openai"):
        raise UserError(f"policy {kind!r} needs a store for its call ledger: use evoagent.llm.build")
    if kind == "enumerate":
        raise UserError("policy.kind = enumerate (random legal moves) plays env.kind = \"game24\" only")
    if kind == "replay":
        return ReplayPolicy.from_bundled(params.get("sources") or None, explore=params.get("explore", 0.1))
    raise UserError(f"policy.kind: unknown policy {kind!r} (have {', '.join(POLICIES)})")


__all__ = ["Action", "Guidance", "POLICIES", "Policy", "ReplayPolicy", "SUBMIT", "make_policy", "masked"]
