"""InterCode-SQL (Spider dev) on embedded DuckDB: tasks, environment, reward, replay.

The names below are imported on first use, so that a SQL worker process
(``python -m evoagent.envs.intercode_sql.sandbox``) loads only what it runs.
"""
from __future__ import annotations

import importlib
from typing import Any

_HOME = {"InterCodeSQLEnv": "env", "bundled_runs": "data", "intercode_reward": "reward",
         "load_recorded": "data", "load_tasks": "data"}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
