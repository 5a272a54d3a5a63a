"""The word-problem environment: work it out with ``calc:`` steps, end with ``answer:``.

    calc: 4 * 8         -> "= 32"             (an exact calculator; step reward 1 iff it equals the answer)
    answer: 22          -> "answered 22"      (ends the episode; reward 1 iff it equals the gold answer)
    submit              -> ends the episode; the outcome is the answer's reward (0 without one)

Anything else is an ``Error:`` observation with ``valid`` False and the state
unchanged, never an exception. The state is a small immutable tuple, so the
environment is ``Restorable`` (snapshot/restore) for free.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any

from wordmath.arith import NotArithmetic, evaluate, shown

SUBMIT = "submit"
MAX_ACTION_CHARS = 300


def _gold(task: Any) -> Fraction | None:
    try:
        return evaluate(task.gold)
    except NotArithmetic:
        return None  # a blank or unusable gold answer: no answer scores


class WordMathEnv:
    """One episode at a time; see the module docstring."""

    name = "wordmath"

    def __init__(self) -> None:
        self._task: Any = None
        self._answer: Fraction | None = None  # the answer given (None: none yet)
        self._done = False

    def reset(self, task: Any) -> str:
        self._task, self._answer, self._done = task, None, False
        return task.question

    def _reward(self, value: Fraction | None) -> float:
        gold = _gold(self._task)
        return 1.0 if value is not None and gold is not None and value == gold else 0.0

    def step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        if self._task is None:
            return "Error: no episode (reset first)", 0.0, True, {"valid": False}
        text = action.strip()
        if text.lower() == SUBMIT:
            self._done = True
            return "submitted", self._reward(self._answer), True, {"valid": True}
        if self._done:
            return "Error: the episode has ended", 0.0, True, {"valid": False}
        if len(text) > MAX_ACTION_CHARS:
            return f"Error: an action is at most {MAX_ACTION_CHARS} characters", 0.0, False, {"valid": False}
        head, _, body = text.partition(":")
        kind = head.strip().lower()
        if kind not in ("calc", "answer") or not body.strip():
            return "Error: write 'calc: EXPRESSION' or 'answer: NUMBER'", 0.0, False, {"valid": False}
        try:
            value = evaluate(body)
        except NotArithmetic as exc:
            return f"Error: {exc}", 0.0, False, {"valid": False}
        if kind == "calc":
            return f"= {shown(value)}", self._reward(value), False, {"valid": True}
        self._answer, self._done = value, True
        return f"answered {shown(value)}", self._reward(value), True, {"valid": True}

    def submit(self) -> float:
        self._done = True
        return self._reward(self._answer) if self._task is not None else 0.0

    def close(self) -> None:
        self._task = None

    def snapshot(self) -> tuple[Any, Fraction | None, bool]:
        return (self._task, self._answer, self._done)

    def restore(self, state: tuple[Any, Fraction | None, bool]) -> None:
        self._task, self._answer, self._done = state
