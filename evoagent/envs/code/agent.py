"""The code agent over an LLM (Claude, or an OpenAI-compatible server), in Reflexion's loop.

Each step is one request built as Reflexion builds its next attempt: the
problem with its visible tests (the prompt-cached prefix), the reflections
written so far, the last implementation and the visible tests' feedback on
it. The model answers with a reflection (text: the step's thought) and a
``write_program`` call holding the whole new implementation, or ``submit``.
Operator guidance (``revise``'s diagnosis) is shown as a reflection on an
earlier attempt. The policy sees observations only: never the hidden tests,
never a reward.

The operators' LLM side (:class:`CodeAdvisor`): ``revise`` asks the model for
Reflexion's self-reflection on the first wrong program and its test feedback;
``recombine`` and ``refine`` use their own rules (a program is one action:
the best one alone is the shortest clean-up). Offline, :class:`RecordedAdvisor`
gives ``revise`` the reflection the recorder wrote on that program's feedback
(else the feedback's failed tests), and the replay policy then writes the
program the recorder wrote after that reflection: Reflexion's loop, replayed.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from evoagent.envs.code.prompt import CODE_AGENT, CODE_REFLECT
from evoagent.policies.base import SUBMIT, Action, Guidance, is_submit
from evoagent.policies.llm import EPHEMERAL, reply_action, tool_call
from evoagent.trajectory import Step, Task, Trajectory

__all__ = ["CodeAdvisor", "CodeLLMPolicy", "RecordedAdvisor", "failed_tests",
           "reflexion_prompt"]

PROGRAM_CHARS = 8000  # of the last program shown to the model
REFLECTIONS = 4  # the latest reflections kept in the prompt


def _programs(history: Sequence[Step]) -> list[Step]:
    return [s for s in history if not is_submit(s.action)]


def reflexion_prompt(history: Sequence[Step], guidance: Guidance, observation_chars: int) -> str:
    """The part of the request after the problem: reflections so far, the last program and its feedback."""
    written = _programs(history)
    reflections = [s.thought.strip() for s in written[1:] if s.thought and s.thought.strip()]
    if guidance.notes:
        reflections.append(guidance.notes.strip())
    parts = []
    if reflections:
        parts.append("Your reflections so far:\n" + "".join(f"- {r}\n" for r in reflections[-REFLECTIONS:]))
    if written:
        last = written[-1]
        parts.append(f"Your last implementation (attempt {len(written)}):\n```python\n"
                     f"{last.action[:PROGRAM_CHARS]}\n```")
        parts.append("Test feedback:\n" + (last.observation or "(not executed)")[:observation_chars])
        parts.append("Reflect on the feedback, then write an improved implementation, or submit if it passed.")
    elif guidance.avoid:
        parts.append(f"{len(guidance.avoid)} earlier implementations failed; write a different one.")
    return "\n\n".join(parts)


class CodeLLMPolicy:
    """A code-writing agent over any transport; see the module docstring."""

    def __init__(self, name: str, client: Any, *, model: str, max_tokens: int = 2048, temperature: float = 1.0,
                 max_steps: int = 10, observation_chars: int = 2000):
        self.name, self.client, self.model = name, client, model
        self.max_tokens, self.temperature = max_tokens, temperature
        self.max_steps, self.observation_chars = max_steps, observation_chars

    def request(self, task: Task, history: Sequence[Step], guidance: Guidance) -> dict[str, Any]:
        from evoagent.envs.code.parts import render_task

        tools = [dict(t) for t in CODE_AGENT.tools]
        tools[-1] = {**tools[-1], "cache_control": EPHEMERAL}
        content: list[dict[str, Any]] = [{"type": "text", "cache_control": EPHEMERAL,
                                          "text": CODE_AGENT.user.format(problem=render_task(task))}]
        rest = reflexion_prompt(history, guidance, self.observation_chars)
        if rest:
            content.append({"type": "text", "text": rest})
        return {"model": self.model, "max_tokens": self.max_tokens, "temperature": self.temperature,
                "system": [{"type": "text", "text": CODE_AGENT.system.format(max_steps=self.max_steps),
                            "cache_control": EPHEMERAL}],
                "tools": tools, "messages": [{"role": "user", "content": content}]}

    def next_action(self, task: Task, history: Sequence[Step], guidance: Guidance,
                    rng: random.Random) -> Action:
        nonce = f"{rng.getrandbits(64):016x}"
        reply = self.client.complete(self.request(task, history, guidance), template=CODE_AGENT.name,
                                     template_hash=CODE_AGENT.hash, nonce=nonce,
                                     valid=lambda a: _usable(a) is not None)
        block = _usable({"content": reply.content})
        text = SUBMIT if block is None or block["name"] == "submit" else str(block["input"]["program"])
        return reply_action(text, reply)


def _usable(answer: dict[str, Any]) -> dict[str, Any] | None:
    block = tool_call(answer, ("write_program", "submit"))
    if block is not None and block["name"] == "write_program":
        program = (block.get("input") or {}).get("program")
        return block if isinstance(program, str) and program.strip() else None
    return block


def failed_tests(observation: str | None) -> str:
    """The part of a code observation that says what failed (the error line and the failed tests)."""
    text = observation or ""
    head, sep, failed = text.partition("\nTests failed:\n")
    error = head.split("\n", 1)[0] if head.startswith("Error: ") else ""
    failed = failed.split("\nOutput:\n", 1)[0].strip() if sep else ""
    return "\n".join(x for x in (error, f"Tests failed:\n{failed}" if failed else "") if x)


class CodeAdvisor:
    """The operators' LLM side for code: Reflexion's self-reflection for ``revise``; see the module docstring."""

    def __init__(self, client: Any, *, model: str, max_tokens: int = 512, observation_chars: int = 2000):
        self.client, self.model, self.max_tokens, self.observation_chars = client, model, max_tokens, observation_chars

    def reflect(self, task: Task, parent: Trajectory, wrong: int, rng: random.Random) -> str:
        from evoagent.envs.code.parts import render_task

        if not 0 <= wrong < len(parent.steps) or is_submit(parent.steps[wrong].action):
            return ""
        step = parent.steps[wrong]
        request = {"model": self.model, "max_tokens": self.max_tokens, "system": CODE_REFLECT.system,
                   "tools": list(CODE_REFLECT.tools), "tool_choice": {"type": "tool", "name": "write_reflection"},
                   "messages": [{"role": "user", "content": CODE_REFLECT.user.format(
                       problem=render_task(task), program=step.action[:PROGRAM_CHARS],
                       feedback=(step.observation or "(not executed)")[: self.observation_chars])}]}
        reply = self.client.complete(request, template=CODE_REFLECT.name, template_hash=CODE_REFLECT.hash,
                                     nonce=f"{rng.getrandbits(64):016x}",
                                     valid=lambda a: tool_call(a, ("write_reflection",)) is not None)
        block = tool_call({"content": reply.content}, ("write_reflection",))
        return str((block or {}).get("input", {}).get("reflection", "")).strip()

    def combine(self, task: Task, parents: Sequence[Trajectory], rng: random.Random) -> list[str] | None:
        return None  # one program is one action: recombine's own rule picks among the parents' programs

    def shorten(self, task: Task, parent: Trajectory, rng: random.Random) -> list[str] | None:
        return None  # refine's own rule: the best program alone


class RecordedAdvisor(CodeAdvisor):
    """Offline: the recorded reflection on a program's feedback, else its failed tests (see the module docstring)."""

    def __init__(self, reflections: dict[tuple[str, str], str]) -> None:
        self.reflections = reflections  # (task id, program) -> the reflection the recorder wrote on its feedback

    def reflect(self, task: Task, parent: Trajectory, wrong: int, rng: random.Random) -> str:
        if not 0 <= wrong < len(parent.steps):
            return ""
        step = parent.steps[wrong]
        return self.reflections.get((task.task_id, step.action)) or failed_tests(step.observation)
