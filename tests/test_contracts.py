"""Every built-in part passes its kind's contract suite (``evoagent.testing.*_contract``).

Parametrised over the registry: a built-in part that no case here covers fails
``test_every_builtin_part_has_a_contract_case``, so a new part cannot skip its
contract. Small task subsets keep it fast (Game of 24 puzzles for the parts
that fit any environment; two InterCode-SQL tasks where the part is SQL's).
"""
from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from evoagent import api, launch, registry
from evoagent.rewards import build_signals, make_scorer
from evoagent.rollout import Context
from evoagent.testing import env_contract, operator_contract, policy_contract, reward_contract, strategy_contract
from evoagent.trajectory import Task, Trajectory
from stores import DuckDBStore

GAME24 = {"name": "contract", "seed": 5, "mu": 2, "lambda": 3, "concurrency": 2,
          "env": {"kind": "game24", "max_steps": 5}, "tasks": {"ranks": [901, 902]},
          "policy": {"kind": "replay", "explore": 0.3}, "budget": {"generations": 1}}
SQL = {"name": "contract", "seed": 5, "mu": 2, "lambda": 3, "concurrency": 2,
       "env": {"kind": "intercode_sql", "max_steps": 4}, "tasks": {"ids": ["sql/7", "sql/42"]},
       "policy": {"kind": "replay", "explore": 0.3}, "budget": {"generations": 1}}
DOCS = {"game24": GAME24, "intercode_sql": SQL}

# Which campaign each part's contract runs in, with the overrides it needs; None: not covered here,
# with the reason (then another test file runs the part through the same suite).
REWARDS: dict[str, tuple[str, tuple[str, ...]] | None] = {
    "oracle": ("game24", ()),
    "mc": ("game24", ("rewards.mc.k=2",)),
    "recorded": ("game24", ()),
    "solvable": ("game24", ()),
    "prm": ("intercode_sql", ()),  # the tiny model of conftest's prm_dir
    "http": None,  # a server: tests/test_rewards_http.py runs the contract against our own `rm serve`
    "judge": None,  # an LLM: tests/test_judge.py runs the contract against the loopback Anthropic server
}
STRATEGIES: dict[str, tuple[str, ...]] = {
    "evolution": (),
    "rro": ("strategy.kind=rro", "search.reward=recorded", "budget.generations=0"),
    "ipr": ("strategy.kind=ipr", "operators.ipr.k=2", "search.reward=recorded", "budget.generations=0"),
    "best_of_n": ("strategy.kind=best_of_n", "strategy.best_of_n.n=3", "fitness.reward=recorded",
                  "budget.generations=0"),
    "mcts": ("strategy.kind=mcts", "strategy.mcts.parallel=2", "strategy.mcts.children=2",
             "strategy.mcts.max_depth=3"),
}
OPERATOR_ARGS: dict[str, dict[str, Any]] = {"mcts": {"path": [], "actions": []}}


def test_every_builtin_part_has_a_contract_case() -> None:
    assert set(registry.parts("reward")) <= set(REWARDS), "a reward model without a contract case"
    assert set(registry.parts("strategy")) <= set(STRATEGIES), "a strategy without a contract case"


# -- adapters: how the engine builds parts for a campaign -----------------------------------------
def _tasks(env: str, overrides: tuple[str, ...] = ()) -> tuple[Any, list[Task]]:
    c = api.make_campaign(DOCS[env], overrides)
    return c, launch.select_tasks(c)


def _context(c: Any, table: Mapping[str, Task]) -> Context:
    """A fresh context over ``table`` with the campaign's signals and an in-memory store, as a run builds it."""
    store = DuckDBStore(":memory:")
    ctx = launch.build_context(c, list(table.values()), store)
    ctx.search, ctx.fitness = build_signals(c, ctx, store)
    ctx.closers.append(store.close)
    return ctx


def _runs(c: Any, tasks: list[Task], n: int = 2) -> list[Trajectory]:
    """A few trajectories of the campaign's policy on each task (parents, queries)."""
    from operators.sample import sample

    ctx = _context(c, {t.task_id: t for t in tasks})
    try:
        return [sample(t, random.Random(i), ctx).trajectory for t in tasks for i in range(n)]
    finally:
        ctx.close()


# -- environments and policies ---------------------------------------------------------------------
@pytest.mark.parametrize("env", sorted(DOCS))
def test_environment_contract(env: str) -> None:
    c, tasks = _tasks(env)
    runs = _runs(c, tasks)
    actions = {t.task_id: [a for r in runs if r.task_id == t.task_id for a in r.actions][:4] for t in tasks}
    if env == "intercode_sql":
        actions = {k: v + [t.gold for t in tasks if t.task_id == k] for k, v in actions.items()}
    ctx = _context(c, {t.task_id: t for t in tasks})
    try:
        env_contract.check_env(ctx.make_env, tasks, actions)
    finally:
        ctx.close()


@pytest.mark.parametrize("env, policy", [("game24", "replay"), ("game24", "enumerate"), ("intercode_sql", "replay")])
def test_policy_contract(env: str, policy: str) -> None:
    c, tasks = _tasks(env, (f"policy.kind={policy}",))
    made = [launch.build_context(c, tasks)]

    def make() -> Any:
        made.append(launch.build_context(c, tasks))
        return made[-1].policy

    try:
        policy_contract.check_policy(make, tasks, made[0].make_env)
    finally:
        for ctx in made:
            ctx.close()


# -- reward models -----------------------------------------------------------------------------------
@pytest.fixture
def reward_case(request: pytest.FixtureRequest) -> Iterator[tuple[Any, list[Task]]]:
    name = request.param
    env, extra = REWARDS[name]  # type: ignore[misc]
    if name == "prm":
        extra = (f"rewards.prm.path='{request.getfixturevalue('prm_dir')}'", "rewards.prm.allow_seen_tasks=true")
    c, tasks = _tasks(env, (f"search.reward={name}", *extra))
    yield c, tasks


@pytest.mark.parametrize("reward_case", [n for n, case in REWARDS.items() if case is not None], indirect=True)
def test_reward_model_contract(reward_case: tuple[Any, list[Task]]) -> None:
    c, tasks = reward_case
    name = c.get("search.reward")
    part = registry.get("reward", name)
    batch = reward_contract.queries_of(_runs(c, tasks))

    def make(table: Mapping[str, Task]) -> Any:
        ctx = _context(c, table)
        scorer = make_scorer(name, c, ctx, None)
        scorer.model.close = lambda _close=scorer.model.close: (_close(), ctx.close())  # type: ignore[method-assign]
        return scorer.model

    reward_contract.check_reward_model(make, tasks, batch, uses_gold=part.uses_gold)


# -- operators and strategies --------------------------------------------------------------------------
@pytest.mark.parametrize("operator", list(registry.parts("operator")))
def test_operator_contract(operator: str) -> None:
    # a gold-free search signal, so that the suite also checks the operator never reads gold
    c, tasks = _tasks("game24", ("search.reward=recorded", "operators.ipr.k=2", "operators.rro.max_candidates=2",
                                 "strategy.mcts.children=2"))
    parents = _runs(c, tasks)
    operator_contract.check_operator(operator, lambda table: _context(c, table), tasks, parents,
                                     args=OPERATOR_ARGS.get(operator))


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_strategy_contract(strategy: str, tmp_path: Path) -> None:
    strategy_contract.check_strategy(GAME24, tmp_path, STRATEGIES[strategy])
