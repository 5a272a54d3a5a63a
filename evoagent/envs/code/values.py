"""The code environment's gold-free reward: ``visible``, the share of visible tests the program passes.

A prefix's value is that of its last program (the one an episode would
submit): passed visible tests / visible tests, run in the sandbox (cached
per task and program, so a program is run once per process). A prefix
without a program, or a task without visible tests, is 0.0. It reads the
visible tests only, never the hidden ones: ``uses_gold`` False. The hidden
outcome is the environment's own reward (``oracle``, fitness ``env``).
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from evoagent.envs.code.env import run_visible
from evoagent.policies.base import is_submit
from evoagent.rewards.base import Query, RewardModel, Score
from evoagent.trajectory import Task

__all__ = ["VisibleTests"]


class VisibleTests(RewardModel):
    """See the module docstring."""

    name = "visible"
    uses_gold = False

    def __init__(self, tasks: dict[str, Task]) -> None:
        self.tasks = tasks
        self._lock = threading.Lock()
        self.runs = 0  # sandbox executions (tests and diagnostics)

    @property
    def source(self) -> str:
        return "visible"

    def score(self, queries: Sequence[Query]) -> list[Score]:
        return [Score(self.value(q.task_id, q.actions)) for q in queries]

    def value(self, task_id: str, actions: Sequence[str]) -> float:
        programs = [a for a in actions if not is_submit(a)]
        if not programs:
            return 0.0
        return _share(self, task_id, programs[-1])


def _share(model: VisibleTests, task_id: str, program: str) -> float:
    with model._lock:
        model.runs += 1
    tests, result = run_visible(model.tasks[task_id], program)
    return result.passed / len(tests) if tests else 0.0


def make_visible(ctx: Any, params: dict[str, Any], seed: int) -> VisibleTests:
    """The reward part's factory: the campaign's tasks (all of the code environment)."""
    from evoagent.errors import UserError

    bad = [t for t in ctx.tasks.values() if t.env != "code"]
    if bad:
        raise UserError(f"reward model 'visible' scores code programs only (task {bad[0].task_id!r} is {bad[0].env})")
    return VisibleTests(ctx.tasks)
