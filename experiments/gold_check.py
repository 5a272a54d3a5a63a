"""Every gold query as the agent's answer: how many of the 1,034 tasks score 1.0.

    python experiments/gold_check.py

Prints the count and each exception with the observation it gave (the README
lists the 11 tasks whose gold SQL MySQL itself rejects under ONLY_FULL_GROUP_BY).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoagent.envs.intercode_sql.data import load_tasks  # noqa: E402
from evoagent.envs.intercode_sql.env import InterCodeSQLEnv  # noqa: E402


def main() -> None:
    env = InterCodeSQLEnv()
    tasks = load_tasks()
    misses = []
    for task in tasks:
        env.reset(task)
        observation, _, _, _ = env.step(task.gold)
        reward = env.step("submit")[1]
        if reward < 1.0:
            misses.append((task.task_id, reward, observation[:120]))
    print(f"gold queries scoring 1.0: {len(tasks) - len(misses)}/{len(tasks)}")
    for task_id, reward, observation in misses:
        print(f"  {task_id:<9} reward {reward:.2f}  {observation}")


if __name__ == "__main__":
    main()
