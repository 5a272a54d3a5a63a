"""A stand-in "model" for the loopback fake server that plays the code environment (tests, demos).

As the agent (``write_program``/``submit``) it reads the request as the real
model would: it finds the problem's function among ``attempts`` (function
name -> the programs to write, attempt after attempt), writes attempt N + 1
after the prompt's "(attempt N)", with a reflection quoting the last failed
test, and submits once the feedback shows every visible test passed or its
programs are used up. Without ``attempts`` it writes the recorded LATS and
Reflexion programs of the problem, in the recorders' order. As the
``revise`` reviewer (``write_reflection``) it names the first failed test.
Everything it answers follows from the request's text: the same request
always gets the same answer. ``malformed`` makes a share of answers lack a
tool call (drawn per request and attempt with ``seed``, so a retry can
succeed and the same run always sees the same faults).
"""
from __future__ import annotations

import functools
import random
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from evoagent.envs.code.agent import failed_tests
from evoagent.envs.code.policies import passed_all_visible
from evoagent.llm.wire import first_user_text, request_key, tool_use_reply

__all__ = ["code_responder"]

_ATTEMPT = re.compile(r"Your last implementation \(attempt (\d+)\)")
_FEEDBACK = re.compile(r"Test feedback:\n(.*?)\n\nReflect on the feedback", re.S)


@functools.lru_cache(maxsize=1)
def _recorded() -> dict[str, tuple[str, ...]]:
    """problem text -> the recorded programs of its task."""
    from evoagent.envs.code.data import load_tasks
    from evoagent.envs.code.policies import recorded_programs

    pool = recorded_programs()
    return {t.question: tuple(p for p, _ in pool.get(t.task_id, ())) for s in ("humaneval", "mbpp")
            for t in load_tasks(s)}


def _programs(text: str, attempts: Mapping[str, Sequence[str]] | None) -> Sequence[str]:
    if attempts is not None:
        return next((list(p) for name, p in attempts.items() if f"def {name}(" in text), [])
    return next((p for question, p in _recorded().items() if question and question in text), ())


def _first_failed(feedback: str) -> str:
    lines = [line for line in failed_tests(feedback).splitlines() if line.strip() and line != "Tests failed:"]
    return lines[0] if lines else "the tests did not pass"


def code_responder(attempts: Mapping[str, Sequence[str]] | None = None, malformed: float = 0.0,
                   seed: int = 0) -> Any:
    """A responder for :class:`evoagent.testing.fake_server.FakeAnthropic` (see the module docstring)."""
    seen: dict[str, int] = {}  # attempts per request: the n-th try of a request is always the same
    lock = threading.Lock()

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        key = request_key(body)
        with lock:
            attempt = seen[key] = seen.get(key, 0) + 1
        if malformed > 0 and random.Random(f"{seed}:{key}:{attempt}").random() < malformed:
            return {"content": [{"type": "text", "text": "I would rather explain than call a tool."}],
                    "stop_reason": "end_turn"}
        return answer(body)

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        text = first_user_text(body)
        if any(t.get("name") == "write_reflection" for t in body.get("tools") or ()):
            feedback = text.split("Test feedback:\n", 1)[-1]
            return tool_use_reply("write_reflection", {"reflection": f"It failed {_first_failed(feedback)}; "
                                                                "handle that case."})
        found = _ATTEMPT.search(text)
        done = int(found.group(1)) if found else 0
        feedback = _FEEDBACK.search(text)
        if feedback and passed_all_visible(feedback.group(1)):
            return tool_use_reply("submit", {}, "Every visible test passed.")
        programs = _programs(text, attempts)
        if done >= len(programs):
            return tool_use_reply("submit", {}, "No better implementation comes to mind.")
        thought = f"Attempt {done} failed {_first_failed(feedback.group(1))}." if feedback else ""
        return tool_use_reply("write_program", {"program": programs[done]}, thought)

    return respond
