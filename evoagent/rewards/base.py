"""The reward-model interface: score many (task, step prefix) queries at once.

A reward model answers "how good is this prefix of actions on this task?"
with one value per query. Callers never call a model directly: they go
through :class:`evoagent.rewards.scorer.Scorer`, which looks every query up in
the store first, batches what is missing across all running items, and
writes each new score to the store before anyone uses it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evoagent.trajectory import trajectory_id


@dataclass(frozen=True)
class Query:
    """The prefix ``actions`` of an episode on ``task_id``; its last action is the step scored.

    ``observed`` is the environment's reward for that step when the prefix was
    executed by an episode (the oracle reads it instead of re-executing).
    ``terminal``: the episode was submitted right after this step, so the
    value asked for is that episode's, not that of a state the policy may
    continue from (a different key: the prefix with its submit).
    """

    task_id: str
    actions: tuple[str, ...]
    observed: float | None = None
    terminal: bool = False
    # What the environment answered to each action, when the prefix was executed (learned and
    # remote models read them; never the step rewards, which are gold's). Not part of the key.
    observations: tuple[str | None, ...] = field(default=(), compare=False)

    @property
    def step_idx(self) -> int:
        return len(self.actions) - 1

    @property
    def prefix_id(self) -> str:
        """Content id of the prefix (with its submit when terminal)."""
        return trajectory_id(self.task_id, self.actions + (("submit",) if self.terminal else ()))

    @property
    def key(self) -> tuple[str, int]:
        return (self.prefix_id, self.step_idx)


@dataclass(frozen=True)
class Score:
    """One query's value and the environment steps it took to compute it."""

    value: float
    env_steps: int = 0


class RewardModel(ABC):
    """Scores prefixes in batches; ``source`` names the model and every parameter of it.

    ``uses_gold``: whether its values derive from the gold answers of the tasks
    being searched (then no policy prompt may show them). ``observes``: its
    value for an executed step is that step's own observation (the oracle), so
    it is recorded with the trajectory rather than computed apart.
    """

    name: str = ""
    uses_gold: bool = True
    observes: bool = False

    @property
    @abstractmethod
    def source(self) -> str:
        """``name(param=value,...)``: the ``reward_source`` of every row it writes."""

    @abstractmethod
    def score(self, queries: Sequence[Query]) -> list[Score]:
        """One score per query, in order. Must be deterministic per query."""

    def close(self) -> None:
        """Release threads or connections."""


def source_name(name: str, params: dict[str, Any]) -> str:
    """A reward source string from a model name and its parameters, in key order."""
    inner = ",".join(f"{k}={params[k]}" for k in sorted(params))
    return f"{name}({inner})" if inner else name
