"""InterCode-SQL (Spider dev) on embedded DuckDB: tasks, environment, reward, replay."""
from __future__ import annotations

from evoagent.envs.intercode_sql.data import bundled_runs, load_recorded, load_tasks
from evoagent.envs.intercode_sql.env import InterCodeSQLEnv
from evoagent.envs.intercode_sql.reward import intercode_reward

__all__ = ["InterCodeSQLEnv", "bundled_runs", "intercode_reward", "load_recorded", "load_tasks"]
