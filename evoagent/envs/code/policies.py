"""The code environment's offline policy: ``replay`` recombines the recorded programs of each task.

Its pool for a task is every distinct program the bundled LATS and Reflexion
runs wrote for it (all sources, or ``policy.sources``), each with the
reflection that preceded it as its thought. Each step it writes one program
it has not tried in this episode (nor one the operator asks it to avoid),
drawn with the work item's generator, so operators recombine what different
recorders wrote. Its stopping rule is its own and gold-free: it submits once
a program passed all the visible tests it was shown (the observation), when
it has tried ``policy.max_programs`` programs, or when the pool is used up.
It never reads the recorders' verdicts (``is_solved``): a recorded run that
stopped because its hidden tests passed leaves no trace in what it does.
When the operator's guidance is a recorded reflection (``revise`` offline,
:class:`evoagent.envs.code.agent.RecordedAdvisor`), it writes a program the
recorder wrote right after that reflection, if one is left to try.
"""
from __future__ import annotations

import functools
import random
from collections.abc import Sequence

from evoagent.envs.code.data import BUNDLED, DATA, read_recorded
from evoagent.errors import UserError
from evoagent.policies.base import SUBMIT, Action, Guidance, is_submit
from evoagent.trajectory import Step, Task

MATCH_CHARS = 500

__all__ = ["CodeReplayPolicy", "passed_all_visible", "recorded_programs", "recorded_reflections"]


def passed_all_visible(observation: str | None) -> bool:
    """Whether an observation of the code environment reports every visible test passed."""
    if not observation or not observation.startswith("Tested passed:"):
        return False
    failed = observation.split("\nTests failed:\n", 1)
    return len(failed) == 2 and not failed[1].split("\nOutput:\n", 1)[0].strip()


@functools.lru_cache(maxsize=4)
def recorded_reflections(sources: tuple[str, ...] = ()) -> dict[tuple[str, str], str]:
    """(task id, program) -> the first reflection a recorder wrote on that program's feedback (the
    thought of the program it wrote next), over the bundled logs (or ``sources``)."""
    from evoagent.envs.code.data import to_trajectory

    recorded_programs(sources)  # the same check of the source names
    found: dict[tuple[str, str], str] = {}
    for rel, source in BUNDLED.items():
        if sources and source not in sources:
            continue
        rec = read_recorded(DATA / rel, rel.split("/")[0])
        for row in rec.rows:
            steps = to_trajectory(rec, row).steps
            for before, after in zip(steps, steps[1:]):
                if after.thought.strip():
                    found.setdefault((row.task_id, before.action), after.thought)
    return found


@functools.lru_cache(maxsize=4)
def recorded_programs(sources: tuple[str, ...] = ()) -> dict[str, tuple[tuple[str, str], ...]]:
    """task id -> distinct recorded (program, thought) pairs, in file then row then step order."""
    known = set(BUNDLED.values())
    unknown = [s for s in sources if s not in known]
    if unknown:
        raise UserError(f"key 'policy.sources': unknown recorded source {unknown[0]!r} "
                        f"(have {', '.join(sorted(known))})")
    from evoagent.envs.code.data import to_trajectory

    found: dict[str, dict[str, str]] = {}
    for rel, source in BUNDLED.items():
        if sources and source not in sources:
            continue
        rec = read_recorded(DATA / rel, rel.split("/")[0])
        for row in rec.rows:
            for step in to_trajectory(rec, row).steps:
                found.setdefault(row.task_id, {}).setdefault(step.action, step.thought)
    return {tid: tuple(programs.items()) for tid, programs in found.items()}


def _follows(thought: str, notes: str) -> bool:
    """Whether the guidance holds the reflection a recorded program followed (revise shows it whole;
    MCTS's lessons show several, each clipped: its first ``MATCH_CHARS`` characters are enough)."""
    head = thought.strip()[:MATCH_CHARS]
    return bool(head) and head in notes


class CodeReplayPolicy:
    """Recorded programs of the task, recombined; see the module docstring."""

    name = "replay"

    def __init__(self, sources: Sequence[str] = (), max_programs: int = 4) -> None:
        self.max_programs = max_programs
        self._pool = recorded_programs(tuple(sources))

    def next_action(self, task: Task, history: Sequence[Step], guidance: Guidance,
                    rng: random.Random) -> Action:
        tried = [s.action for s in history if not is_submit(s.action)]
        if history and passed_all_visible(history[-1].observation):
            return Action(SUBMIT, thought="the last program passed every visible test")
        if len(tried) >= self.max_programs:
            return Action(SUBMIT, thought=f"{self.max_programs} programs tried")
        options = [(p, t) for p, t in self._pool.get(task.task_id, ())
                   if p not in tried and p not in guidance.avoid]
        if not options:
            return Action(SUBMIT, thought="no recorded program left to try")
        followed = [(p, t) for p, t in options if _follows(t, guidance.notes)]
        if followed:  # a recorded reflection (revise offline): the program the recorder wrote after it
            options = followed
        program, thought = options[rng.randrange(len(options))]
        return Action(program, thought=thought)
