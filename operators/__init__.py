"""Variation operators; each module declares its operator once (``PART``), listed in ``evoagent.registry``.

One signature per arity, each returning a :class:`evoagent.rollout.Rollout`:
``sample(task, rng, ctx)`` (arity 0), ``revise(parent, rng, ctx)`` and
``refine(parent, rng, ctx)`` (arity 1), ``recombine(parents, rng, ctx)``
(two or more parents).
"""
from __future__ import annotations

from deap import base


def toolbox() -> base.Toolbox:
    """A DEAP toolbox with every registered operator under its name."""
    from evoagent import registry

    tb = base.Toolbox()
    for name, part in registry.parts("operator").items():
        tb.register(name, part.fn)
    return tb


__all__ = ["toolbox"]
