"""Variation operators; each module declares its operator once in ``evoagent.registry``.

One signature per arity, each returning a :class:`evoagent.rollout.Rollout`:
``sample(task, rng, ctx)`` (arity 0), ``revise(parent, rng, ctx)`` and
``refine(parent, rng, ctx)`` (arity 1), ``recombine(parents, rng, ctx)``
(two or more parents).
"""
from __future__ import annotations

from deap import base

# Registration order is the order in which the evolution strategy draws operators by rate:
# keep it (sample, revise, recombine, refine) or every seeded campaign changes.
from operators.sample import sample  # isort: skip
from operators.revise import revise  # isort: skip
from operators.recombine import recombine  # isort: skip
from operators.refine import refine  # isort: skip
from operators.mcts import mcts  # isort: skip  (no rate: only the mcts strategy plans it)
from operators.rro import rro  # isort: skip  (rate 0 unless a campaign sets one)
from operators.ipr import ipr  # isort: skip  (rate 0 unless a campaign sets one)
from operators.edit import edit  # isort: skip  (rate 0 unless a campaign sets one)


def toolbox() -> base.Toolbox:
    """A DEAP toolbox with every registered operator under its name."""
    from evoagent import registry

    tb = base.Toolbox()
    for name, part in registry.parts("operator").items():
        tb.register(name, part.fn)
    return tb


__all__ = ["edit", "ipr", "mcts", "recombine", "refine", "revise", "rro", "sample", "toolbox"]
