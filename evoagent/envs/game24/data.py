"""Game of 24 data shipped with evoagent: the 1,362 puzzles and GPT-4's recorded ToT runs.

``24.csv`` (Tree of Thoughts' puzzle list, ranked by human solve time) gives
task ``game24/<rank>`` (rank 1..1362). ToT's logs name a puzzle by its
0-based row index in that file (``idx``), so ``rank = idx + 1``: ToT's test
set, indices 900..999, is ranks 901..1000. A log is one of three kinds:
``tot`` (propose 1, value 3, greedy breadth 5: each step's proposals with
GPT-4's values, and the 5 final candidates with their verdicts ``infos[].r``),
``cot`` and ``standard`` (100 sampled answers per puzzle, with ``infos[].r``
or ``accs``). Everything is read with bounds and checked before use.
"""
from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from evoagent.errors import UserError
from evoagent.trajectory import Task

__all__ = ["DATA_DIR", "N_PUZZLES", "LogRun", "Proposal", "Recording", "bundled_logs", "load_tasks",
           "read_log", "task_id"]

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "game24"
N_PUZZLES = 1362
MAX_LINES = 50  # action lines kept per recorded sample (GPT-4's longest CoT sample has 13)
MAX_STEP = MAX_LINES  # a ToT proposal's search depth (GPT-4's ToT log: 0..3)
# Records per file are bounded by the file's size; what one record unfolds into is bounded here
# (a few KB of gzip can list millions of answers). The bundled logs: 10,000 answers at most.
MAX_ANSWERS = 100_000  # recorded answers (samples) per file
MAX_PROPOSALS = 200_000  # ToT proposals (valued states) per file
# ... and per import command, across all its files (the bundled logs: 20,500 answers, 8,412
# proposals, 77,654 action lines), so that several maximal files cannot add up.
MAX_IMPORT_ANSWERS = MAX_ANSWERS
MAX_IMPORT_PROPOSALS = MAX_PROPOSALS
MAX_IMPORT_LINES = 500_000  # action lines of answers and proposals together
ENV = "game24"


def task_id(rank: int) -> str:
    return f"{ENV}/{rank}"


@lru_cache(maxsize=1)
def _puzzles() -> tuple[tuple[int, str], ...]:
    with gzip.open(DATA_DIR / "24.csv.gz", "rt", encoding="utf-8", newline="") as f:
        rows = [(int(r["Rank"]), " ".join(r["Puzzles"].split())) for r in csv.DictReader(f)]
    if [r for r, _ in rows] != list(range(1, N_PUZZLES + 1)):
        raise RuntimeError("the bundled 24.csv is damaged: ranks are not 1..1362")
    return tuple(rows)


def load_tasks(ranks: Sequence[int] | None = None) -> list[Task]:
    """Tasks ``game24/<rank>`` for an inclusive ``[first, last]`` rank range (all 1,362 without)."""
    lo, hi = (ranks[0], ranks[1]) if ranks else (1, N_PUZZLES)
    if not 1 <= lo <= hi <= N_PUZZLES:
        raise UserError(f"key 'tasks.ranks': must be [first, last] with 1 <= first <= last <= {N_PUZZLES}, "
                        f"got {list(ranks or [])}")
    return [Task(task_id(r), ENV, q, meta={"numbers": [int(n) for n in q.split()]}) for r, q in _puzzles()[lo - 1:hi]]


@dataclass(frozen=True)
class LogRun:
    """One recorded answer: its action lines, in order, and the log's own verdict ``r``."""

    task_id: str
    sample: int
    lines: tuple[str, ...]
    r: float


@dataclass(frozen=True)
class Proposal:
    """One state GPT-4 proposed in ToT's search: the lines leading to it, and GPT-4's value of it
    (ToT's sure/likely/impossible = 20/1/0.001, summed over 3 samples: 0..60)."""

    task_id: str
    step: int
    lines: tuple[str, ...]
    value: float


@dataclass(frozen=True)
class Recording:
    """A parsed log: its source (``gpt-4-tot``), kind, runs, and (ToT only) every proposal."""

    source: str
    kind: str
    runs: tuple[LogRun, ...]
    proposals: tuple[Proposal, ...] = ()


def bundled_logs() -> dict[str, Path]:
    """Source name -> the bundled GPT-4 log (``gpt-4-tot``, ``gpt-4-cot``, ``gpt-4-standard``)."""
    return {_source(p, "tot" if "propose" in p.name else None): p for p in sorted(DATA_DIR.glob("*.json.gz"))}


def _kind(path: Path, data: list[Any]) -> str:
    if data and isinstance(data[0], dict) and "steps" in data[0]:
        return "tot"
    name = path.name.lower()
    return "cot" if "_cot" in name else "standard" if "_standard" in name else "samples"


def _source(path: Path, kind: str | None) -> str:
    """``gpt-4_0.7_naive_cot_sample_100_...json`` -> ``gpt-4-cot`` (the model, then the method)."""
    name = path.name.split(".json")[0]
    return f"{name.split('_', 1)[0] or 'model'}-{kind or _kind(path, [])}"


def lines_of(text: str) -> tuple[str, ...]:
    """The action lines of one recorded answer (ToT's ``Steps:`` header and blank lines dropped)."""
    lines = [ln.strip() for ln in text.split("\n")]
    return tuple(ln for ln in lines if ln and not re.fullmatch(r"steps\s*:", ln, re.IGNORECASE))[:MAX_LINES]


class _Bad(Exception):
    pass


def _list(value: Any, what: str, item: type | None = None) -> list[Any]:
    if not isinstance(value, list) or (item is not None and not all(isinstance(v, item) for v in value)):
        raise _Bad(f"{what} must be a list" + (f" of {item.__name__}" if item else ""))
    return value


def _rank(rec: dict[str, Any], n: int) -> int:
    idx = rec.get("idx")
    if isinstance(idx, str) and idx.isdigit() and len(idx) < 6:
        idx = int(idx)
    if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < N_PUZZLES:
        raise _Bad(f"record {n}: 'idx' must be a puzzle index 0..{N_PUZZLES - 1}, got {str(idx)[:20]!r}")
    return idx + 1


def _too_many(what: str, per_file: int, left: int) -> str:
    if left < per_file:
        return f"more than {left:,} {what}, what is left of one import's {per_file:,} after the files before it"
    return f"more than {per_file:,} {what} in one file"


def _verdicts(rec: dict[str, Any], n: int, count: int) -> list[float]:
    if "infos" in rec:
        got = [i.get("r") if isinstance(i, dict) else None for i in _list(rec["infos"], f"record {n}: infos")]
    else:
        got = _list(rec.get("accs"), f"record {n}: 'infos' or 'accs'")
    if len(got) != count or not all(isinstance(r, (bool, int, float)) and r in (0, 1) for r in got):
        raise _Bad(f"record {n}: expected {count} verdicts of 0 or 1 (infos[].r or accs)")
    return [float(r) for r in got]


def import_budget() -> Any:
    """What one import of these logs reads across its files (``evoagent.envs.files.ImportBudget``)."""
    from evoagent.envs.files import ImportBudget

    return ImportBudget(answers=MAX_IMPORT_ANSWERS, proposals=MAX_IMPORT_PROPOSALS, lines=MAX_IMPORT_LINES)


def read_log(path: str | Path, budget: Any = None) -> Recording:
    """A ToT log (JSON or JSON.gz, within the same bounds as every recorded file), checked whole;
    ``budget``: what the import command has left to read (default: this file alone)."""
    from evoagent.envs.files import read_json

    path = Path(path)
    budget = budget or import_budget()
    data = read_json(path, budget)
    most_answers = min(MAX_ANSWERS, budget.left("answers"))
    most_proposals = min(MAX_PROPOSALS, budget.left("proposals"))
    lines_left = budget.left("lines")
    try:
        records = _list(data, "the file", dict)
        kind, seen = _kind(path, records), set()
        runs: list[LogRun] = []
        proposals: list[Proposal] = []
        for n, rec in enumerate(records):
            rank = _rank(rec, n)
            if rank in seen:
                raise _Bad(f"record {n}: puzzle index {rank - 1} appears twice")
            seen.add(rank)
            ys = _list(rec.get("ys"), f"record {n}: 'ys'", str)
            if len(runs) + len(ys) > most_answers:
                raise _Bad(_too_many("answers", MAX_ANSWERS, most_answers))
            for k, (y, r) in enumerate(zip(ys, _verdicts(rec, n, len(ys)))):
                runs.append(LogRun(task_id(rank), k, lines := lines_of(y), r))
                lines_left -= len(lines)
            for step in _list(rec.get("steps", []), f"record {n}: 'steps'", dict):
                new, values = (_list(step.get(k), f"record {n}: steps[].{k}") for k in ("new_ys", "values"))
                if len(new) != len(values) or not all(isinstance(y, str) for y in new) or not all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 60 for v in values):
                    raise _Bad(f"record {n}: steps[].new_ys and values must pair texts with values in 0..60")
                depth = step.get("step", 0)
                if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= MAX_STEP:
                    raise _Bad(f"record {n}: steps[].step must be a whole number 0..{MAX_STEP}, "
                               f"got {str(depth)[:20]!r}")
                if len(proposals) + len(new) > most_proposals:
                    raise _Bad(_too_many("proposals", MAX_PROPOSALS, most_proposals))
                for y, v in zip(new, values):
                    proposals.append(Proposal(task_id(rank), depth, lines := lines_of(y), float(v)))
                    lines_left -= len(lines)
            if lines_left < 0:
                raise _Bad(f"more than {MAX_IMPORT_LINES:,} action lines in one import")
    except _Bad as err:
        raise UserError(f"{path}: not a Tree of Thoughts Game of 24 log ({err})") from None
    if not runs:
        raise UserError(f"{path}: not a Tree of Thoughts Game of 24 log (no records)")
    budget.take("answers", len(runs), path)
    budget.take("proposals", len(proposals), path)
    budget.take("lines", budget.left("lines") - lines_left, path)
    return Recording(_source(path, kind), kind, tuple(runs), tuple(proposals))
