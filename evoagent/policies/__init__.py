"""The policy interface; policies themselves are registered parts, most of them an environment's own."""
from __future__ import annotations

from evoagent.policies.base import SUBMIT, Action, Guidance, Made, Policy, PolicyPart, masked
from evoagent.policies.replay import RecorderStopsReplayPolicy, ReplayPolicy

__all__ = ["Action", "Guidance", "Made", "Policy", "PolicyPart", "RecorderStopsReplayPolicy", "ReplayPolicy", "SUBMIT",
           "masked"]
