"""``recombine`` — SE-Agent's recombination (Lin et al., 2025).

From two or more parents on the same task, splice what each did well: the
exploration steps of one (the valid steps before its best answer) followed by
the best answer step found by any parent, re-executed in the environment. If
no parent earned any reward, the policy continues after the spliced context.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

from evoagent.errors import UserError
from evoagent.policies.base import Guidance
from evoagent.registry import Key, Part, rate
from evoagent.rollout import Context, Rollout, rollout
from evoagent.trajectory import Step, Trajectory

__all__ = ["recombine"]


def _peak(steps: Sequence[Step]) -> int | None:
    """Index of the first step with the highest positive reward, if any."""
    best, at = 0.0, None
    for i, s in enumerate(steps):
        if s.valid and s.reward > best:
            best, at = s.reward, i
    return at


def recombine(parents: Sequence[Trajectory], rng: random.Random, ctx: Context) -> Rollout:
    """Context from one parent, best answer from another; see the module docstring."""
    if len(parents) < 2 or len({p.task_id for p in parents}) != 1:
        raise UserError("recombine needs two or more parents of the same task")
    task = ctx.tasks[parents[0].task_id]
    parents = [ctx.view(p) for p in parents]
    plan = ctx.advisor.combine(task, parents, rng) if ctx.advisor is not None else None
    if plan:  # the model's plan, executed; the policy goes on from there
        return rollout(ctx, task, rng, prefix=plan[: ctx.max_steps],
                       guidance=Guidance(notes="a plan combining earlier attempts"), operator="recombine")
    peaks = [(p.steps[i].reward if (i := _peak(p.steps)) is not None else 0.0) for p in parents]
    top = max(peaks)
    answerers = [i for i, r in enumerate(peaks) if r == top]
    a = rng.choice(answerers)
    others = [i for i in range(len(parents)) if i != a]
    b = rng.choice(others)
    donor = parents[b]
    cut = _peak(donor.steps)
    explore = [s.action for s in donor.steps[: cut if cut is not None else len(donor.steps)]
               if s.valid and s.reward <= 0.0]
    prefix = list(dict.fromkeys(explore))
    answer_at = _peak(parents[a].steps)
    if answer_at is not None:
        answer = parents[a].steps[answer_at].action
        prefix = [x for x in prefix if x != answer] + [answer]
    guidance = Guidance(stop_after_prefix=answer_at is not None,
                        notes="context from one parent, answer from another")
    return rollout(ctx, task, rng, prefix=prefix[: ctx.max_steps], guidance=guidance,
                   operator="recombine")


PART = Part("operator", "recombine", recombine, {
    "rate": rate(0.3),
    "n_parents": Key(int, 2, lambda x: 2 <= x <= 100, "within 2..100"),
}, arity=None, fallback="revise", doc="SE-Agent recombination: context from one parent, answer from another")
