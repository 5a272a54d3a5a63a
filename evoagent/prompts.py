"""Prompt templates for LLM-driven operators and reward models, each with a hash (an environment's
own agent prompt lives in its package, as a ``Template`` too).

A template's hash (its text and tool schemas) is part of every call's key and
record, so changing a prompt never reuses answers given to the old one, and
the ledger says which prompt produced which answer.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["COMBINE", "JUDGE", "REFLECT", "SHORTEN", "Template", "render_steps", "tool"]


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


def tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"name": name, "description": description,
            "input_schema": {"type": "object", "properties": properties, "required": required}}


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
    tools=(tool("write_guidance", "Advice for the retry.",
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
    tools=(tool("propose_plan", "The combined plan as step references, e.g. [\"A0\", \"B2\"].",
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
    tools=(tool("keep_steps", "Indexes of the steps to keep, in order.",
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
    tools=(tool("score_step", "Your judgement of the last step.",
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
