"""The policy interface: (task, history, guidance) -> next action.

Every operator drives a policy through this one call, so an offline replay
policy, Claude or a local OpenAI-compatible server are interchangeable.
Policies see the question, the schema and the steps so far (actions and
observations, with rewards masked); never the gold answer or the reward.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from evoagent.trajectory import Step, Task

SUBMIT = "submit"


def is_submit(text: str) -> bool:
    """Whether an action is the one that ends the episode (any case, surrounding space)."""
    return text.strip().lower() == SUBMIT


@dataclass(frozen=True)
class Guidance:
    """What an operator asks of the next actions.

    ``avoid``: actions not to take (e.g. the ones that failed); ``notes``: free
    text for LLM policies (what went wrong, a plan); ``stop_after_prefix``: end
    the episode once the operator's given prefix has been executed.
    """

    avoid: frozenset[str] = frozenset()
    notes: str = ""
    stop_after_prefix: bool = False


@dataclass(frozen=True)
class Action:
    """A policy's answer: the action text, its reasoning and what it cost."""

    text: str
    thought: str = ""
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    meta: dict[str, str] = field(default_factory=dict)


class Policy(Protocol):
    """Anything with a name and ``next_action``; return ``SUBMIT`` to end the episode."""

    name: str

    def next_action(
        self, task: Task, history: Sequence[Step], guidance: Guidance, rng: random.Random
    ) -> Action: ...


def masked(history: Sequence[Step]) -> tuple[Step, ...]:
    """The history as a policy may see it: rewards hidden (they come from the gold answer)."""
    return tuple(Step(s.idx, s.action, s.observation, math.nan, s.thought, s.valid, None) for s in history)
