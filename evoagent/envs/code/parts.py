"""The code environment as campaign parts: ``env.kind = "code"``, its policies (``replay``, ``anthropic``,
``openai``), the ``visible`` reward.

Declared here so that naming them imports nothing heavy; each hook imports what it runs.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from evoagent.envs.base import Environment, Importer, Replayer
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


def bundled_tasks() -> list[Task]:
    """Both task sets: a store of imported LATS/Reflexion runs may hold HumanEval and MBPP rows."""
    from evoagent.envs.code import data

    return [t for name in TASK_SETS for t in data.load_tasks(name)]


def make_env(c: Any) -> Callable[[], Any]:
    from evoagent.envs.code.env import CodeEnv

    return CodeEnv


def render_task(task: Task) -> str:
    """The problem (signature and docstring) and the visible tests, as the environment shows them."""
    from evoagent.envs.code.env import CodeEnv

    return CodeEnv().reset(task)


def opening(task: Task, c: Any) -> list[dict[str, str]]:
    """The agent's system prompt and first user turn (the problem and its visible tests), for training exports."""
    from evoagent.envs.code.prompt import CODE_AGENT

    return [{"role": "system", "content": CODE_AGENT.system.format(max_steps=c.get("env.max_steps") or 10)},
            {"role": "user", "content": render_task(task)}]


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


def _fake_agent(**options: Any) -> Any:
    """The loopback fake server's stand-in model for this environment's agent (``fake_agent.py``)."""
    from evoagent.envs.code.fake_agent import code_responder

    return code_responder(**options)


ENVIRONMENT = Environment(
    name=NAME, load_tasks=load_tasks, make_env=make_env, policies=("replay", "anthropic", "openai"),
    render_task=render_task, meta_fields={"entry_point": "str", "set": "str"}, gold_key=gold_key, keys=KEYS,
    check=check, fake_agent=_fake_agent, bundled_tasks=bundled_tasks, opening=opening, closing="submit",
    doc="HumanEval/MBPP: write a Python function; visible tests shown, hidden tests as gold; sandboxed")


def _replay(c: Any, store: Any) -> Made:
    from evoagent.envs.code.agent import RecordedAdvisor
    from evoagent.envs.code.policies import CodeReplayPolicy, recorded_reflections

    sources = tuple(c.get("policy.sources") or ())
    advisor = RecordedAdvisor(recorded_reflections(sources)) if c.get("operators.llm") else None
    return Made(CodeReplayPolicy(sources, max_programs=c.get("policy.max_programs")), advisor)


def _llm(transport: str) -> PolicyPart:
    from evoagent import llm

    def build(c: Any, client: Any) -> tuple[Any, Any]:
        from evoagent.envs.code.agent import CodeAdvisor, CodeLLMPolicy

        model, chars = c.get("policy.model"), c.get("policy.observation_chars")
        policy = CodeLLMPolicy(transport, client, model=model, max_tokens=c.get("policy.max_tokens"),
                               temperature=c.get("policy.temperature"), max_steps=c.get("env.max_steps"),
                               observation_chars=chars)
        advisor = CodeAdvisor(client, model=model, max_tokens=c.get("policy.max_tokens"), observation_chars=chars)
        return policy, advisor if c.get("operators.llm") else None

    return llm.policy_part(NAME, transport, build, f"an LLM writing whole programs in Reflexion's loop (visible-test "
                                                    f"feedback, its own reflections), over the {transport} API")


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


# -- recorded runs: ``evoagent import lats|reflexion`` and ``evoagent replay lats|reflexion`` ----------------
_IMPORT_HELP = ("All files are checked before one transaction writes them: a malformed row is one line naming "
                "the file and row, exit 2, nothing written. Each program the agent tried is a step with the "
                "test feedback it was shown; reflections are thoughts; the outcome is the row's recorded verdict.")
_REPLAY_HELP = ("Re-executes each row's final program against the row's hidden tests (recorded: is_solved) and, "
                "for LATS, the first program against the agent's own tests in its feedback; the last line is "
                "`agreement: N/M executed programs (P%)`, disagreements are listed by task.")


def _importer(kind: str, summary: str, bundled_help: str) -> Importer:
    def bundled() -> list[Any]:
        from evoagent.envs.code.data import bundled_files

        return bundled_files(kind)

    def run(paths: list[Any], store_path: str) -> Any:
        from pathlib import Path

        from evoagent.envs.code.recorded import import_logs

        for rec, rows, empty in import_logs(paths, kind, store_path):
            yield (f"{Path(rec.path).name}: {rows} runs as {rec.source} ({rec.task_set}), "
                   f"{sum(r.solved for r in rec.rows)} recorded solved"
                   + (f", {empty} without a recorded program" if empty else ""))
        yield f"{store_path}: imported"

    return Importer(kind, f"{summary}\n\n{_IMPORT_HELP}", bundled_help, bundled, run,
                    (f"evoagent import {kind} --bundled --store runs/code_logs.duckdb",))


def _replayer(kind: str, summary: str, bundled_help: str, example: str) -> Replayer:
    def run(file: str | None, bundled: str | None) -> Any:
        from evoagent.envs.code.data import BUNDLED, DATA
        from evoagent.envs.code.recorded import replay_file
        from evoagent.errors import UserError

        if bundled:
            names = [(name, DATA / rel) for rel, name in BUNDLED.items() if rel.startswith(kind + "/")]
            matches = [path for name, path in names if name == bundled]
            if not matches:
                raise UserError(f"no bundled {kind} recording {bundled!r} "
                                f"(have {', '.join(sorted({name for name, _ in names}))})")
            for path in matches:  # a source name may cover a HumanEval and an MBPP file
                yield replay_file(path, kind).render()
            return
        if not file:
            raise UserError("give FILE or --bundled NAME")
        yield replay_file(file, kind).render()

    return Replayer(kind, f"{summary}\n\n{_REPLAY_HELP}", bundled_help, run, (f"evoagent replay {kind} --bundled {example}",))


ENVIRONMENT = dataclasses.replace(ENVIRONMENT, importers=(
    _importer("lats", "Import LATS logs (HumanEval/MBPP JSON lines, optionally gzipped).",
              "Also import the LATS MCTS and DFS runs shipped with evoagent."),
    _importer("reflexion", "Import Reflexion logs (HumanEval/MBPP JSON lines, optionally gzipped).",
              "Also import the Reflexion and GPT-4 single-attempt runs shipped with evoagent.")), replayers=(
    _replayer("lats", "Re-execute a LATS log's programs in the code sandbox.",
              "Source name of a shipped LATS log instead of FILE.", "lats-mcts-gpt-4"),
    _replayer("reflexion", "Re-execute a Reflexion log's final programs in the code sandbox.",
              "Source name of a shipped Reflexion log instead of FILE.", "reflexion-gpt-4")))
