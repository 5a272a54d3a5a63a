"""``sample``: a fresh rollout of the policy (initial population, immigrants)."""
from __future__ import annotations

import random

from evoagent.registry import Part, rate
from evoagent.rollout import Context, Rollout, rollout
from evoagent.trajectory import Task

__all__ = ["sample"]


def sample(task: Task, rng: random.Random, ctx: Context) -> Rollout:
    """Let the policy play the task from the start."""
    return rollout(ctx, task, rng, operator="sample")


PART = Part("operator", "sample", sample, {"rate": rate(0.1)}, arity=0,
            doc="a fresh rollout of the policy")
