"""The environment protocol every operator, reward model and benchmark drives.

Gym-like and text-in/text-out: ``reset(task)`` starts an episode and returns
what the agent is told; ``step(action)`` returns ``(observation, reward,
done, info)`` where ``reward`` is the step's reward against gold (the oracle
signal) and ``info["valid"]`` says whether the action ran; ``submit()`` ends
the episode and returns the outcome reward. Environments hold connections:
one per thread (``Context.env``), never shared.

An environment whose episode state is cheap to copy also implements
:class:`Restorable`: ``snapshot()`` returns that state as an immutable value
and ``restore(state)`` puts any instance of the same environment (another
thread's included) back into it, so a prefix that many rollouts continue
from (Monte-Carlo scoring: k per prefix) is executed once instead of k
times. It is optional: ``rollout`` re-executes the prefix for an environment
without it, with the same results.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from evoagent.trajectory import Task


@runtime_checkable
class Env(Protocol):
    """What an environment implements; see the module docstring."""

    name: str

    def reset(self, task: Task) -> str: ...

    def step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]: ...

    def submit(self) -> float: ...

    def close(self) -> None: ...


@runtime_checkable
class Restorable(Protocol):
    """An environment whose episode state can be saved and put back (optional; see the module docstring).

    ``snapshot()`` after some steps, then ``restore(state)`` on any instance of
    the same class, must leave it answering every later ``step`` exactly as the
    original would have. The state must not change after it was taken (the
    environment replaces, never mutates, what it hands out).
    """

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...
