"""``revise`` — SE-Agent's revision (Lin et al., 2025, "SE-Agent: Self-Evolution
Trajectory Optimization in Multi-Step Reasoning with LLM-Based Agents").

From one parent, find the first step that went wrong and re-roll the episode
from there, telling the policy which actions failed. The child is a new
episode executed in the environment, never a text edit of the parent.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

from evoagent.policies.base import Guidance
from evoagent import registry
from evoagent.registry import Part, rate
from evoagent.rollout import Context, Rollout, rollout
from evoagent.trajectory import Step, Trajectory

__all__ = ["revise", "first_wrong_step"]


def first_wrong_step(steps: Sequence[Step], outcome: float, dead_ends: bool = False) -> int:
    """Index of the first step that failed: an error, or — once the reward has
    risen — a step that did not raise it. With neither, the last step (its
    answer was not good enough) or 0 for an empty episode.

    With ``dead_ends`` (the environment's step reward values the state reached, e.g. Game of
    24's "24 still reachable") a failed episode went wrong at the first step after which the
    value never rose above its last one (the move into the dead end: step 0 for values
    0, 0, 0); an episode whose value never fell (cut off on a live path) continues from its
    end (``len(steps)``). There a steady value is no mistake, so the rise rule does not apply.
    """
    if dead_ends and outcome < 1.0 and steps:
        first_error = next((i for i, s in enumerate(steps) if not s.valid), len(steps))
        values = [float(s.reward or 0.0) for s in steps[:first_error]]
        if not values:
            return first_error
        last = values[-1]
        if last > 0.0 and last >= max(values) and first_error == len(steps):
            return len(steps)
        return min(next(i for i in range(len(values)) if max(values[i:]) <= last), first_error)
    best = 0.0
    for i, s in enumerate(steps):
        if not s.valid:
            return i
        if best > 0.0 and s.reward <= best and outcome < 1.0:
            return i
        best = max(best, s.reward)
    return max(len(steps) - 1, 0)


def revise(parent: Trajectory, rng: random.Random, ctx: Context) -> Rollout:
    """Keep the parent's steps before the first wrong one; re-roll from there."""
    task = ctx.tasks[parent.task_id]
    parent = ctx.view(parent)
    env = registry.get("environment", task.env) if task.env in registry.names("environment") else None
    k = first_wrong_step(parent.steps, parent.outcome_reward, bool(env and env.dead_ends))
    failed = {s.action for s in parent.steps[k:] if not s.valid or s.reward < 1.0}
    if k < len(parent.steps):
        failed.add(parent.steps[k].action)
        wrong = parent.steps[k]
        gave = "nothing (never executed)" if wrong.observation is None else repr(wrong.observation[:200])
        notes = f"step {k} went wrong: {wrong.action!r} gave {gave}"
    else:
        notes = "the episode ended without an answer"
    if ctx.advisor is not None:
        notes = ctx.advisor.reflect(task, parent, k, rng) or notes
    guidance = Guidance(avoid=frozenset(failed), notes=notes)
    return rollout(ctx, task, rng, prefix=[s.action for s in parent.steps[:k]],
                   guidance=guidance, operator="revise")


PART = Part("operator", "revise", revise, {"rate": rate(0.4)}, arity=1,
            doc="SE-Agent revision: re-roll from the first wrong step")
