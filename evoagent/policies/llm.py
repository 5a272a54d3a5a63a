"""What the LLM policies of every environment share: the opening message, tool-call parsing.

The stable prefix (system prompt, tools, task) carries ``cache_control`` so
that every rollout of a task reads it from the prompt cache. The agents
themselves live with their environments (each environment's package).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evoagent.policies.base import Action, Guidance
from evoagent.trajectory import Task

EPHEMERAL = {"type": "ephemeral"}


def schema_text(task: Task) -> str:
    """A task's tables (``meta["schema"]``), one ``- table(col, ...)`` line each."""
    return "\n".join(f"- {table}({', '.join(cols)})" for table, cols in sorted((task.meta.get("schema") or {}).items()))


def tool_call(answer: dict[str, Any], names: Sequence[str]) -> dict[str, Any] | None:
    """The first tool_use block calling one of ``names`` with usable input, if any."""
    for block in answer.get("content") or []:
        if block.get("type") == "tool_use" and block.get("name") in names:
            args = block.get("input") or {}
            if block["name"] == "execute_sql" and not str(args.get("query", "")).strip():
                continue
            return block
    return None


def opening(text: str, guidance: Guidance, *, advice: str, failed: str) -> list[dict[str, Any]]:
    """The first user message: the task (the prompt-cached prefix), then any operator guidance."""
    first: list[dict[str, Any]] = [{"type": "text", "cache_control": EPHEMERAL, "text": text}]
    if guidance.notes or guidance.avoid:
        avoid = "".join(f"\n- {a}" for a in sorted(guidance.avoid))
        first.append({"type": "text", "text": f"{advice}: {guidance.notes}"
                      + (f"\n{failed}; do not repeat them:{avoid}" if avoid else "")})
    return first


def reply_action(text: str, reply: Any) -> Action:
    """The action ``text`` a model's ``reply`` chose, with its text blocks as the thought and its cost
    and tokens (cache reads and writes count as input)."""
    thought = " ".join(b.get("text", "") for b in reply.content if b.get("type") == "text").strip()
    usage = reply.usage
    return Action(text, thought=thought, cost_usd=reply.cost_usd,
                  input_tokens=usage.get("input_tokens", 0) + usage.get("cache_read_tokens", 0)
                  + usage.get("cache_write_tokens", 0), output_tokens=usage.get("output_tokens", 0))
