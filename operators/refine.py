"""``refine`` — SE-Agent's refinement (Lin et al., 2025).

Shorten and clean a trajectory: drop the steps that did not contribute
(errors, repeats, everything after the best answer), trying the shortest
candidate first, and keep a candidate only if re-executing it gives an outcome
at least as good as the parent's.
"""
from __future__ import annotations

import random

from evoagent.registry import Part, rate
from evoagent.rollout import Context, Rollout, execute
from evoagent.trajectory import Trajectory

__all__ = ["refine"]


def refine(parent: Trajectory, rng: random.Random, ctx: Context) -> Rollout:
    """The shortest verified clean-up of ``parent`` (or the parent re-executed)."""
    task = ctx.tasks[parent.task_id]
    parent = ctx.view(parent)
    steps = parent.steps
    best = max((s.reward for s in steps if s.valid), default=0.0)
    peak = next((i for i, s in enumerate(steps) if s.valid and s.reward == best), len(steps) - 1)
    clean = list(dict.fromkeys(s.action for s in steps[: peak + 1] if s.valid))
    candidates = [[steps[peak].action]] if steps else []
    if ctx.advisor is not None:
        proposal = ctx.advisor.shorten(task, parent, rng)
        if proposal:
            candidates.insert(0, proposal)
    candidates += [clean, [s.action for s in steps[: peak + 1]]]
    used = 0
    for actions in candidates:
        if not actions:
            continue
        out = execute(ctx, task, actions, "refine")
        used += out.env_steps
        if ctx.view(out.trajectory).outcome_reward >= parent.outcome_reward:
            return Rollout(out.trajectory, used)
    out = execute(ctx, task, parent.actions, "refine")
    return Rollout(out.trajectory, used + out.env_steps)


PART = Part("operator", "refine", refine, {"rate": rate(0.2)}, arity=1,
            doc="SE-Agent refinement: the shortest verified clean-up")
