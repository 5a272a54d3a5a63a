"""The environment protocol every operator, reward model and benchmark drives.

Gym-like and text-in/text-out: ``reset(task)`` starts an episode and returns
what the agent is told; ``step(action)`` returns ``(observation, reward,
done, info)`` where ``reward`` is the step's reward against gold (the oracle
signal) and ``info["valid"]`` says whether the action ran; ``submit()`` ends
the episode and returns the outcome reward. Environments hold connections:
one per thread (``Context.env``), never shared.
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
