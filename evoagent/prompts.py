"""Prompt templates for LLM policies and LLM-driven operators, each with a hash.

A template's hash (its text and tool schemas) is part of every call's key and
record, so changing a prompt never reuses answers given to the old one, and
the ledger says which prompt produced which answer.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AGENT", "COMBINE", "GAME24", "JUDGE", "REFLECT", "SHORTEN", "Template", "render_steps"]


@dataclass(frozen=True)
class Template:
    name: str
    system: str
    user: str
    tools: tuple[dict[str, Any], ...] = field(default=())

    @property
    def hash(self) -> str:
        text = json.dumps([self.name, self.system, self.user, self.tools], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"name": name, "description": description,
            "input_schema": {"type": "object", "properties": properties, "required": required}}


AGENT = Template(
    name="agent/intercode_sql/v1",
    system=(
        "You answer questions about a MySQL database by running SQL against it. "
        "Run one statement at a time with the execute_sql tool and read its result; explore "
        "the schema first when unsure (SHOW TABLES, DESCRIBE t). The answer is the result of "
        "your last query: when it answers the question, call the submit tool. Take at most "
        "{max_steps} steps."
    ),
    user="Database: {db}\nTables:\n{schema}\n\nQuestion: {question}",
    tools=(
        _tool("execute_sql", "Run one MySQL statement and see its result rows or error.",
              {"query": {"type": "string", "description": "one SQL statement"}}, ["query"]),
        _tool("submit", "Finish: your last query's result is your answer.", {}, []),
    ),
)

GAME24 = Template(
    name="agent/game24/v1",
    system=(
        "You play the Game of 24: combine the given numbers with + - * / (each number used exactly "
        "once) to obtain 24. Work one step at a time with the step tool, in the form "
        "'a op b = c (left: numbers left)', e.g. '4 * 5 = 20 (left: 6 10 20)'; exact fractions such as "
        "5/3 are fine. Each step's result tells you the numbers left, or the error. When one number "
        "is left the game is over; you may instead give a whole expression with the answer tool."
    ),
    user="Input: {numbers}",
    tools=(
        _tool("step", "Combine two of the numbers left.",
              {"line": {"type": "string", "description": "one step: a op b = c (left: ...)"}}, ["line"]),
        _tool("answer", "Finish with an expression over the four input numbers that equals 24.",
              {"expression": {"type": "string", "description": "e.g. (10 - 4) * (6 - 5) * 4 = 24"}},
              ["expression"]),
    ),
)

REFLECT = Template(
    name="operator/revise/v2",
    system=(
        "You review an agent's attempt at answering a question with SQL. Find what went wrong "
        "and say what the agent should do differently when it retries from the failing step."
    ),
    user=(
        "Database: {db}\nTables:\n{schema}\n\nQuestion: {question}\n\n"
        "The attempt:\n{steps}\n\n"
        "{outcome}The first step that went wrong looks like [{wrong}]. "
        "Call write_guidance with a diagnosis and concrete advice."
    ),
    tools=(_tool("write_guidance", "Advice for the retry.",
                 {"diagnosis": {"type": "string"}, "advice": {"type": "string"}},
                 ["diagnosis", "advice"]),),
)

COMBINE = Template(
    name="operator/recombine/v2",
    system=(
        "You combine several attempts at the same SQL question into one better plan, reusing "
        "the steps that worked: e.g. one attempt's schema exploration, another's query."
    ),
    user=(
        "Database: {db}\nTables:\n{schema}\n\nQuestion: {question}\n\nAttempts:\n{attempts}\n\n"
        "Say what each attempt did well, then call propose_plan with the steps to run, in order, "
        "as references like A0 or B3 (attempt letter, step index)."
    ),
    tools=(_tool("propose_plan", "The combined plan as step references, e.g. [\"A0\", \"B2\"].",
                 {"steps": {"type": "array", "items": {"type": "string"}},
                  "rationale": {"type": "string"}}, ["steps"]),),
)

SHORTEN = Template(
    name="operator/refine/v1",
    system=(
        "You clean up a successful SQL session: keep only the steps needed to reach the same "
        "final answer, in order, so that it is shorter and still correct."
    ),
    user=(
        "Database: {db}\nTables:\n{schema}\n\nQuestion: {question}\n\nThe session:\n{steps}\n\n"
        "Call keep_steps with the indexes of the steps to keep."
    ),
    tools=(_tool("keep_steps", "Indexes of the steps to keep, in order.",
                 {"steps": {"type": "array", "items": {"type": "integer"}},
                  "rationale": {"type": "string"}}, ["steps"]),),
)


# The ``judge`` reward model (evoagent/rewards/judge.py). Its request: this system prompt and the
# task (question, database, tables) as the prompt-cached prefix, then the steps and the question.
JUDGE = Template(
    name="reward/judge/v1",
    system=(
        "You judge the progress of an agent that answers a question by acting in an environment "
        "(e.g. running SQL against a database). You see the task, then the agent's steps so far: "
        "each action and what the environment answered. Judge only the last step. If the agent "
        "submitted after it, judge whether its final answer (the result of its last query) answers "
        "the question correctly; otherwise judge whether the last step moves the agent toward a "
        "correct answer. Call score_step with a score from 0 (wrong, or a step away from the "
        "answer) to 1 (correct, or clearly on the way to it)."
    ),
    user="Steps so far:\n{steps}\n\nSubmitted as the final answer after step {n}: {submitted}.\n"
         "Call score_step to judge step {n}.",
    tools=(_tool("score_step", "Your judgement of the last step.",
                 {"reason": {"type": "string", "description": "one or two sentences"},
                  "score": {"type": "number", "minimum": 0, "maximum": 1}}, ["score"]),),
)


def render_steps(steps: Any, prefix: str = "", observation_chars: int = 300, show_rewards: bool = False) -> str:
    """Steps as numbered lines an LLM (or the fake server) can refer back to.

    Rewards appear only with ``show_rewards``: when the campaign's search signal
    is one the policy may see (not derived from the searched tasks' gold).
    """
    lines = []
    for s in steps:
        if s.observation is None:  # an imported action the recorder never executed
            lines.append(f"{prefix}[{s.idx}] {s.action}\n    -> (never executed)")
            continue
        obs = s.observation if len(s.observation) <= observation_chars else s.observation[:observation_chars] + "..."
        tail = f" (reward {s.reward:g})" if show_rewards else ""
        lines.append(f"{prefix}[{s.idx}] {s.action}\n    -> {obs}{tail}")
    return "\n".join(lines) if lines else "(no steps)"
