"""``wordmath_check``: a gold-free verifier of a worked solution.

It reads the question and the actions only, never the gold answer (``uses_gold
= False``), so a campaign can search with it and use gold only to report
success. A prefix scores by how much of the problem it has worked: the share of
the question's numbers its ``calc`` steps used (0.8 at most); an ``answer``
scores 1.0 when it is the last result and every number was used, 0.1 otherwise.
It is a heuristic (a problem that needs a number twice, or not at all, fools
it), the kind of verifier one writes before training a model.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evoagent.rewards.base import Query, RewardModel, Score
from wordmath.arith import NotArithmetic, evaluate, numbers, worked


class Check(RewardModel):
    """See the module docstring."""

    name = "wordmath_check"
    uses_gold = False

    def __init__(self, tasks: Mapping[str, Any]):
        self.tasks = tasks

    @property
    def source(self) -> str:
        return "wordmath_check(v=1)"

    def value(self, question: str, actions: Sequence[str]) -> float:
        pool, results, used = worked(question, list(actions))
        share = used / max(1, len(numbers(question)))
        head, _, body = (actions[-1] if actions else "").partition(":")
        if head.strip().lower() != "answer":
            return round(0.8 * share, 6)
        try:
            answer = evaluate(body)
        except NotArithmetic:
            return 0.0
        return 1.0 if results and answer == results[-1] and len(pool) == 1 and share == 1 else 0.1

    def score(self, queries: Sequence[Query]) -> list[Score]:
        return [Score(self.value(self.tasks[q.task_id].question, q.actions)) for q in queries]
