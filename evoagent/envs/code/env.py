"""The code environment: the agent writes a whole program, is shown its visible tests' results, submits.

``reset(task)`` shows the problem (the function's signature and docstring)
and the visible tests. ``step(program)`` runs the program in the sandbox
twice, each time in a fresh process: against the visible tests, whose
results are the observation (``Tested passed:`` / ``Tests failed:`` with the
actual value of each failed ``assert f(x) == y``, the error's last line, the
time or output limit hit, as LATS and Reflexion showed their agents), and
against the hidden tests (the gold), whose outcome is the step's reward and
never shown. ``step("submit")`` ends the episode; the outcome is the hidden
outcome of the last program (0.0 without one). A program that is not text,
too long, not Python, or hostile is an observation, never an exception.
Programs run after ``from typing import *`` (both recorders ran them in a
namespace holding typing's names; HumanEval's prompts assume it).

Episode state is (task, last program, its hidden outcome): immutable, so the
environment is :class:`evoagent.envs.base.Restorable`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from evoagent.envs.base import EpisodeValue
from evoagent.envs.code.data import visible_tests
from evoagent.envs.code.sandbox import Limits, Result, Sandbox, shared_sandbox
from evoagent.trajectory import Task

PREAMBLE = "from typing import *\n"
HIDDEN_LIMITS = Limits(wall_s=10.0, cpu_s=10.0)  # the recorders' evaluate timeout
VISIBLE_LIMITS = Limits(wall_s=5.0, cpu_s=5.0)  # LATS's execute timeout per test run
ERROR_PREFIX = "Error: "


def feedback(tests: tuple[str, ...], result: Result) -> str:
    """The visible tests' results as the agent reads them (LATS/Reflexion's format, plus why it stopped)."""
    head = "" if result.status == "ok" else f"{ERROR_PREFIX}{result.status}: {result.error}\n\n"
    passed = [t for t, r in zip(tests, result.tests) if r.get("ok")]
    failed = [_failed_line(t, r) for t, r in zip(tests, result.tests) if not r.get("ok")]
    text = head + "Tested passed:\n" + "".join(f"{t}\n" for t in passed) + "\nTests failed:\n" + \
        "".join(f"{t}\n" for t in failed)
    if result.output:
        text += "\nOutput:\n" + result.output[:1000]
    return text


def _failed_line(test: str, result: dict) -> str:
    message = str(result.get("message") or result.get("kind") or "failed")
    if " # output: " in message:  # an assert whose left side we could evaluate: its value
        return f"{test} # output: {message.split(' # output: ', 1)[1]}"
    return f"{test} # {message}"


def run_visible(task: Task, program: Any, sandbox: Sandbox | None = None) -> tuple[tuple[str, ...], Result]:
    """The program's results on the task's visible tests (cached per task and program in this process)."""
    tests = visible_tests(task)
    if sandbox is not None or not isinstance(program, str):
        return tests, (sandbox or shared_sandbox()).run(_program(program), list(tests), VISIBLE_LIMITS)
    return tests, _cached_run(task, program, False)


def run_hidden(task: Task, program: Any, sandbox: Sandbox | None = None) -> Result:
    """The program's result on the hidden tests (cached per task and program in this process)."""
    if sandbox is not None or not isinstance(program, str):
        return (sandbox or shared_sandbox()).run(_program(program), [task.gold], HIDDEN_LIMITS)
    return _cached_run(task, program, True)


@functools.lru_cache(maxsize=8192)
def _cached_run(task: Task, program: str, hidden: bool) -> Result:
    """One sandbox run per (task, program, which tests): recombining recorded programs repeats many, and
    the environment's visible run is the ``visible`` reward's too."""
    if hidden:
        return shared_sandbox().run(_program(program), [task.gold], HIDDEN_LIMITS)
    return shared_sandbox().run(_program(program), list(visible_tests(task)), VISIBLE_LIMITS)


def _program(program: Any) -> Any:
    return PREAMBLE + program if isinstance(program, str) else program


@dataclass(frozen=True)
class Episode:
    task: Task
    program: str | None = None
    hidden: float = 0.0
    submitted: bool = False


class CodeEnv(EpisodeValue):
    """Gym-like code environment; see the module docstring."""

    name = "code"
    episode_type = Episode
    title = "a code environment"

    def __init__(self, sandbox: Sandbox | None = None) -> None:
        self.sandbox = sandbox
        self.episode: Episode | None = None

    def reset(self, task: Task) -> str:
        self.episode = Episode(task)
        tests = visible_tests(task)
        shown = "".join(f"{t}\n" for t in tests) if tests else "(none)\n"
        return f"{task.question}\nVisible tests:\n{shown}"

    def step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        if self.episode is None:
            raise RuntimeError("call reset(task) before step()")
        ep = self.episode
        if isinstance(action, str) and action.strip().lower() == "submit":
            self.episode = Episode(ep.task, ep.program, ep.hidden, True)
            return "submitted", ep.hidden, True, {"valid": True, "submitted": True}
        if ep.submitted:
            return ERROR_PREFIX + "the episode is over", 0.0, True, {"valid": False}
        tests, visible = run_visible(ep.task, action, self.sandbox)
        hidden = run_hidden(ep.task, action, self.sandbox)
        outcome = 1.0 if hidden.all_passed else 0.0
        self.episode = Episode(ep.task, action if isinstance(action, str) else None, outcome)
        info = {"valid": visible.status not in ("syntax", "refused"), "status": visible.status,
                "visible_passed": visible.passed, "visible_total": len(tests)}
        return feedback(tests, visible), outcome, False, info

    def close(self) -> None:
        """The sandbox pool is the process's; nothing of this environment's own to release."""


__all__ = ["CodeEnv", "Episode", "feedback", "run_hidden", "run_visible"]
