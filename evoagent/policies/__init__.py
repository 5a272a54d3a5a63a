"""The policy interface; policies themselves are registered parts, most of them an environment's own."""
from __future__ import annotations

from evoagent.policies.base import SUBMIT, Action, Guidance, Made, Policy, PolicyPart, masked

__all__ = ["Action", "Guidance", "Made", "Policy", "PolicyPart", "SUBMIT", "masked"]
