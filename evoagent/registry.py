"""One registry of the parts a campaign names, loaded lazily.

A part is declared once, beside its code, as a module attribute (a ``Part``,
or a kind's own declaration such as ``evoagent.envs.base.Environment``). The
registry knows parts by ``"<kind>.<name>" -> "module:attr"``: the built-in
table below, plus the entry points of the group ``evoagent.parts`` that
installed packages declare (entry name ``"<kind>.<name>"``, value
``"module:attr"``). Nothing is imported until a part is first asked for, so
``import evoagent`` loads no part's dependencies. A part from a package that
fails to import, or a name two declarations claim, is one ``PluginError``
line naming the package and the part; the other parts keep working.
``register`` adds a part object directly (a script's or a test's own).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from evoagent.errors import UserError

Kind = Literal["environment", "policy", "operator", "strategy", "reward", "executor"]
KINDS: tuple[str, ...] = ("environment", "policy", "operator", "strategy", "reward", "executor")
SECTION: dict[str, str] = {"operator": "operators", "strategy": "strategy", "reward": "rewards",
                           "executor": "executor", "policy": "policy", "environment": "env"}
GROUP = "evoagent.parts"  # the entry-point group installed packages declare their parts in
BUILTIN = "built-in"

# The parts shipped with evoagent, in declaration order (the order evolution draws operators by
# rate from: keep sample, revise, recombine, refine first or every seeded campaign changes).
BUILTINS: dict[str, str] = {
    "environment.intercode_sql": "evoagent.envs.intercode_sql:ENVIRONMENT",
    "environment.game24": "evoagent.envs.game24:ENVIRONMENT",
    "environment.code": "evoagent.envs.code.parts:ENVIRONMENT",
    "policy.intercode_sql.replay": "evoagent.envs.intercode_sql:REPLAY",
    "policy.intercode_sql.anthropic": "evoagent.envs.intercode_sql:ANTHROPIC",
    "policy.intercode_sql.openai": "evoagent.envs.intercode_sql:OPENAI",
    "policy.intercode_sql.replay_recorder_stops": "evoagent.envs.intercode_sql:REPLAY_RECORDER_STOPS",
    "policy.game24.replay": "evoagent.envs.game24:REPLAY",
    "policy.game24.enumerate": "evoagent.envs.game24:ENUMERATE",
    "policy.game24.anthropic": "evoagent.envs.game24:ANTHROPIC",
    "policy.game24.openai": "evoagent.envs.game24:OPENAI",
    "policy.code.replay": "evoagent.envs.code.parts:REPLAY",
    "policy.code.anthropic": "evoagent.envs.code.parts:ANTHROPIC",
    "policy.code.openai": "evoagent.envs.code.parts:OPENAI",
    "operator.sample": "operators.sample:PART",
    "operator.revise": "operators.revise:PART",
    "operator.recombine": "operators.recombine:PART",
    "operator.refine": "operators.refine:PART",
    "operator.mcts": "evoagent.strategies.mcts_pass:PART",
    "operator.rro": "operators.rro:PART",
    "operator.ipr": "operators.ipr:PART",
    "operator.edit": "evoagent.envs.intercode_sql.edit_operator:PART",
    "strategy.evolution": "evoagent.strategies.evolution:PART",
    "strategy.mcts": "evoagent.strategies.mcts:PART",
    "strategy.rro": "evoagent.strategies.per_task:RRO_PART",
    "strategy.ipr": "evoagent.strategies.per_task:IPR_PART",
    "strategy.best_of_n": "evoagent.strategies.per_task:BEST_OF_N_PART",
    "reward.env": "evoagent.rewards.outcome:PART",
    "reward.judge": "evoagent.rewards.judge:PART",
    "reward.mc": "evoagent.rewards.mc:PART",
    "reward.oracle": "evoagent.rewards.oracle:PART",
    "reward.http": "evoagent.rewards.http:PART",
    "reward.prm": "evoagent.rewards.prm:PART",
    "reward.recorded": "evoagent.envs.game24.values:RECORDED",
    "reward.solvable": "evoagent.envs.game24.values:SOLVABLE",
    "reward.state_value": "evoagent.envs.game24.values:STATE_VALUE",
    "reward.visible": "evoagent.envs.code.parts:VISIBLE",
    "executor.thread": "evoagent.executors:THREAD",
    "executor.ray": "evoagent.executors:RAY",
}

# Which built-in part a campaign gets where it names none (a declaration, like the table above).
DEFAULTS: dict[str, str] = {"strategy": "evolution"}


class PluginError(UserError):
    """A part that cannot be used: its package fails to import it, or two declarations claim its name."""


@dataclass(frozen=True)
class Key:
    """One campaign key: its type(s), default, check and what the check means."""

    types: type | tuple[type, ...]
    default: Any
    check: Callable[[Any], bool] | None = None
    meaning: str = ""
    path: bool = False  # a file: resolved against the campaign file's folder, hashed for resume


def rate(default: float) -> Key:
    """The ``operators.<name>.rate`` key every operator has (bounded, like every numeric key)."""
    return Key((int, float), default, lambda x: 0 <= x <= 10**6, "within 0..1000000")


@dataclass(frozen=True)
class Part:
    """A named operator, strategy, reward model or executor.

    ``fn`` is the operator function (``arity`` 0: ``fn(task, rng, ctx)``; 1:
    ``fn(parent, rng, ctx)``; None: ``fn(parents, rng, ctx)`` with two or more
    parents), the strategy class, the reward-model factory or the executor
    factory. ``keys`` are its campaign keys, relative to its section
    (``operators.<name>.``, ``rewards.<name>.``, ``strategy.<name>.``), or
    full paths where they contain a dot (a strategy owning ``mu``, ``selection.kind``: see ``path``).
    ``fallback``: the operator a strategy uses instead when a population has
    too few distinct members for this one. ``uses_gold`` (reward models):
    whether its values come from the gold answers of the tasks being searched;
    then no prompt may show them.
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
    # Keys this part owns at full paths (e.g. evolution's ``mu``, ``selection.kind``).
    shared_keys: dict[str, Key] = field(default_factory=dict)
    # Strategies: the methods ``evoagent bench search`` runs with it (``BenchMethod``).
    bench: tuple[Any, ...] = ()
    # Executors: the address of the Ray session its work runs in, from its own keys (its
    # ``Settings``). The engine hands it to reward models placed on Ray (a factory's
    # ``ray_address`` parameter), so they join that session; None: they start a local one.
    ray_address: Callable[[Any], str] | None = None

    def path(self, key: str) -> str:
        """The full campaign path of one of this part's keys."""
        if key in self.shared_keys:
            return key
        if self.kind == "strategy":
            return f"strategy.{self.name}.{key}"
        return f"{SECTION[self.kind]}.{self.name}.{key}"

    def all_keys(self) -> dict[str, Key]:
        """Every key this part owns, by full path."""
        return {**{self.path(k): v for k, v in self.keys.items()}, **self.shared_keys}


# -- what ``evoagent bench search`` asks of parts (evoagent/bench/) ---------------------------------

@dataclass(frozen=True)
class BenchBudget:
    """One cell's budget: ``budget`` environment executions per task (acting plus scoring),
    ``per_rollout`` the executions one rollout costs with its scoring, over ``n_tasks`` tasks."""

    budget: int
    per_rollout: float
    n_tasks: int


@dataclass(frozen=True)
class BenchMethod:
    """A row of ``evoagent bench search``, declared by the strategy that runs it (``Part.bench``).

    ``settings(b)``: the campaign keys that make the strategy spend about ``b.budget`` per task.
    ``scored``: False for a method that no reward model steers (one row, reward ``-``).
    ``reference``: the 8-rollout cell run first (measures a rollout, tells trivial tasks apart).
    ``random_pick``: also report a uniformly random member of the same cell's population.
    ``against``: methods its row is compared with, at the same reward model (paired differences).
    ``order``: where it runs in a default run (cheap methods first).
    """

    name: str
    settings: Callable[[BenchBudget], list[str]]
    scored: bool = True
    reference: bool = False
    random_pick: bool = False
    against: tuple[str, ...] = ()
    order: int = 50
    doc: str = ""


@dataclass(frozen=True)
class BenchSetup:
    """What ``evoagent bench search`` needs of an environment (``Environment.bench``).

    ``campaign_file``: the campaign every cell starts from (relative to the repository root).
    ``task_sets``: name -> campaign keys choosing the benchmark's tasks; the first is the default.
    ``settings``: campaign keys every cell gets (e.g. the policy the benchmark is defined with).
    ``rewards``: the reward models a default run compares (registry names).
    ``rollout_length(c)``: expected executions of one rollout (before the reference cell measures it).
    """

    campaign_file: str
    task_sets: Mapping[str, tuple[str, ...]]
    rewards: tuple[str, ...]
    settings: tuple[str, ...] = ()
    rollout_length: Callable[[Any], float] | None = None
    doc: str = ""


# -- the table -------------------------------------------------------------------

@dataclass
class _Entry:
    target: str  # "module:attr"; "" for a part registered as an object
    origin: str  # BUILTIN or the installing package's name
    part: Any = None
    error: str = ""


_TABLE: dict[str, _Entry] = {}
_DISCOVERED = False


def _problem(entry: _Entry, key: str, text: str) -> str:
    return f"plug-in package {entry.origin!r}: part {key!r}: {text}"


def _discover() -> None:
    """Fill the table: built-ins, then installed packages' entry points (nothing imported)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for key, target in BUILTINS.items():
        _TABLE.setdefault(key, _Entry(target, BUILTIN))
    from importlib.metadata import distributions

    seen: set[tuple[str, str]] = set()
    for dist in distributions():  # entry_points.txt of each; METADATA only of the declaring ones
        mine = [ep for ep in dist.entry_points if ep.group == GROUP]
        if not mine:
            continue
        origin = dist.name or "?"
        if origin.lower().replace("_", "-") == "evoagent":
            continue  # our own distribution declares nothing here: built-ins are the table above
        for ep in mine:
            if (origin, ep.name) not in seen:  # one dist-info found twice on the path is one declaration
                seen.add((origin, ep.name))
                _add_declared(ep.name, ep.value, origin)


def _add_declared(key: str, target: str, origin: str) -> None:
    entry = _Entry(target, origin)
    kind = key.split(".", 1)[0]
    if kind not in KINDS or "." not in key or ":" not in target:
        entry.error = _problem(entry, key, f"not a part declaration ({key!r} = {target!r}: "
                               f"want '<kind>.<name>' = 'module:attr', kind one of {', '.join(KINDS)})")
        _TABLE.setdefault(f"!{origin}:{key}", entry)
        return
    old = _TABLE.get(key)
    if old is not None:
        other = "a built-in part" if old.origin == BUILTIN else f"package {old.origin!r}"
        old.error = old.error or _problem(entry, key, f"the name is already declared by {other}")
        return
    _TABLE[key] = entry


def _load(key: str, entry: _Entry) -> Any:
    if entry.error:
        raise PluginError(entry.error)
    if entry.part is None:
        module, _, attr = entry.target.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for name in attr.split("."):
                obj = getattr(obj, name)
        except Exception as exc:  # any failure of someone else's module is one line, not a traceback
            if entry.origin == BUILTIN:
                raise
            entry.error = _problem(entry, key, f"cannot load {entry.target}: {type(exc).__name__}: {exc}")
            raise PluginError(entry.error) from None
        kind, name = key.split(".", 1)
        if getattr(obj, "kind", None) != kind or getattr(obj, "name", None) != name:
            entry.error = _problem(entry, key, f"{entry.target} is not a {kind} part named {name!r} "
                                   f"(found kind {getattr(obj, 'kind', None)!r}, name {getattr(obj, 'name', None)!r})")
            raise PluginError(entry.error)
        entry.part = obj
    return entry.part


def rediscover() -> None:
    """Read the installed packages' declarations again (after installing one into a running process)."""
    global _DISCOVERED
    kept = {k: e for k, e in _TABLE.items() if e.target == ""}  # parts registered as objects
    _TABLE.clear()
    _DISCOVERED = False
    _discover()
    for key, entry in kept.items():
        _TABLE.setdefault(key, entry)


def names(kind: Kind) -> list[str]:
    """Every declared part name of one kind, in declaration order, without importing any."""
    _discover()
    prefix = f"{kind}."
    return [k[len(prefix):] for k in _TABLE if k.startswith(prefix)]


def get(kind: Kind, name: str) -> Any:
    """One part, imported on first use; ``KeyError`` if none is declared, ``PluginError`` if unusable."""
    _discover()
    entry = _TABLE.get(f"{kind}.{name}")
    if entry is None:
        raise KeyError(f"unknown {kind} {name!r}")
    return _load(f"{kind}.{name}", entry)


def parts(kind: Kind) -> dict[str, Any]:
    """Every declared part of one kind, by name, in declaration order (imports them all)."""
    return {name: get(kind, name) for name in names(kind)}


def origin(kind: Kind, name: str) -> str:
    """Where a part comes from: ``built-in``, the installing package's name, or ``registered``."""
    _discover()
    return _TABLE[f"{kind}.{name}"].origin


def problems() -> list[str]:
    """One line per declared part that cannot be used (a bad declaration, a clash, a failed import)."""
    _discover()
    found = []
    for key, entry in list(_TABLE.items()):
        if key.startswith("!"):
            found.append(entry.error)
            continue
        try:
            _load(key, entry)
        except PluginError as exc:
            found.append(str(exc))
    return found


def register(part: Any) -> Any:
    """Declare a part object directly; the same name with a different part is an error."""
    _discover()
    key = f"{part.kind}.{part.name}"
    old = _TABLE.get(key)
    if old is not None and old.part is None and not old.error:
        try:
            _load(key, old)
        except PluginError:
            pass
    if old is not None and old.part is not None and old.part is not part and not _same(old.part, part):
        raise ValueError(f"{part.kind} {part.name!r} is already registered")
    if old is None or old.part is None:
        _TABLE[key] = _Entry("", "registered", part)
    return part


def _same(a: Any, b: Any) -> bool:
    return getattr(a, "fn", a) is getattr(b, "fn", b)


def unregister(kind: Kind, name: str) -> None:
    """Remove a part registered with ``register`` (tests that register examples clean up with this)."""
    entry = _TABLE.get(f"{kind}.{name}")
    if entry is not None and entry.target == "":
        del _TABLE[f"{kind}.{name}"]


def registered() -> list[Any]:
    """The parts registered as objects (not importable by name elsewhere, e.g. on a Ray worker)."""
    return [e.part for e in _TABLE.values() if e.target == "" and e.part is not None]


def campaign_keys(kinds: tuple[str, ...] = ("operator", "strategy", "reward")) -> Iterator[tuple[str, Key]]:
    """Every key of every part of ``kinds``, as (full path, key) (imports those parts)."""
    for kind in kinds:
        for part in parts(kind).values():  # type: ignore[arg-type]
            yield from part_keys(part).items()


def part_keys(part: Any) -> dict[str, Key]:
    """A part's keys by full path (``Part.all_keys``; other declarations give full paths already)."""
    return part.all_keys() if hasattr(part, "all_keys") else dict(part.keys)


class Settings(Mapping[str, Any]):
    """One part's view of a validated campaign: its own keys, frozen, and nothing else it did not declare.

    A part reads its section keys by the names it declared them under (``s["k"]`` for
    ``operators.ipr.k``; the full path works too), its shared keys (evolution's ``mu``) and the
    engine's own keys (``campaign.BASE``: ``seed``, ``env.max_steps``, ...) by full path. Any
    other key is a ``KeyError`` naming the part: a part reads only what it declares. Iterating
    gives its own keys (as declared), not the engine's. ``types`` holds each own key's declared
    type(s); every value was checked against its ``Key`` when the campaign was built.
    """

    def __init__(self, part: Any, values: Mapping[str, Any], engine: Iterable[str] = ()):
        own = dict(getattr(part, "keys", {}))
        shared = dict(getattr(part, "shared_keys", {}))
        self.owner = f"{part.kind} {part.name!r}"
        names = {name: part.path(name) for name in own} | {path: path for path in shared}
        self._own = tuple(names)
        self._paths = {**names, **{path: path for path in names.values()}, **{path: path for path in engine}}
        self._values = {name: values[path] for name, path in self._paths.items() if path in values}
        self.types = {name: key.types for name, key in {**own, **shared}.items()}

    def __getitem__(self, name: str) -> Any:
        if name not in self._paths:
            raise KeyError(f"{self.owner} reads key {name!r}, which it does not declare")
        return self._values[name]

    def get(self, name: str, default: Any = None) -> Any:
        if name not in self._paths:
            raise KeyError(f"{self.owner} reads key {name!r}, which it does not declare")
        return self._values.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._own if name in self._values)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Settings({self.owner}: {dict(self)!r})"


def settings_of(c: Any, part: Any) -> Any:
    """What ``part`` is given of ``c``: a campaign's ``Settings`` for it (``Campaign.settings_for``);
    any other settings object (a script's, anything with ``get(path)``) as it is."""
    own = getattr(c, "settings_for", None)
    return c if own is None else own(part)


# -- resolving what a campaign names (settings: anything with get(path)) ----------------------------

def environment(c: Any) -> Any:
    """The environment part a campaign (or any ``get``-able settings) names in ``env.kind``."""
    name = c.get("env.kind")
    try:
        return get("environment", name)
    except KeyError:
        raise UserError(f"key 'env.kind': unknown environment {name!r} "
                        f"(have {', '.join(names('environment'))})") from None


def policy_names(env: Any) -> dict[str, str]:
    """``policy.kind`` name -> registry name of each policy that plays ``env`` (its own first)."""
    declared = set(names("policy"))
    return {name: own if own in declared else name
            for name in env.policies for own in (f"{env.name}.{name}",)}


def policy_part(c: Any) -> Any:
    """The policy part ``policy.kind`` names for the campaign's environment."""
    env = environment(c)
    kind = c.get("policy.kind")
    found = policy_names(env).get(kind) or _fitting(env, kind)
    if found is None:
        raise UserError(f"key 'policy.kind': {kind!r} does not play env.kind = {env.name!r} "
                        f"(have {', '.join(env.policies)})")
    try:
        return get("policy", found)
    except KeyError:
        raise UserError(f"key 'policy.kind': {env.name!r} lists policy {kind!r}, but no policy part "
                        f"{found!r} is declared") from None


def _fitting(env: Any, kind: str) -> str | None:
    """A policy part ``env`` does not list that says it plays ``env`` or any environment (empty
    ``envs``): a plug-in's, or an object given to the Python API (``evoagent.make_campaign(policy=...)``)."""
    declared = names("policy")
    for name in (f"{env.name}.{kind}", kind):
        if name in declared:
            envs = getattr(get("policy", name), "envs", ())
            if not envs or env.name in envs:
                return name
    return None
