"""evoagent: evolve populations of LLM-agent trajectories, stored in DuckDB.

The Python API (``evoagent.api``: ``make_campaign``, ``run``, ``resume``, ``results``,
``register``, ``Results``) is importable from here; it loads on first use, so
``import evoagent`` stays light (no plug-in's dependencies).
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("Results", "make_campaign", "register", "results", "resume", "run")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from evoagent import api

        return getattr(api, name)
    raise AttributeError(f"module 'evoagent' has no attribute {name!r}")
