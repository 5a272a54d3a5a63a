"""One registry of the parts a campaign names: operators, strategies, reward models.

Each part is declared once, where it is written (``register(...)`` at the end
of its module), with its campaign keys, their defaults and checks. Campaign
validation, the evolution strategy's planning and the runner's dispatch all
read this table, so adding an operator is one module plus one registration;
nothing else lists the parts by name.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["operator", "strategy", "reward"]
SECTION: dict[str, str] = {"operator": "operators", "strategy": "strategy", "reward": "rewards"}


@dataclass(frozen=True)
class Key:
    """One campaign key: its type(s), default, check and what the check means."""

    types: type | tuple[type, ...]
    default: Any
    check: Callable[[Any], bool] | None = None
    meaning: str = ""


def rate(default: float) -> Key:
    """The ``operators.<name>.rate`` key every operator has (bounded, like every numeric key)."""
    return Key((int, float), default, lambda x: 0 <= x <= 10**6, "within 0..1000000")


@dataclass(frozen=True)
class Part:
    """A named part of a campaign.

    ``fn`` is the operator function (``arity`` 0: ``fn(task, rng, ctx)``; 1:
    ``fn(parent, rng, ctx)``; None: ``fn(parents, rng, ctx)`` with two or more
    parents), the strategy class, or the reward-model factory. ``keys`` are
    its campaign keys, relative to its section (``operators.<name>.``,
    ``rewards.<name>.``). ``fallback``: the operator a strategy uses instead
    when a population has too few distinct members for this one.
    ``uses_gold`` (reward models): whether its values come from the gold
    answers of the tasks being searched; then no prompt may show them.
    """

    kind: Kind
    name: str
    fn: Callable[..., Any]
    keys: dict[str, Key] = field(default_factory=dict)
    arity: int | None = 0
    fallback: str | None = None
    uses_gold: bool = True  # reward models: values derive from the searched tasks' gold answers
    takes_args: bool = False  # operators: also called with ``args=`` (the work item's parsed JSON args)
    # Reward models: a check of the campaign that needs more than its keys (a key in the
    # environment, a model directory that loads), run before any file is written.
    preflight: Callable[[Any], None] | None = None
    # Reward models: the reward source the campaign's settings name, with the model's content
    # digest (a model folder's files, a server's report), computed without scoring: resume re-checks it.
    identity: Callable[[Any], str] | None = None
    doc: str = ""

    def path(self, key: str) -> str:
        """The full campaign path of one of this part's keys."""
        if self.kind == "strategy":
            return f"strategy.{self.name}.{key}"
        return f"{SECTION[self.kind]}.{self.name}.{key}"


_PARTS: dict[tuple[str, str], Part] = {}


def register(part: Part) -> Part:
    """Declare a part; declaring the same name twice with a different function is an error."""
    old = _PARTS.get((part.kind, part.name))
    if old is not None and old.fn is not part.fn:
        raise ValueError(f"{part.kind} {part.name!r} is already registered")
    _PARTS[(part.kind, part.name)] = part
    return part


def unregister(kind: Kind, name: str) -> None:
    """Remove a part (tests that register examples clean up with this)."""
    _PARTS.pop((kind, name), None)


def _load_builtins() -> None:
    # Built-in parts register themselves on import; importing here keeps callers from listing them.
    import evoagent.rewards  # noqa: F401
    import evoagent.strategies  # noqa: F401
    import operators  # noqa: F401


def parts(kind: Kind) -> dict[str, Part]:
    """Every registered part of one kind, by name, in registration order."""
    _load_builtins()
    return {name: p for (k, name), p in _PARTS.items() if k == kind}


def get(kind: Kind, name: str) -> Part:
    """One part; ``KeyError`` if it is not registered."""
    found = parts(kind).get(name)
    if found is None:
        raise KeyError(f"unknown {kind} {name!r}")
    return found


def campaign_keys() -> Iterator[tuple[str, Key]]:
    """Every part's campaign keys, as (full path, key)."""
    for kind in ("operator", "strategy", "reward"):
        for part in parts(kind).values():  # type: ignore[arg-type]
            for key, spec in part.keys.items():
                yield part.path(key), spec
