"""Search strategies; each module declares its strategy once (listed in ``evoagent.registry``)."""
from __future__ import annotations

from evoagent.strategies.base import Closed, Strategy

__all__ = ["Closed", "Strategy"]
