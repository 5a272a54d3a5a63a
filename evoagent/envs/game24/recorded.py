"""GPT-4's recorded Tree of Thoughts runs, replayed through the environment and imported.

Every recorded action is executed by the environment (``play``), so each one
gets an observation and, when GPT-4 got the arithmetic or the bookkeeping
wrong, an error kind (``rules.ERROR_KINDS``); nothing raises. ``import_logs``
writes the final answers as trajectories (source ``gpt-4-tot``, ``gpt-4-cot``,
``gpt-4-standard``): steps as the environment judged them, outcome = the
log's own verdict ``r`` (ToT's checker), one ``recorded`` reward row each;
a sample that repeats an earlier one of the same puzzle is a row of
``rediscoveries`` (``item_id`` = the sample's index in the log), so counting
trajectories plus rediscoveries counts samples as the log does.
"""
from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from evoagent.envs.game24.data import Recording, bundled_logs, import_budget, load_tasks, read_log
from evoagent.envs.game24.env import Episode, play, start
from evoagent.trajectory import Step, Task, Trajectory

__all__ = ["Tally", "bundled", "execute_lines", "import_logs", "tally", "to_trajectories"]


@lru_cache(maxsize=8)
def _read(path: str) -> Recording:
    return read_log(path)


def bundled(sources: Sequence[str] | None = None) -> list[Recording]:
    """The bundled logs (all three, or the named sources), parsed once per process."""
    from evoagent.errors import UserError

    files = bundled_logs()
    unknown = [s for s in sources or () if s not in files]
    if unknown:
        raise UserError(f"key 'policy.sources': unknown recorded source {unknown[0]!r} "
                        f"(have {', '.join(sorted(files))})")
    return [_read(str(files[s])) for s in (sources or sorted(files))]


def execute_lines(task: Task, lines: Iterable[str]) -> tuple[list[Step], list[dict], Episode]:
    """Run ``lines`` from the puzzle's start: the steps, each step's info, the final episode."""
    episode, steps, infos = start(task), [], []
    for i, line in enumerate(lines):
        episode, obs, reward, info = play(episode, line)
        steps.append(Step(i, line, obs, reward, valid=bool(info.get("valid"))))
        infos.append(info)
    return steps, infos, episode


@dataclass
class Tally:
    """How GPT-4's recorded actions fare in the environment, for one log.

    ``errors``: invalid actions by kind whose earlier lines were all valid (GPT-4's own
    mistakes); ``after_error``: invalid actions that follow an invalid line of the same
    answer (the state did not change, so GPT-4's next line usually fails too).
    """

    source: str
    actions: int = 0
    valid: int = 0
    inexact: int = 0  # valid, with a printed decimal standing for an exact fraction
    errors: collections.Counter = field(default_factory=collections.Counter)
    after_error: collections.Counter = field(default_factory=collections.Counter)
    answers: int = 0
    verdict_agrees: int = 0  # final answers whose outcome here equals the log's r
    runs: int = 0


def tally(rec: Recording) -> Tally:
    """Replay every action of a log: each line of each final answer, and (ToT) each proposal's
    new line after its prefix. Counts validity, error kinds and agreement with the log's verdicts."""
    tasks = {t.task_id: t for t in load_tasks()}
    out = Tally(rec.source)

    def count(infos: list[dict], only_last: bool) -> None:
        for i, info in enumerate(infos):
            if only_last and i < len(infos) - 1:
                continue
            out.actions += 1
            out.valid += bool(info.get("valid"))
            out.inexact += bool(info.get("valid") and info.get("inexact"))
            out.answers += bool(info.get("answer"))
            if not info.get("valid"):
                clean = all(j.get("valid") for j in infos[:i])
                (out.errors if clean else out.after_error)[info.get("error") or "format"] += 1

    for run in rec.runs:
        _, infos, episode = execute_lines(tasks[run.task_id], run.lines)
        count(infos, only_last=False)
        out.runs += 1
        out.verdict_agrees += play(episode, "submit")[2] == run.r
    for p in rec.proposals:
        _, infos, _ = execute_lines(tasks[p.task_id], p.lines)
        count(infos, only_last=True)
    return out


def to_trajectories(rec: Recording) -> tuple[list[Trajectory], list[int]]:
    """A log's final answers as trajectories (outcome: the log's verdict), and each one's sample index."""
    tasks = {t.task_id: t for t in load_tasks()}
    trajs, samples = [], []
    for run in rec.runs:
        steps, _, _ = execute_lines(tasks[run.task_id], run.lines)
        trajs.append(Trajectory(run.task_id, tuple(steps), run.r, rec.source))
        samples.append(run.sample)
    return trajs, samples


def import_logs(paths: Sequence[str | Path], store_path: str) -> list[tuple[Recording, int]]:
    """Check every file whole, then write all of them in one transaction: (recording, trajectories) each."""
    from stores import DuckDBStore, TrajectoryBatch

    budget = import_budget()  # totals across the files, not per file
    recordings = [read_log(p, budget) for p in paths]
    trajs: list[Trajectory] = []
    samples: list[int] = []
    for rec in recordings:
        t, s = to_trajectories(rec)
        trajs += t
        samples += s
    batch = TrajectoryBatch.from_trajectories(trajs, campaign="import", item_ids=samples,
                                              reward_source="recorded")
    with DuckDBStore(store_path) as store:
        store.add_tasks(load_tasks())
        store.write(batch)
    return [(rec, len(rec.runs)) for rec in recordings]
