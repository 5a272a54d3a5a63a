"""``ipr`` — fixed-budget step search as in IPR (Xiong et al., 2024, "Watch Every Step!
LLM Agent Learning via Iterative Step-Level Process Refinement").

At each step, sample ``k`` next-action candidates, score them all with
``search.reward`` (one batch) and take the best: the fixed-budget baseline
that RRO's dynamic budget is measured against, recorded in the same
``candidates`` rows (:func:`operators.stepwise.step_search`).
"""
from __future__ import annotations

import random

from evoagent.registry import Key, Part, rate
from evoagent.rollout import Context, Rollout
from evoagent.trajectory import Task
from operators.stepwise import step_search

__all__ = ["ipr"]


def ipr(task: Task, rng: random.Random, ctx: Context) -> Rollout:
    """One trajectory built by taking the best of k candidates at every step."""
    return step_search(task, rng, ctx, method="ipr", budget=ctx.keys_of(PART)["k"], first_rising=False)


PART = Part("operator", "ipr", ipr, {
    "rate": rate(0.0),  # off in evolution unless a campaign sets operators.ipr.rate
    "k": Key(int, 5, lambda x: 1 <= x <= 100, "within 1..100"),
}, arity=0, doc="IPR: per step, the best of k sampled actions")
