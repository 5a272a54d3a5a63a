"""Game of 24 (Tree of Thoughts, Yao et al., NeurIPS 2023): exact rules, oracle, offline policies,
GPT-4's recorded runs and values.

``ENVIRONMENT`` is its part (``env.kind = "game24"``) and the policy parts below play it; each
hook imports what it runs on first use.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from evoagent.envs.base import Environment, Importer
from evoagent.policies.base import RECORDED_KEYS, Made, PolicyPart
from evoagent.registry import BenchSetup, Key
from evoagent.trajectory import Task

__all__ = ["ANTHROPIC", "ENUMERATE", "ENVIRONMENT", "OPENAI", "REPLAY", "gold_key"]

NAME = "game24"


def _ranks(x: Any) -> bool:
    return x == [] or (len(x) == 2 and all(type(r) is int for r in x) and 1 <= x[0] <= x[1] <= 10**6)


KEYS = {"tasks.ranks": Key(list, [], _ranks, "[first, last], an inclusive range of puzzle ranks")}


def load_tasks(c: Any) -> list[Task]:
    """The campaign's puzzles: ``tasks.ranks = [first, last]`` (inclusive), all 1,362 without."""
    from evoagent.envs.game24 import data

    return data.load_tasks(c.get("tasks.ranks") or None)


def make(c: Any) -> Callable[[], Any]:
    """A factory of environments (one per thread)."""
    from evoagent.envs.game24.env import Game24Env

    return Game24Env


def render_task(task: Task) -> str:
    """The puzzle as the agent's prompt shows it."""
    from evoagent.envs.game24.prompt import GAME24

    return GAME24.user.format(numbers=task.question)


def opening(task: Task, c: Any) -> list[dict[str, str]]:
    """The agent's system prompt and first user turn (the puzzle), for training exports."""
    from evoagent.envs.game24.prompt import GAME24

    return [{"role": "system", "content": GAME24.system}, {"role": "user", "content": render_task(task)}]


def gold_key(task: Any) -> str:
    """A puzzle's equivalence class for leakage guards and ``rm train``'s split: its numbers (sorted).

    Every Game of 24 task has the same goal (24) and no stored gold text, so a
    class per goal would put all puzzles in one; the 1,362 puzzles are distinct multisets.
    """
    return "game24\x1f" + " ".join(sorted(task.question.split(), key=lambda x: (len(x), x)))


# ``evoagent bench search``: ToT's 100 test puzzles, the ``enumerate`` policy (a large space, exact
# labels); the learned state value (trained on puzzles 1..900) against the exact oracle. A rollout
# is 3 moves (four numbers to one) and its verdict.
BENCH = BenchSetup(
    campaign_file="experiments/game24.toml", task_sets={"test": ("tasks.ranks=[901, 1000]",)},
    rewards=("state_value", "oracle"), settings=("policy.kind=enumerate",), rollout_length=lambda c: 3.0,
    doc="test: ToT's puzzles 901..1000 with random legal moves (enumerate)")

ENVIRONMENT = Environment(
    name=NAME, load_tasks=load_tasks, make_env=make, policies=("replay", "enumerate", "anthropic", "openai"),
    render_task=render_task, meta_fields={"numbers": "list[int]"}, gold_key=gold_key, keys=KEYS, opening=opening, bench=BENCH,
    dead_ends=True,
    doc="Game of 24: make 24 from four numbers, one step at a time (exact rules and solver)")


# -- policies ----------------------------------------------------------------------------------
def _replay(c: Any, store: Any) -> Made:
    from evoagent.envs.game24.policies import ReplayPolicy

    return Made(ReplayPolicy(c.get("policy.sources") or None, explore=c.get("policy.explore")))


def _enumerate(c: Any, store: Any) -> Made:
    from evoagent.envs.game24.policies import EnumeratePolicy

    return Made(EnumeratePolicy())


def _llm(transport: str) -> PolicyPart:
    from evoagent import llm

    def build(c: Any, client: Any) -> tuple[Any, Any]:
        # The operators' LLM side (advisor) speaks SQL: game24 runs the plain operators (no advisor).
        from evoagent.envs.game24.policies import Game24LLMPolicy

        return Game24LLMPolicy(transport, client, model=c.get("policy.model"), max_tokens=c.get("policy.max_tokens"),
                               temperature=c.get("policy.temperature"),
                               observation_chars=c.get("policy.observation_chars")), None

    return llm.policy_part(NAME, transport, build, f"an LLM writing one step at a time through tools, over the "
                                                    f"{transport} API")


REPLAY = PolicyPart(f"{NAME}.replay", _replay, RECORDED_KEYS, envs=(NAME,),
                    doc="GPT-4's recorded Tree of Thoughts proposals for the state (offline)")
ENUMERATE = PolicyPart(f"{NAME}.enumerate", _enumerate, envs=(NAME,), doc="a uniformly random legal step")
ANTHROPIC = _llm("anthropic")
OPENAI = _llm("openai")


# -- recorded runs: ``evoagent import game24`` -----------------------------------------------------------
def _bundled_logs() -> list[Any]:
    from evoagent.envs.game24.data import bundled_logs

    return sorted(bundled_logs().values())


def _import_logs(paths: list[Any], store_path: str) -> Any:
    from evoagent.envs.game24.recorded import import_logs

    for rec, n in import_logs(paths, store_path):
        yield f"{rec.source}: {n} answers"
    yield f"{store_path}: imported"


IMPORTER = Importer(
    NAME,
    "Import Tree of Thoughts' Game of 24 logs (JSON, optionally gzipped): each final answer a trajectory.\n\n"
    "Every action is judged by the game24 environment (errors are steps with valid = false); the\n"
    "outcome is the log's own verdict. All files are checked before one transaction writes them.",
    "Also import GPT-4's Tree of Thoughts, CoT and standard runs shipped with evoagent.", _bundled_logs, _import_logs,
    ("evoagent import game24 --bundled --store runs/game24_logs.duckdb",))
ENVIRONMENT = dataclasses.replace(ENVIRONMENT, importers=(IMPORTER,))
