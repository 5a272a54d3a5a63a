"""An offline solver: combines the question's numbers with + - * / at random, then answers.

No model and no network: each step picks two of the numbers still open (the
question's, and the results of earlier ``calc`` steps), an operation, and writes ``calc: a op b``; after ``max_calcs``
steps, or with probability ``stop`` once something has been computed, it answers
with the last result. Every choice comes from the generator it is handed, so
the same seed plays the same episode; it respects the operators' ``avoid``
list; it never sees the gold answer (rollouts hand it the task without one).
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from wordmath.arith import shown, worked

OPERATIONS = ("+", "-", "*", "/")


class Solver:
    """See the module docstring."""

    name = "solver"

    def __init__(self, *, max_calcs: int = 3, stop: float = 0.3):
        self.max_calcs, self.stop = max_calcs, stop

    def next_action(self, task: Any, history: Sequence[Any], guidance: Any, rng: random.Random) -> Any:
        from evoagent.policies.base import SUBMIT, Action

        pool, results, _ = worked(task.question, [s.action for s in history])
        calcs = sum(1 for s in history if s.action.strip().lower().startswith("calc"))
        if results and (calcs >= self.max_calcs or len(pool) < 2 or rng.random() < self.stop):
            answer = f"answer: {shown(results[-1])}"
            if answer not in guidance.avoid:
                return Action(answer, thought="the last result answers the question")
        options = [f"calc: {_operand(a)} {op} {_operand(b)}" for i, a in enumerate(pool) for j, b in enumerate(pool)
                   if i != j for op in OPERATIONS]
        options = sorted(set(options) - set(guidance.avoid) - {s.action for s in history})
        if not options:
            return Action(SUBMIT, thought="nothing left to try")
        return Action(rng.choice(options), thought="combine two open numbers")


def _operand(value: Fraction) -> str:
    """A value as one operand (a fraction in parentheses, so that ``A op B`` means what it says)."""
    return shown(value) if value.denominator == 1 else f"({shown(value)})"
