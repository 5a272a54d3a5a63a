"""The policy interface: (task, history, guidance) -> next action.

Every operator drives a policy through this one call, so an offline replay
policy, Claude or a local OpenAI-compatible server are interchangeable.
Policies see the question, the schema and the steps so far (actions and
observations, with rewards masked); never the gold answer or the reward.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from evoagent.registry import Key
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


# The keys of a policy replaying recorded runs (each environment's ``replay``): which recordings, and
# how often to jump to another recorded action.
RECORDED_KEYS: dict[str, Key] = {
    "policy.sources": Key(list, [], lambda x: all(isinstance(d, str) for d in x), "a list of names"),
    "policy.explore": Key((int, float), 0.1, lambda x: 0 <= x <= 1, "within [0, 1]"),
}


@dataclass
class Made:
    """What a policy part builds for a campaign: the policy, and for LLM policies the operators'
    advisor, the shared budget and what to close when the campaign ends."""

    policy: Policy
    advisor: Any = None
    budget: Any = None
    closers: list[Callable[[], None]] = field(default_factory=list)


@dataclass(frozen=True)
class PolicyPart:
    """A policy as a campaign part (``policy.kind``; see ``Environment.policies`` for the naming).

    ``make(cfg, store)`` builds it (``store`` is None where none exists yet: an offline policy is
    built before the store, so its errors leave no file). ``needs_store``: its calls go through the
    store's call ledger (LLM policies), so it is built with the store and runs in the campaign's
    process. ``check(cfg)``: a check that needs more than its keys (an API key in the environment),
    before any file is written. ``keys`` by full path (``policy.model``); ``envs``: the environments
    it is made for (empty: any).
    """

    kind: ClassVar[str] = "policy"
    name: str
    make: Callable[[Any, Any], Made]
    keys: Mapping[str, Key] = field(default_factory=dict)
    envs: tuple[str, ...] = ()
    needs_store: bool = False
    check: Callable[[Any], None] | None = None
    doc: str = ""

    def path(self, key: str) -> str:
        """Keys are declared by full path."""
        return key
