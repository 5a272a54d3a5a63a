"""Recorded LATS and Reflexion runs: imported into a store, and re-executed in our sandbox (faithfulness).

Import writes each row of a log as one trajectory (``data.to_trajectory``):
every program a step with the feedback the recorder showed the agent, the
reflections as thoughts, outcome = the row's recorded verdict, ``item_id``
= the row's index (a row whose programs another row already produced is a
row of ``rediscoveries``, so counting both counts the log's rows). A row the
recorder wrote without any program (LATS's early exits) is a trajectory with
no steps. All files are read and checked before one transaction writes them.

Faithfulness (``replay_file``) re-executes every recorded program that has a
recorded verdict: the final program of each row against the row's hidden
test (the verdict: ``is_solved``), and, for LATS, the first program against
the agent's own tests named in its feedback (the verdict: which of them the
log lists as passed). A program agrees when all its verdicts match ours.
"""
from __future__ import annotations

import collections
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from evoagent.envs.code.data import (ImportTotals, Recording, Row, feedback_asserts, load_tasks, read_recorded,
                                    to_trajectory)
from evoagent.envs.code.env import HIDDEN_LIMITS, PREAMBLE, VISIBLE_LIMITS
from evoagent.envs.code.sandbox import SandboxError, shared_sandbox
from evoagent.errors import UserError
from evoagent.escaping import visible



def import_logs(paths: Sequence[str | Path], kind: str, store_path: str) -> list[tuple[Recording, int, int]]:
    """Check every file whole, then write all in one transaction: (recording, trajectories, empty rows)."""
    from stores import DuckDBStore, TrajectoryBatch

    totals = ImportTotals()  # bounds the command, not only each file
    recordings = [read_recorded(p, kind, totals=totals) for p in paths]
    trajs, items = [], []
    for rec in recordings:
        for row in rec.rows:
            trajs.append(to_trajectory(rec, row))
            items.append(row.index)
    batch = TrajectoryBatch.from_trajectories(trajs, campaign="import", item_ids=items, reward_source="recorded")
    with DuckDBStore(store_path) as store:
        store.add_tasks([t for s in sorted({r.task_set for r in recordings}) for t in load_tasks(s)])
        store.write(batch)
    return [(rec, len(rec.rows), sum(1 for r in rec.rows if not r.programs)) for rec in recordings]


@dataclass
class Faithfulness:
    """Per executed program: does our sandbox give the verdicts the log recorded?"""

    source: str
    agreed: int = 0
    total: int = 0
    not_executed: int = 0  # rows with no program (early exits)
    disagreements: dict[str, list[str]] = field(default_factory=lambda: collections.defaultdict(list))

    @property
    def percent(self) -> float:
        return 100.0 * self.agreed / self.total if self.total else 0.0

    def render(self) -> str:
        lines = [f"{self.source}: {self.total} executed programs, {self.not_executed} rows without a program"]
        for task_id in sorted(self.disagreements, key=_task_order):
            for what in self.disagreements[task_id]:
                lines.append(f"  {task_id}: {visible(what)}")
        lines.append(f"agreement: {self.agreed}/{self.total} executed programs ({self.percent:.1f}%)")
        return "\n".join(lines)


def _task_order(task_id: str) -> tuple[str, int]:
    name, _, number = task_id.partition("/")
    return name, int(number) if number.isdigit() else 0


def _checks(row: Row) -> list[tuple[str, str, list[str], list[bool], str]]:
    """(label, program, tests, recorded verdicts, what) for each program of a row with a recorded verdict."""
    out = []
    if row.programs:
        out.append(("final", row.programs[-1], [row.test], [row.solved], "hidden tests"))
    if len(row.programs) > 1 and row.feedback[0]:
        passed_part, _, failed_part = row.feedback[0].partition("Tests failed:")
        passed, failed = feedback_asserts(passed_part), feedback_asserts(failed_part)
        if passed or failed:
            out.append(("first", row.programs[0], passed + failed, [True] * len(passed) + [False] * len(failed),
                        "its own tests"))
    return out


def replay_file(path: str | Path, kind: str, workers: int = 2) -> Faithfulness:
    """Re-execute the log's programs in the sandbox; see the module docstring for what is compared."""
    rec = read_recorded(path, kind)
    report = Faithfulness(rec.source)
    jobs = [(row, check) for row in rec.rows for check in _checks(row)]
    report.not_executed = sum(1 for row in rec.rows if not row.programs)
    sandbox = shared_sandbox()
    try:
        sandbox.run("pass", [])  # the sandbox starts, or one line saying why not
    except SandboxError as err:
        raise UserError(str(err)) from None

    def run(job):
        row, (label, program, tests, verdicts, what) = job
        limits = HIDDEN_LIMITS if label == "final" else VISIBLE_LIMITS
        return sandbox.run(PREAMBLE + program, tests, limits)

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(run, jobs))
    for (row, (label, _, tests, verdicts, what)), result in zip(jobs, results):
        ours = [bool(t.get("ok")) for t in result.tests]
        report.total += 1
        if ours == verdicts:
            report.agreed += 1
            continue
        if label == "final":
            detail = result.tests[0].get("message") or result.error if result.tests else result.error
            report.disagreements[row.task_id].append(
                f"row {row.index + 1} final program: recorded {'solved' if verdicts[0] else 'unsolved'}, "
                f"ours {'passes' if ours and ours[0] else 'fails'} the {what}"
                + (f" ({detail[:120]})" if detail and not (ours and ours[0]) else ""))
        else:
            differ = [tests[i] for i in range(len(tests)) if i >= len(ours) or ours[i] != verdicts[i]]
            report.disagreements[row.task_id].append(
                f"row {row.index + 1} first program: {len(differ)} of {len(tests)} of {what} differ "
                f"(e.g. {differ[0][:100]}, recorded {'passed' if verdicts[tests.index(differ[0])] else 'failed'})")
    return report


__all__ = ["Faithfulness", "import_logs", "replay_file"]
