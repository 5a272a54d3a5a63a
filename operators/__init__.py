"""Variation operators, registered by name in a DEAP ``Toolbox``.

One signature per kind, each returning a :class:`evoagent.rollout.Rollout`:
``sample(task, rng, ctx)``, ``revise(parent, rng, ctx)``,
``recombine(parents, rng, ctx)``, ``refine(parent, rng, ctx)``.
"""
from __future__ import annotations

from deap import base

from operators.recombine import recombine
from operators.refine import refine
from operators.revise import revise
from operators.sample import sample

OPERATORS = {"sample": sample, "revise": revise, "recombine": recombine, "refine": refine}
# How many parents each operator takes (0: none, None: two or more).
ARITY = {"sample": 0, "revise": 1, "recombine": None, "refine": 1}


def toolbox() -> base.Toolbox:
    """A DEAP toolbox with every operator registered under its name."""
    tb = base.Toolbox()
    for name, fn in OPERATORS.items():
        tb.register(name, fn)
    return tb


__all__ = ["ARITY", "OPERATORS", "recombine", "refine", "revise", "sample", "toolbox"]
