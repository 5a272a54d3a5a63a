"""evoagent: evolve populations of LLM-agent trajectories, stored in DuckDB."""
from __future__ import annotations

__version__ = "0.1.0"
