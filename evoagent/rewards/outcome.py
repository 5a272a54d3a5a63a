"""``env``: the environment's outcome reward as fitness (no model; the default ``fitness.reward``)."""
from __future__ import annotations

from evoagent.registry import Part

# ``fn`` None: no scorer is built; members are ranked by the outcome each trajectory earned.
PART = Part("reward", "env", None, uses_gold=True,  # type: ignore[arg-type]
            doc="the environment's outcome reward against gold (fitness only; no model)")
