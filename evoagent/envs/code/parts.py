"""The code environment as campaign parts: ``env.kind = "code"``, its policies (``replay``, ``anthropic``,
``openai``), the ``visible`` reward.

Declared here so that naming them imports nothing heavy; each hook imports what it runs.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evoagent.envs.base import Environment
from evoagent.policies.base import Made, PolicyPart
from evoagent.registry import Key, Part
from evoagent.trajectory import Task

NAME = "code"
TASK_SETS = ("humaneval", "mbpp")

KEYS: dict[str, Key] = {
    "tasks.set": Key(str, "humaneval", lambda x: x in TASK_SETS, "humaneval or mbpp"),
}
POLICY_KEYS: dict[str, Key] = {
    "policy.sources": Key(list, [], lambda x: all(isinstance(d, str) for d in x), "a list of recorded source names"),
    "policy.max_programs": Key(int, 4, lambda x: 1 <= x <= 64, "within 1..64"),
}


def load_tasks(c: Any) -> list[Task]:
    """HumanEval (164) or MBPP (397) tasks, by ``tasks.set``."""
    from evoagent.envs.code import data

    return list(data.load_tasks(c.get("tasks.set")))


def make_env(c: Any) -> Callable[[], Any]:
    from evoagent.envs.code.env import CodeEnv

    return CodeEnv


def render_task(task: Task) -> str:
    """The problem (signature and docstring) and the visible tests, as the environment shows them."""
    from evoagent.envs.code.env import CodeEnv

    return CodeEnv().reset(task)


def gold_key(task: Task) -> str:
    """One class per problem: its hidden test program, spacing normalised."""
    return " ".join(task.gold.split())


def check(c: Any, tasks: Any, note: Any) -> None:
    """The sandbox starts (bubblewrap installed, run as root), before any file is written."""
    from evoagent.envs.code.sandbox import SandboxError, shared_sandbox
    from evoagent.errors import UserError

    try:
        shared_sandbox().run("pass", [])
    except SandboxError as err:
        raise UserError(str(err)) from None


ENVIRONMENT = Environment(
    name=NAME, load_tasks=load_tasks, make_env=make_env, policies=("replay", "anthropic", "openai"), render_task=render_task,
    meta_fields={"entry_point": "str", "set": "str"}, gold_key=gold_key, keys=KEYS, check=check,
    doc="HumanEval/MBPP: write a Python function; visible tests shown, hidden tests as gold; sandboxed")


def _replay(c: Any, store: Any) -> Made:
    from evoagent.envs.code.agent import RecordedAdvisor
    from evoagent.envs.code.policies import CodeReplayPolicy, recorded_reflections

    sources = tuple(c.get("policy.sources") or ())
    advisor = RecordedAdvisor(recorded_reflections(sources)) if c.get("operators.llm") else None
    return Made(CodeReplayPolicy(sources, max_programs=c.get("policy.max_programs")), advisor)


def _llm(transport: str) -> PolicyPart:
    from evoagent import llm

    def make(c: Any, store: Any) -> Made:
        from evoagent.envs.code.agent import CodeAdvisor, CodeLLMPolicy

        client, budget, closers = llm.build_client(transport, c, store)
        model = c.get("policy.model")
        policy = CodeLLMPolicy(transport, client, model=model, max_tokens=c.get("policy.max_tokens"),
                               temperature=c.get("policy.temperature"), max_steps=c.get("env.max_steps"),
                               observation_chars=c.get("policy.observation_chars"))
        advisor = (CodeAdvisor(client, model=model, max_tokens=c.get("policy.max_tokens"),
                               observation_chars=c.get("policy.observation_chars")) if c.get("operators.llm") else None)
        return Made(policy, advisor, budget, closers)

    return PolicyPart(f"{NAME}.{transport}", make, llm.KEYS, envs=(NAME,), needs_store=True,
                      check=lambda c: llm.check(transport, c),
                      doc=f"an LLM writing whole programs in Reflexion's loop (visible-test feedback, its own "
                          f"reflections), over the {transport} API")


REPLAY = PolicyPart(f"{NAME}.replay", _replay, POLICY_KEYS, envs=(NAME,),
                    doc="recombines the recorded LATS/Reflexion programs of the task; submits when the "
                        "visible tests pass; revise follows the recorded reflections (offline)")
ANTHROPIC = _llm("anthropic")
OPENAI = _llm("openai")


def _visible(ctx: Any, params: dict[str, Any], seed: int) -> Any:
    from evoagent.envs.code.values import make_visible

    return make_visible(ctx, params, seed)


VISIBLE = Part("reward", "visible", _visible, uses_gold=False,
               doc="code: share of the visible tests the last program passes (gold-free)")

__all__ = ["ANTHROPIC", "ENVIRONMENT", "OPENAI", "REPLAY", "VISIBLE"]
