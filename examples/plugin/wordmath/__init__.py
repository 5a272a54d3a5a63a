"""wordmath: arithmetic word problems as an evoagent plug-in (environment, policy, reward model).

Declared here and registered only through the entry points of this package's
``pyproject.toml`` (group ``evoagent.parts``)::

    "environment.wordmath"     = "wordmath:ENVIRONMENT"   env.kind = "wordmath"
    "policy.wordmath.solver"   = "wordmath:SOLVER"        policy.kind = "solver"
    "reward.wordmath_check"    = "wordmath:CHECK"         search.reward / fitness.reward = "wordmath_check"

Naming this module imports only evoagent's declarations; the environment,
policy and verifier load when a campaign uses them. The 32 problems in
``problems.json`` were written for this example (answers checked exactly).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import Any

from evoagent.envs.base import Environment
from evoagent.policies.base import Made, PolicyPart
from evoagent.registry import Key, Part
from evoagent.trajectory import Task

__all__ = ["CHECK", "ENVIRONMENT", "SOLVER", "load_problems"]

NAME = "wordmath"


def load_problems() -> list[Task]:
    """Every problem of the bundled file, as tasks (gold: the exact answer)."""
    rows = json.loads(resources.files(__name__).joinpath("problems.json").read_text())
    return [Task(r["id"], NAME, r["question"], gold=r["answer"], meta={"operations": r["operations"]}) for r in rows]


def _load_tasks(cfg: Any) -> list[Task]:
    wanted = cfg.get("tasks.operations")
    return [t for t in load_problems() if not wanted or t.meta["operations"] in wanted]


def _make_env(cfg: Any) -> Callable[[], Any]:
    from wordmath.env import WordMathEnv

    return WordMathEnv


def render_task(task: Task) -> str:
    """The problem as a prompt shows it, with the two actions it takes."""
    return f"{task.question}\nWork it out with 'calc: EXPRESSION' steps, then 'answer: NUMBER'."


def gold_key(task: Task) -> str:
    """The answer, normalised: ``22``, ``7/2``."""
    from wordmath.arith import NotArithmetic, evaluate, shown

    try:
        return shown(evaluate(task.gold))
    except NotArithmetic:
        return task.gold.strip()


ENVIRONMENT = Environment(
    name=NAME, load_tasks=_load_tasks, make_env=_make_env, policies=("solver",), render_task=render_task,
    meta_fields={"operations": "int"}, gold_key=gold_key,
    keys={"tasks.operations": Key(list, [], lambda x: all(n in (1, 2, 3) for n in x),
                                  "a list of operation counts (1, 2, 3)")},
    doc="arithmetic word problems: calc steps on an exact calculator, then an answer (plug-in example)")


def _solver(cfg: Any, store: Any) -> Made:
    from wordmath.policy import Solver

    return Made(Solver(max_calcs=cfg.get("policy.max_calcs"), stop=cfg.get("policy.stop_chance")))


SOLVER = PolicyPart(
    f"{NAME}.solver", _solver,
    keys={"policy.max_calcs": Key(int, 3, lambda x: 1 <= x <= 10, "within 1..10"),
          "policy.stop_chance": Key((int, float), 0.3, lambda x: 0 <= x <= 1, "within [0, 1]")},
    envs=(NAME,), doc="combines the question's numbers at random, then answers (offline, seeded)")


def _check(ctx: Any, params: dict[str, Any], seed: int) -> Any:
    from wordmath.check import Check

    return Check(ctx.tasks)


CHECK = Part("reward", "wordmath_check", _check, uses_gold=False,
             doc="wordmath: a gold-free verifier (numbers used, answer = last result)")

