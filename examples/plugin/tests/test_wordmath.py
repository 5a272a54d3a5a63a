"""The plug-in's parts keep evoagent's contracts (``evoagent.testing``), and a campaign runs on them.

Run after installing evoagent and this package: ``python -m pytest examples/plugin/tests``.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import evoagent
import wordmath
from evoagent import registry
from evoagent.testing.env_contract import check_env, check_environment_part
from evoagent.testing.policy_contract import check_policy, play
from evoagent.testing.reward_contract import check_reward_model, prefixes
from evoagent.testing.strategy_contract import check_strategy
from wordmath.check import Check
from wordmath.env import WordMathEnv
from wordmath.policy import Solver

HERE = Path(__file__).resolve().parent.parent
CAMPAIGN = tomllib.loads((HERE / "wordmath.toml").read_text())
TASKS = wordmath.load_problems()[::6]  # six problems of each size


def test_the_parts_come_from_the_entry_points() -> None:
    assert registry.get("environment", "wordmath") is wordmath.ENVIRONMENT
    assert registry.get("reward", "wordmath_check") is wordmath.CHECK
    assert registry.origin("environment", "wordmath") == "evoagent-wordmath"


def test_environment_contract() -> None:
    actions = {t.task_id: ["calc: 1 + 2", "calc: 2 / 0", f"answer: {t.gold}"] for t in TASKS}
    check_env(WordMathEnv, TASKS, actions)
    check_environment_part(wordmath.ENVIRONMENT, evoagent.make_campaign(CAMPAIGN))


def test_an_exact_answer_scores_and_nothing_else_does() -> None:
    env = WordMathEnv()
    task = TASKS[0]
    env.reset(task)
    assert env.step("calc: 1 + 1")[:3] == ("= 2", 0.0, False)
    assert env.step(f"answer: {task.gold} + 0")[1:3] == (1.0, True)
    assert env.step("submit")[1] == 1.0
    env.reset(task)
    assert env.step(f"answer: {task.gold} + 1")[1] == 0.0 and env.submit() == 0.0


def test_policy_contract() -> None:
    check_policy(Solver, TASKS, WordMathEnv)


def test_reward_model_contract() -> None:
    batch = [q for t in TASKS for seed in range(3) for q in prefixes(t.task_id, play(Solver(), t, WordMathEnv(), seed))]
    check_reward_model(Check, TASKS, batch, uses_gold=wordmath.CHECK.uses_gold, value_range=(0.0, 1.0))


@pytest.mark.parametrize("overrides", [(), ("strategy.kind=best_of_n", "strategy.best_of_n.n=3",
                                            "fitness.reward=wordmath_check", "budget.generations=0")])
def test_strategies_keep_their_contract_on_this_environment(tmp_path: Path, overrides: tuple[str, ...]) -> None:
    check_strategy(CAMPAIGN, tmp_path, ("budget.generations=1", "tasks.operations=[2]", *overrides))
