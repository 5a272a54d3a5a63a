"""The InterCode-SQL agent over an LLM: Claude (``anthropic``) or an OpenAI-compatible server (``openai``).

The agent acts through tool use, InterCode-style: the prompt gives the
database, its tables and the question; each step is an ``execute_sql`` call
whose result comes back as the tool result; ``submit`` ends the episode.
Every call goes through the ledger-backed client, keyed with a nonce drawn
from the work item's generator: a resumed campaign gets the same answers
back without paying again.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from evoagent.llm.client import LLMClient
from evoagent.policies.base import SUBMIT, Action, Guidance
from evoagent.policies.llm import EPHEMERAL, opening, reply_action, tool_call
from evoagent.envs.intercode_sql.prompt import AGENT
from evoagent.trajectory import Step, Task


class LLMPolicy:
    """A tool-using SQL agent over any transport; see the module docstring."""

    def __init__(self, name: str, client: LLMClient, *, model: str, max_tokens: int = 512,
                 temperature: float = 1.0, max_steps: int = 10, observation_chars: int = 2000):
        self.name, self.client, self.model = name, client, model
        self.max_tokens, self.temperature = max_tokens, temperature
        self.max_steps, self.observation_chars = max_steps, observation_chars

    def request(self, task: Task, history: Sequence[Step], guidance: Guidance) -> dict[str, Any]:
        tools = [dict(t) for t in AGENT.tools]
        tools[-1] = {**tools[-1], "cache_control": EPHEMERAL}
        from evoagent.envs.intercode_sql import render_task

        first = opening(render_task(task), guidance,
                        advice="Advice from a review of an earlier attempt", failed="These actions failed before")
        messages: list[dict[str, Any]] = [{"role": "user", "content": first}]
        for s in history:
            tool_id = f"toolu_{s.idx:03d}"
            content: list[dict[str, Any]] = [{"type": "text", "text": s.thought}] if s.thought else []
            content.append({"type": "tool_use", "id": tool_id, "name": "execute_sql", "input": {"query": s.action}})
            messages.append({"role": "assistant", "content": content})
            obs = (s.observation or "(not executed)")[: self.observation_chars]  # an imported blocked step has none
            messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": obs}]})
        return {
            "model": self.model, "max_tokens": self.max_tokens, "temperature": self.temperature,
            "system": [{"type": "text", "text": AGENT.system.format(max_steps=self.max_steps),
                        "cache_control": EPHEMERAL}],
            "tools": tools, "messages": messages,
        }

    def next_action(self, task: Task, history: Sequence[Step], guidance: Guidance,
                    rng: random.Random) -> Action:
        request = self.request(task, history, guidance)
        nonce = f"{rng.getrandbits(64):016x}"
        reply = self.client.complete(request, template=AGENT.name, template_hash=AGENT.hash, nonce=nonce,
                                     valid=lambda a: tool_call(a, ("execute_sql", "submit")) is not None)
        block = tool_call({"content": reply.content}, ("execute_sql", "submit"))
        text = SUBMIT if block is None or block["name"] == "submit" else str(block["input"]["query"])
        return reply_action(text, reply)
