"""Reward models of the game24 environment: GPT-4's recorded values (``recorded``), exact ``solvable``
and a learned value of the numbers left (``state_value``, in ``value_model.py``).

``recorded`` replays Tree of Thoughts' own value function: for every state
ToT's search proposed on puzzles 901..1000, GPT-4 was asked 3 times whether
the numbers left can still reach 24 (sure = 20, likely = 1, impossible =
0.001, summed: 0..60), and for each final answer whether it is right. The
model's value of a prefix is that sum / 60 (1.0 = "sure" three times) for the
state the prefix leads to, averaged where GPT-4 valued the same state more
than once (ToT caches values per prompt, so one state reached by two paths
can carry two values). Only proposals whose lines were all valid count (the
state GPT-4 judged is then the state the environment is in). A state GPT-4
never valued, an invalid last step, or any puzzle outside 901..1000 scores
0.0 and is counted (``missing``). It never reads gold: ``uses_gold`` False.

``solvable``: 1.0 iff the state after the prefix can still make exactly 24
(the oracle's per-step reward, computed from the numbers without executing
anything), 0.0 for a prefix whose last step is invalid. It is the judge the
others are measured against (ROC-AUC in experiments/game24_values.py).
"""
from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from typing import Any

from evoagent.envs.game24.env import Episode, play, start
from evoagent.envs.game24.solver import solvable
from evoagent.errors import UserError
from evoagent.registry import Key, Part
from evoagent.rewards.base import Query, RewardModel, Score
from evoagent.trajectory import Task

__all__ = ["RecordedValues", "Solvable", "recorded_table"]

MAX_VALUE = 60.0  # ToT: "sure" (20) three times


def _walk(task: Task, actions: Sequence[str]) -> tuple[Episode, bool]:
    """The episode after ``actions`` and whether every one of them was valid."""
    episode, ok = start(task), True
    for a in actions:
        episode, _, _, info = play(episode, a)
        ok = ok and bool(info.get("valid"))
    return episode, ok


def _key(task: Task, actions: Sequence[str]) -> tuple[Any, ...] | None:
    """What GPT-4's value was about: the numbers left, or the answer line; None if a step is invalid."""
    episode, ok = _walk(task, actions)
    if not ok or not actions:
        return None
    if episode.answered:
        return (task.task_id, "answer", " ".join(actions[-1].split()))
    return (task.task_id, "state", episode.state)


_TABLE: dict[tuple[Any, ...], float] | None = None
_TABLE_LOCK = threading.Lock()


def recorded_table() -> dict[tuple[Any, ...], float]:
    """(task, state or answer) -> GPT-4's mean recorded value (0..60), from the bundled ToT log."""
    global _TABLE
    with _TABLE_LOCK:
        if _TABLE is None:
            from evoagent.envs.game24.data import load_tasks
            from evoagent.envs.game24.recorded import bundled

            tasks = {t.task_id: t for t in load_tasks()}
            seen: dict[tuple[Any, ...], list[float]] = collections.defaultdict(list)
            for rec in bundled(["gpt-4-tot"]):
                for p in rec.proposals:
                    key = _key(tasks[p.task_id], p.lines)
                    if key is not None:
                        seen[key].append(p.value)
            _TABLE = {k: sum(v) / len(v) for k, v in seen.items()}
        return _TABLE


class _FromState(RewardModel):
    """A model whose value depends only on the state a prefix leads to (no execution, no cost)."""

    def __init__(self, tasks: dict[str, Task]):
        self.tasks = tasks
        self.missing = 0  # queries it had no value for (scored 0.0)
        self._lock = threading.Lock()

    def score(self, queries: Sequence[Query]) -> list[Score]:
        return [Score(self.value(self.tasks[q.task_id], q.actions)) for q in queries]

    def value(self, task: Task, actions: Sequence[str]) -> float:
        raise NotImplementedError


class RecordedValues(_FromState):
    """GPT-4's recorded ToT values; see the module docstring."""

    name = "recorded"
    uses_gold = False

    @property
    def source(self) -> str:
        return "recorded(gpt-4-tot)"

    def value(self, task: Task, actions: Sequence[str]) -> float:
        key = _key(task, actions)
        found = recorded_table().get(key) if key is not None else None
        if found is None:
            with self._lock:
                self.missing += 1
            return 0.0
        return found / MAX_VALUE


class Solvable(_FromState):
    """Exact solvability of the state after the prefix; see the module docstring."""

    name = "solvable"
    uses_gold = True

    @property
    def source(self) -> str:
        return "solvable"

    def value(self, task: Task, actions: Sequence[str]) -> float:
        episode, ok = _walk(task, actions)
        if actions and not ok:
            return 0.0
        if episode.answered:
            return episode.outcome
        return 1.0 if solvable(episode.state) else 0.0


def _game24_tasks(ctx: Any, name: str) -> dict[str, Task]:
    bad = [t for t in ctx.tasks.values() if t.env != "game24"]
    if bad:
        raise UserError(f"reward model {name!r} judges game24 states only (task {bad[0].task_id!r} is {bad[0].env})")
    return ctx.tasks


def _recorded(ctx: Any, params: dict[str, Any], seed: int) -> RecordedValues:
    return RecordedValues(_game24_tasks(ctx, "recorded"))


def _solvable(ctx: Any, params: dict[str, Any], seed: int) -> Solvable:
    return Solvable(_game24_tasks(ctx, "solvable"))


RECORDED = Part("reward", "recorded", _recorded, uses_gold=False,
                doc="game24: GPT-4's recorded Tree of Thoughts values of each state (0 where it has none)")
SOLVABLE = Part("reward", "solvable", _solvable, uses_gold=True,
                doc="game24: 1 iff the state can still make exactly 24 (exact search; an oracle)")


def _state_value(ctx: Any, params: dict[str, Any], seed: int) -> Any:
    from evoagent.envs.game24.value_model import StateValue

    return StateValue(_game24_tasks(ctx, "state_value"), train_ranks=params["train_ranks"], states=params["states"])


def _ranks(x: Any) -> bool:
    return (isinstance(x, list) and len(x) == 2 and all(type(r) is int for r in x)
            and 1 <= x[0] <= x[1] <= 1362)


STATE_VALUE = Part("reward", "state_value", _state_value, {
    "train_ranks": Key(list, [1, 900], _ranks, "[first, last] puzzle ranks with 1 <= first <= last <= 1362"),
    "states": Key(int, 20000, lambda x: 100 <= x <= 200_000, "within 100..200000"),
}, uses_gold=False, doc="game24: a learned value of the numbers left (trained on exact labels of states no "
                        "puzzle of the campaign can reach; envs/game24/value_model.py)")
