"""``rro`` — Reward Rising Optimization (Wang et al., COLM 2025, arXiv 2505.20737).

At each step, sample next-action candidates one at a time and take the first
whose ``search.reward`` score rises above the previous step's; when none of
``max_candidates`` rises, take the best (``fallback = "best"``) or end the
episode (``"stop"``). Step 0's bar is ``rise_from``; a candidate reaching
``ceiling`` (the top of the reward scale) is taken even when the bar is there already. A sampled
``submit`` is taken when its value rises like any candidate's (``submit = "rise"``) or, as an
option, always (``"hold"``: submitting keeps the value reached, a tie). The search and its
records are :func:`operators.stepwise.step_search`'s.
"""
from __future__ import annotations

import random

from evoagent.registry import Key, Part, rate
from evoagent.rollout import Context, Rollout
from evoagent.trajectory import Task
from operators.stepwise import FALLBACKS, SUBMIT_RULES, step_search

__all__ = ["rro"]


def rro(task: Task, rng: random.Random, ctx: Context) -> Rollout:
    """One trajectory built by rising-reward step search."""
    s = ctx.keys_of(PART)
    return step_search(task, rng, ctx, method="rro", budget=s["max_candidates"], first_rising=True,
                       fallback=s["fallback"], rise_from=s["rise_from"], ceiling=s["ceiling"], submit=s["submit"])


PART = Part("operator", "rro", rro, {
    "rate": rate(0.0),  # off in evolution unless a campaign sets operators.rro.rate
    "max_candidates": Key(int, 5, lambda x: 1 <= x <= 100, "within 1..100"),
    "fallback": Key(str, "best", lambda x: x in FALLBACKS, f"one of {FALLBACKS}"),
    "rise_from": Key((int, float), 0.0, lambda x: 0 <= x <= 1e6, "within 0..1000000"),
    "ceiling": Key((int, float), 1.0, lambda x: 0 <= x <= 1e6, "within 0..1000000 (above the scale: off)"),
    "submit": Key(str, "rise", lambda x: x in SUBMIT_RULES, f"one of {SUBMIT_RULES}"),
}, arity=0, doc="RRO: per step, the first sampled action whose reward rises over the previous step's")
