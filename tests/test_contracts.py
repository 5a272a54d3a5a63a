"""Every built-in part passes its kind's contract suite (``evoagent.testing.*_contract``).

Parametrised over the registry: a built-in part that no case here covers fails
``test_every_builtin_part_has_a_contract_case``, so a new part cannot skip its
contract. Small task subsets keep it fast (Game of 24 puzzles for the parts
that fit any environment; two tasks of each environment for its own parts).
"""
from __future__ import annotations

import contextlib
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

BASE = {"name": "contract", "seed": 5, "mu": 2, "lambda": 3, "concurrency": 2, "budget": {"generations": 1}}
GAME24 = {**BASE, "env": {"kind": "game24", "max_steps": 5}, "tasks": {"ranks": [901, 902]},
          "policy": {"kind": "replay", "explore": 0.3}}


def _doc(env: str) -> dict[str, Any]:
    """A small campaign on an environment: two of its tasks (a seeded sample), its default policy."""
    if env == "game24":
        return GAME24
    default = registry.get("environment", env).policies[0]
    return {**BASE, "env": {"kind": env, "max_steps": 4}, "tasks": {"sample": 2}, "policy": {"kind": default}}


# Which campaign each part's contract runs in, with the overrides it needs; None: not covered here,
# with the reason (then another test file runs the part through the same suite).
REWARDS: dict[str, tuple[str, tuple[str, ...]] | None] = {
    "oracle": ("game24", ()),
    "mc": ("game24", ("rewards.mc.k=2",)),
    "recorded": ("game24", ()),
    "solvable": ("game24", ()),
    "state_value": ("game24", ("rewards.state_value.train_ranks=[1, 20]", "rewards.state_value.states=500")),
    "prm": ("intercode_sql", ()),  # the tiny model of conftest's prm_dir
    "http": ("intercode_sql", ()),  # that model served on loopback (tests/test_rewards_http.py's server)
    # the official SDK against the loopback Anthropic server, whose stand-in judge gives no score to 1 action in
    # 7 (the hostile prefixes repeat actions: more than the 25% at which a judge stops by default)
    "judge": ("intercode_sql", ("rewards.judge.max_unusable=0.9",)),
    "env": None,  # no model: the environment's outcome as fitness (the environment's contract covers it)
    "visible": ("code", ()),  # the code environment's visible tests (gold-free)
    "state_value": ("game24", ("rewards.state_value.states=100", "rewards.state_value.train_ranks=[1, 50]")),
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
STORES: dict[int, DuckDBStore] = {}  # each context's store (a judge's call ledger), by id(context)
# Operators run in a Game of 24 campaign with a gold-free search signal (so that the suite also checks
# that they never read gold), plus their own keys; mcts expands the leaf its strategy hands it.
OPERATORS: dict[str, tuple[str, ...]] = {
    "ipr": ("operators.ipr.k=2",), "rro": ("operators.rro.max_candidates=2",),
    "mcts": ("strategy.kind=mcts", "strategy.mcts.children=2", "strategy.mcts.max_depth=3"),
}
OPERATOR_ARGS: dict[str, dict[str, Any]] = {"mcts": {"path": [], "actions": []}}


def builtin(kind: str) -> list[str]:
    """The built-in parts of a kind (an installed plug-in brings its own suites)."""
    origin = getattr(registry, "origin", lambda kind, name: "built-in")
    return [name for name in registry.parts(kind) if origin(kind, name) == "built-in"]  # type: ignore[arg-type]


def test_every_builtin_part_has_a_contract_case() -> None:
    assert set(builtin("reward")) <= set(REWARDS), "a reward model without a contract case"
    assert set(builtin("strategy")) <= set(STRATEGIES), "a strategy without a contract case"



# -- adapters: how the engine builds parts for a campaign -----------------------------------------
def _tasks(env: str, overrides: tuple[str, ...] = ()) -> tuple[Any, list[Task]]:
    c = api.make_campaign(_doc(env), overrides)
    return c, launch.select_tasks(c)


def _context(c: Any, table: Mapping[str, Task]) -> Context:
    """A fresh context over ``table`` with the campaign's signals and an in-memory store, as a run builds it."""
    store = DuckDBStore(":memory:")
    ctx = launch.build_context(c, list(table.values()), store)
    ctx.search, ctx.fitness = build_signals(c, ctx, store)
    STORES[id(ctx)] = store
    ctx.closers.append(lambda: (STORES.pop(id(ctx), None), store.close()))
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
ENVIRONMENTS = builtin("environment")
# Policies that call a model get a loopback server that speaks its API; None: not covered, with the reason.
LLM_SERVERS: dict[str, str | None] = {
    "intercode_sql.anthropic": "anthropic:intercode", "game24.anthropic": "anthropic:game24",
    "intercode_sql.openai": "openai:sql",
    "game24.openai": None,  # no loopback OpenAI-compatible server plays Game of 24's tools
    "code.anthropic": "anthropic:code",
    "code.openai": None,  # tests/test_code_llm.py plays it against its own OpenAI-compatible server
}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_contract(env: str) -> None:
    from evoagent.envs import environment

    c, tasks = _tasks(env)
    env_contract.check_environment_part(environment(c), c, tasks)
    runs = _runs(c, tasks)
    actions = {t.task_id: [a for r in runs if r.task_id == t.task_id for a in r.actions][:4] for t in tasks}
    ctx = _context(c, {t.task_id: t for t in tasks})
    try:
        env_contract.check_env(ctx.make_env, tasks, actions)
    finally:
        ctx.close()


def _policies() -> list[tuple[str, str]]:
    from evoagent.envs import policy_names

    cases = []
    for env in ENVIRONMENTS:
        for kind, name in policy_names(registry.get("environment", env)).items():
            if LLM_SERVERS.get(name, "") is not None:
                cases.append((env, kind))
    return cases


def _game24_responder(body: dict[str, Any]) -> dict[str, Any]:
    """test_game24's solving stand-in; where a hostile history leaves no numbers to read, a fixed step."""
    from tests.test_game24 import solver_responder

    try:
        return solver_responder(body)
    except AssertionError:
        return {"content": [{"type": "tool_use", "id": "toolu_x", "name": "step", "input": {"line": "4 + 4 = 8"}}],
                "stop_reason": "tool_use"}


@contextlib.contextmanager
def _llm_server(name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, ...]]:
    """The loopback server an LLM policy talks to, and the campaign keys pointing at it."""
    server = LLM_SERVERS.get(name, "")
    if not server:
        yield ()
        return
    if server.startswith("anthropic"):
        from evoagent.testing.fake_server import FakeAnthropic

        if server.endswith("intercode"):
            from evoagent.envs.intercode_sql.fake_agent import intercode_responder

            responder = intercode_responder()
        elif server.endswith("code"):
            responder = registry.get("environment", "code").fake_agent()
        else:
            responder = _game24_responder
        with FakeAnthropic(responder) as srv:
            monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
            monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-contract")
            yield ("policy.retry_base_s=0.01",)
        return
    import threading
    from http.server import ThreadingHTTPServer

    from tests.test_llm import _OpenAIHandler

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield (f"policy.base_url='http://127.0.0.1:{httpd.server_address[1]}/v1'", "policy.model='local'")
    finally:
        httpd.shutdown()


@pytest.mark.parametrize("env, policy", _policies())
def test_policy_contract(env: str, policy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from evoagent.envs import policy_names, policy_part

    name = policy_names(registry.get("environment", env))[policy]
    with _llm_server(name, monkeypatch) as keys:
        c, tasks = _tasks(env, (f"policy.kind={policy}", *keys))
        part = policy_part(c)
        made: list[Any] = []

        def make() -> Any:
            store = DuckDBStore(":memory:") if part.needs_store else None
            built = part.make(c, store)
            made.append((built, store))
            return built.policy

        ctx = _context(c, {t.task_id: t for t in tasks})
        try:
            policy_contract.check_policy(make, tasks, ctx.make_env, seeds=(0, 1) if part.needs_store else (0, 1, 2))
        finally:
            ctx.close()
            for built, store in made:
                for close in built.closers:
                    close()
                if store is not None:
                    store.close()


# -- reward models -----------------------------------------------------------------------------------
@pytest.fixture
def reward_case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, list[Task]]]:
    """(campaign, tasks) of one reward model's case, with the server it talks to running."""
    name = request.param
    env, extra = REWARDS[name]  # type: ignore[misc]
    with contextlib.ExitStack() as stack:
        if name in ("prm", "http"):
            prm_dir = request.getfixturevalue("prm_dir")
            extra = (f"rewards.prm.path='{prm_dir}'", "rewards.prm.allow_seen_tasks=true")
        if name == "http":
            from evoagent.rm.hosting import AppThread
            from evoagent.rm.model import load_model
            from tests.test_rewards_http import Faulty

            server = stack.enter_context(AppThread(Faulty(load_model(prm_dir)).app))
            extra = (f"rewards.http.url='{server.url}'",)
        if name == "judge":
            from evoagent.testing.fake_server import FakeAnthropic
            from tests.test_judge import judge_responder

            server = stack.enter_context(FakeAnthropic(judge_responder))
            monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
            monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-contract")
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
        model = make_scorer(name, c, ctx, STORES[id(ctx)]).model
        model.close = lambda _close=model.close: (_close(), ctx.close())  # type: ignore[method-assign]
        return model

    reward_contract.check_reward_model(make, tasks, batch, uses_gold=part.uses_gold)


# -- operators and strategies --------------------------------------------------------------------------
@pytest.mark.parametrize("operator", builtin("operator"))
def test_operator_contract(operator: str) -> None:
    c, tasks = _tasks("game24", ("search.reward=recorded", *OPERATORS.get(operator, ())))
    parents = _runs(c, tasks)
    operator_contract.check_operator(operator, lambda table: _context(c, table), tasks, parents,
                                     args=OPERATOR_ARGS.get(operator))


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_strategy_contract(strategy: str, tmp_path: Path) -> None:
    strategy_contract.check_strategy(GAME24, tmp_path, STRATEGIES[strategy])
