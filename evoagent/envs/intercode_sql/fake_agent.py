"""A stand-in "model" for the fake server that plays InterCode-SQL sensibly.

As the agent (``execute_sql``/``submit`` tools) it answers like the offline
replay policy would: recorded real-LLM actions, chosen from a generator seeded
by the request's content, so the same request always gets the same answer.
As the operators' reviewer it writes guidance, proposes plans from the step
references it is shown, and keeps the best step. ``malformed`` makes a share
of answers lack a tool call (drawn per request and attempt, so a retry can succeed
and the same run always sees the same faults).
"""
from __future__ import annotations

import random
import re
import threading
from typing import Any

from evoagent.llm.wire import first_user_text, request_key, tool_use_reply
from evoagent.policies.base import SUBMIT, Guidance
from evoagent.trajectory import Step

_REF = re.compile(r"^([A-Z])?\[(\d+)\] .*\n\s+-> .*?(?:\(reward ([0-9.eE+-]+)\))?$", re.M)


def _key(body: dict[str, Any]) -> int:
    return int(request_key(body)[:15], 16)


def intercode_responder(sources: list[str] | None = None, explore: float = 0.2, malformed: float = 0.0,
                        seed: int = 0) -> Any:
    """A responder for :class:`evoagent.testing.fake_server.FakeAnthropic`."""
    from evoagent.envs.intercode_sql.data import load_tasks
    from evoagent.envs.intercode_sql.walk import ReplayPolicy

    policy = ReplayPolicy.from_bundled(sources, explore=explore)
    tasks = {(t.meta["db"], t.question): t for t in load_tasks()}
    seen: dict[int, int] = {}  # attempts per request: the n-th try of a request is always the same
    lock = threading.Lock()

    def agent(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        text = first_user_text(body)
        db = re.search(r"^Database: (.*)$", text, re.M)
        question = re.search(r"^Question: (.*)$", text, re.M)
        task = tasks.get((db.group(1) if db else "", question.group(1) if question else ""))
        if task is None:
            return tool_use_reply("submit", {}, "I do not know this task.")
        history = [Step(i, b["input"].get("query", ""), "", 0.0)
                   for i, b in enumerate(b for m in body["messages"] if m["role"] == "assistant"
                                         for b in m["content"] if b.get("type") == "tool_use")]
        avoid = frozenset(re.findall(r"^- (.*)$", text.split("do not repeat them:", 1)[1], re.M)) \
            if "do not repeat them:" in text else frozenset()
        action = policy.next_action(task, history, Guidance(avoid=avoid), rng).text
        if action == SUBMIT:
            return tool_use_reply("submit", {}, "The last result answers the question.")
        return tool_use_reply("execute_sql", {"query": action}, "Next I run this query.")

    def refs(body: dict[str, Any]) -> list[tuple[str, int, float]]:
        # Without rewards in the prompt (a gold-derived signal), a later step counts as better.
        return [(m.group(1) or "", int(m.group(2)), float(m.group(3)) if m.group(3) else int(m.group(2)) / 100)
                for m in _REF.finditer(first_user_text(body))]

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        key = _key(body)
        with lock:
            attempt = seen[key] = seen.get(key, 0) + 1
        broken = malformed > 0 and random.Random(f"{seed}:{key}:{attempt}").random() < malformed
        if broken:
            return {"content": [{"type": "text", "text": "I think the answer is obvious."}], "stop_reason": "end_turn"}
        tools = {t["name"] for t in body.get("tools") or []}
        rng = random.Random(key)
        if "execute_sql" in tools:
            return agent(body, rng)
        if "write_guidance" in tools:
            return tool_use_reply("write_guidance", {
                "diagnosis": "The query did not match the question's intent or failed to run.",
                "advice": "Check the table and column names with DESCRIBE, then query only what is asked."})
        if "propose_plan" in tools:
            found = refs(body)
            if not found:
                return tool_use_reply("propose_plan", {"steps": [], "rationale": "nothing to reuse"})
            best = max(found, key=lambda r: (r[2], -ord(r[0][:1] or "A"), -r[1]))
            explore = [r for r in found if r[0] != best[0] and r[2] <= 0.0][:2]
            plan = [f"{r[0]}{r[1]}" for r in explore + [best]]
            return tool_use_reply("propose_plan", {"steps": plan, "rationale": "exploration, then the best query"})
        if "keep_steps" in tools:
            found = refs(body)
            keep = [max(found, key=lambda r: (r[2], -r[1]))[1]] if found else []
            return tool_use_reply("keep_steps", {"steps": keep, "rationale": "only the answering query matters"})
        return {"content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn"}

    return respond
