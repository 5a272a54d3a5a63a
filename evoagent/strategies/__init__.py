"""Search strategies; each module declares its strategy once in ``evoagent.registry``."""
from __future__ import annotations

from evoagent.strategies import evolution  # noqa: F401  (registration)
from evoagent.strategies import mcts  # noqa: F401  (registration)
from evoagent.strategies import per_task  # noqa: F401  (registration: rro, ipr, best_of_n)
from evoagent.strategies.base import Closed, Strategy

__all__ = ["Closed", "Strategy"]

