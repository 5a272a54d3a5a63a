"""The data model shared by environments, policies, operators and the store.

Records are frozen: whatever reads them (the store, an operator, a test) can
keep a reference without fearing a later mutation. A trajectory's identity is
a content hash of its task and actions, so the same chain of actions found
twice is one trajectory.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


class FrozenMeta(dict):  # type: ignore[type-arg]
    """A dict nobody can change after it is made (a task's ``meta``); pickles like a dict."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a task's meta is read-only; use Task.with_meta")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMeta, (dict(self),))


@dataclass(frozen=True)
class Task:
    """One benchmark instance. ``gold`` is for scoring only; policies never see it.

    ``meta``: the environment's own fields of the task (InterCode-SQL: ``db``, ``hardness``,
    ``schema``; named by its part's ``meta_fields``), read-only; the store keeps them as JSON.
    """

    task_id: str
    env: str
    question: str
    gold: str = field(default="", repr=False)
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if type(self.meta) is not FrozenMeta:
            object.__setattr__(self, "meta", FrozenMeta(self.meta))

    def with_meta(self, **fields: Any) -> Task:
        """This task with ``fields`` added to (or replacing those in) its meta."""
        return replace(self, meta={**self.meta, **fields})


def storable(text: str) -> str:
    """``text`` as valid Unicode: an agent's or model's text can hold lone surrogates (e.g. from a
    JSON ``\\ud800`` escape), which UTF-8 (DuckDB, Parquet, Arrow) cannot store; each becomes U+FFFD,
    a well-formed surrogate pair the character it encodes."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


@dataclass(frozen=True)
class Step:
    """One action and what the environment answered.

    ``observation`` and ``reward`` are None for an imported action the recorder logged but never
    executed (``blocked``). Texts are made storable here, the one place every step is built, so
    nothing downstream (trajectory id, store, snapshot, export) meets an unencodable string; the
    environment was given the original text.
    """

    idx: int
    action: str
    observation: str | None
    reward: float | None
    thought: str = ""
    valid: bool = True
    process_reward: float | None = None

    def __post_init__(self) -> None:
        for name in ("action", "observation", "thought"):
            text = getattr(self, name)
            if isinstance(text, str) and (clean := storable(text)) is not text:
                object.__setattr__(self, name, clean)


def trajectory_id(task_id: str, actions: list[str] | tuple[str, ...]) -> str:
    """Content hash of a task and its action sequence (32 hex chars): the task id and each
    action, UTF-8, each action after a NUL byte, hashed in one call."""
    return hashlib.blake2b("\x00".join((task_id, *actions)).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Trajectory:
    """A whole episode on one task, plus where it came from."""

    task_id: str
    steps: tuple[Step, ...]
    outcome_reward: float
    source: str
    generation: int | None = None
    operator: str | None = None
    parents: tuple[str, ...] = ()
    seed: int | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    info: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(s.action for s in self.steps)

    @cached_property
    def traj_id(self) -> str:
        return trajectory_id(self.task_id, [s.action for s in self.steps])

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    @property
    def solved(self) -> bool:
        return self.outcome_reward >= 1.0


@dataclass(frozen=True)
class Summary:
    """A trajectory without its steps: what selection needs, so rounds hold no step text.

    ``fitness`` is the reward objective of selection (the outcome against gold,
    or a reward model's trajectory score); ``outcome_reward`` is always gold's,
    for reporting.
    """

    traj_id: str
    task_id: str
    outcome_reward: float
    n_steps: int
    cost_usd: float
    fitness: float

    @property
    def solved(self) -> bool:
        return self.outcome_reward >= 1.0
