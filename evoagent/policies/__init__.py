"""Policies by name. ``replay`` is the offline default; LLM policies plug in here too."""
from __future__ import annotations

from typing import Any

from evoagent.errors import UserError
from evoagent.policies.base import SUBMIT, Action, Guidance, Policy, masked
from evoagent.policies.replay import RecorderStopsReplayPolicy, ReplayPolicy

# replay_recorder_stops: the old walk that submits where recordings ended (at gold); old figures only
POLICIES = ("replay", "anthropic", "openai", "enumerate", "replay_recorder_stops")  # enumerate: game24 only
REPLAY = {"replay": ReplayPolicy, "replay_recorder_stops": RecorderStopsReplayPolicy}


def make_policy(kind: str, **params: Any) -> Policy:
    """Build the policy a campaign file names under ``[policy]``."""
    if kind in ("anthropic", "openai"):
        raise UserError(f"policy {kind!r} needs a store for its call ledger: use evoagent.llm.build")
    if kind == "enumerate":
        raise UserError("policy.kind = enumerate (random legal moves) plays env.kind = \"game24\" only")
    if kind in REPLAY:
        options = {k: params[k] for k in ("explore", "submit_p", "distractors", "edit_p") if k in params}
        return REPLAY[kind].from_bundled(params.get("sources") or None, **options)
    raise UserError(f"policy.kind: unknown policy {kind!r} (have {', '.join(POLICIES)})")


__all__ = ["Action", "Guidance", "POLICIES", "Policy", "REPLAY", "RecorderStopsReplayPolicy", "ReplayPolicy", "SUBMIT", "make_policy", "masked"]
