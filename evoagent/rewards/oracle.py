"""``oracle``: the environment's per-step reward against the gold answer.

Named as the oracle it is: it compares every step with gold, which real users
evolving agents on new tasks do not have. A step already executed carries its
value (``Query.observed``); any other prefix is executed to read it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evoagent.registry import Part
from evoagent.rewards.base import Query, RewardModel, Score
from evoagent.rollout import Context, execute

__all__ = ["Oracle"]


class Oracle(RewardModel):
    """Per-step reward against gold; free for executed steps."""

    name = "oracle"
    uses_gold = True
    observes = True

    def __init__(self, ctx: Context):
        self.ctx = ctx

    @property
    def source(self) -> str:
        return "oracle"

    def score(self, queries: Sequence[Query]) -> list[Score]:
        out = []
        for q in queries:
            if q.observed is not None:
                out.append(Score(q.observed))
                continue
            run = execute(self.ctx, self.ctx.tasks[q.task_id], q.actions, "oracle")
            steps = run.trajectory.steps
            out.append(Score(steps[-1].reward if len(steps) == len(q.actions) else 0.0, run.env_steps))
        return out


def _make(ctx: Context, params: dict[str, Any], seed: int) -> Oracle:
    return Oracle(ctx)


PART = Part("reward", "oracle", _make, identity=lambda campaign: "oracle", doc="the environment's per-step reward against gold")
