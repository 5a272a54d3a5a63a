"""The Python API: build a campaign, run it, read its results, resume it, from a notebook or a script.

    import evoagent

    c = evoagent.make_campaign("campaign.toml", ["budget.generations=1"])
    outcome = evoagent.run(c, "runs/c.duckdb")
    with evoagent.results("runs/c.duckdb") as r:
        print(r.population())           # a Polars DataFrame
    evoagent.resume("runs/c.duckdb", ["budget.generations=2"])

A part may be given by name (as in a campaign file) or as an object, the way
Optuna's ``create_study(sampler=...)`` takes a sampler: ``env=`` an
``Environment``, ``policy=`` a ``PolicyPart`` or any object with
``next_action``, ``strategy=`` a strategy part, ``search_reward=`` /
``fitness_reward=`` a reward part or a ``RewardModel`` instance, ``parts=``
any other part objects (operators). Objects are registered in this process
under their ``name``, and the campaign names them; a campaign stored with such
a part resumes in another process only when ``resume`` is given the same
objects (as ``optuna.load_study`` takes the sampler again). The CLI is a thin
layer over the same calls (``evoagent.launch``).
"""
from __future__ import annotations

import threading
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evoagent.errors import UserError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from evoagent.campaign import Campaign
    from evoagent.loop import Outcome

__all__ = ["Results", "make_campaign", "register", "results", "resume", "run"]

Progress = Callable[[dict[str, Any]], None]
# keyword -> (campaign key, registry kind)
_SLOTS: dict[str, tuple[str, str]] = {
    "env": ("env.kind", "environment"),
    "policy": ("policy.kind", "policy"),
    "strategy": ("strategy.kind", "strategy"),
    "search_reward": ("search.reward", "reward"),
    "fitness_reward": ("fitness.reward", "reward"),
}


def _as_part(kind: str, obj: Any) -> Any:
    """A part object for ``obj``: itself when it is one, else the declaration that hands it out."""
    if getattr(obj, "kind", None) == kind and isinstance(getattr(obj, "name", None), str):
        return obj
    if kind == "reward" and callable(getattr(obj, "score", None)):  # a RewardModel instance
        from evoagent.registry import Part

        return Part("reward", obj.name, lambda ctx, params, seed, _model=obj: _model,
                    uses_gold=bool(obj.uses_gold), doc=f"the instance {type(obj).__name__} given to evoagent.api")
    if kind == "policy" and callable(getattr(obj, "next_action", None)):  # a Policy instance
        from evoagent.policies.base import Made, PolicyPart

        return PolicyPart(obj.name, lambda c, store, _policy=obj: Made(_policy),
                          doc=f"the instance {type(obj).__name__} given to evoagent.api")
    raise UserError(f"{kind}: expected a name or a {kind} part, got {type(obj).__name__}")


_GIVEN: set[tuple[str, str]] = set()  # parts this module registered: a later object of the name replaces them


def register(parts: Iterable[Any]) -> list[str]:
    """Register part objects in this process (one line of error for a name taken by another part).

    An object given again under a name an earlier call registered (a notebook
    cell run twice, a ``resume`` after a ``run``) replaces the earlier one; a
    built-in or installed part's name is refused.
    """
    from evoagent import registry

    names = []
    for part in parts:
        if (part.kind, part.name) in _GIVEN:
            registry.unregister(part.kind, part.name)
        try:
            registry.register(part)
            _GIVEN.add((part.kind, part.name))
        except ValueError as exc:
            raise UserError(f"{part.kind} {part.name!r}: {exc}; give your part another name") from None
        names.append(f"{part.kind}.{part.name}")
    return names


def _named(doc: dict[str, Any], parts: Sequence[Any], slots: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` with each slot's key set to its part's name, the objects registered."""
    objects = list(parts)
    for slot, given in slots.items():
        if given is None:
            continue
        path, kind = _SLOTS[slot]
        if not isinstance(given, str):
            part = _as_part(kind, given)
            objects.append(part)
            given = part.name.rpartition(".")[2] if kind == "policy" else part.name
        node = doc
        *sections, leaf = path.split(".")
        for s in sections:
            node = node.setdefault(s, {})
            if not isinstance(node, dict):
                raise UserError(f"key {s!r}: expected a table")
        node[leaf] = given
    register(objects)
    return doc


def make_campaign(source: Mapping[str, Any] | str | Path, overrides: Sequence[str] = (), *, parts: Sequence[Any] = (),
             env: Any = None, policy: Any = None, strategy: Any = None, search_reward: Any = None,
             fitness_reward: Any = None) -> Campaign:
    """A validated campaign from a dict (as a TOML file would parse) or a TOML file's path.

    ``overrides``: ``"key.path=value"`` strings, as ``--set`` takes them. Every
    check runs here, before any file is written; a mistake is one ``UserError``.
    """
    from evoagent import campaign as campaign_mod

    if isinstance(source, Mapping):
        import copy

        doc, where = copy.deepcopy(dict(source)), ""
    else:
        path = Path(source)
        try:
            doc, where = tomllib.loads(path.read_text()), str(path)
        except FileNotFoundError:
            raise UserError(f"campaign file not found: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not a valid TOML text file: {exc}") from None
    slots = {"env": env, "policy": policy, "strategy": strategy, "search_reward": search_reward,
             "fitness_reward": fitness_reward}
    doc = _named(doc, parts, slots)
    return campaign_mod.build(doc, list(overrides), source=where)


def run(c: Campaign, store: str | Path, *, on_progress: Progress | None = None,
        stop: threading.Event | None = None) -> Outcome:
    """Run a new campaign into ``store`` (a new DuckDB file); ``stop.set()`` ends it after the items in flight."""
    from evoagent import launch

    return launch.start(c, str(store), on_progress=on_progress, stop=stop)


def resume(store: str | Path, overrides: Sequence[str] = (), *, parts: Sequence[Any] = (),
           on_progress: Progress | None = None, stop: threading.Event | None = None, **slots: Any) -> Outcome:
    """Continue the campaign stored in ``store`` from its journal.

    ``overrides`` may change budgets and concurrency only (what cannot change
    the results). Parts the campaign was built with as objects are given
    again, as ``parts`` or the same keywords as ``make_campaign``.
    """
    from evoagent import launch

    unknown = sorted(set(slots) - set(_SLOTS))
    if unknown:
        raise TypeError(f"resume() got unexpected keyword arguments {unknown}")
    register(list(parts) + [_as_part(_SLOTS[k][1], v) for k, v in slots.items()
                            if v is not None and not isinstance(v, str)])
    return launch.resume(str(store), list(overrides), on_progress=on_progress, stop=stop)


class Results:
    """Read-only views of a campaign's store, as Polars DataFrames or Arrow tables.

    Reads a published snapshot (``stores.SnapshotStore``), so it works while
    the campaign runs and never blocks its writer. The views are the CLI's
    (``trajectories``, ``steps``, ``population``, ``generations``, ``rewards``, ...).
    """

    def __init__(self, store: str | Path):
        from stores import SnapshotStore

        self._store = SnapshotStore(store)

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Any read-only SQL over the views, as a Polars DataFrame."""
        return self._store.frame(query, params)

    def arrow(self, query: str, params: Sequence[Any] | None = None) -> pa.Table:
        """The same as an Arrow table."""
        return self._store.query(query, params)

    def population(self, generation: int | None = None) -> pl.DataFrame:
        """The members of a committed round (default: the last), ranked per task."""
        if generation is None:
            generation = self._store.last_committed_generation()
        return self.sql("SELECT generation, task_id, traj_id, rank FROM population WHERE generation = ? "
                        "ORDER BY task_id, rank", [generation])

    def trajectories(self) -> pl.DataFrame:
        """Every committed trajectory (one row each; its steps are in the ``steps`` view)."""
        return self.sql("SELECT * FROM trajectories ORDER BY generation, task_id, traj_id")

    def generations(self) -> pl.DataFrame:
        """One row of statistics per committed round."""
        return self.sql("SELECT * FROM generations ORDER BY generation")

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def results(store: str | Path) -> Results:
    """Open a campaign's store for reading (see ``Results``); close it, or use ``with``."""
    return Results(store)
