"""Campaign files: TOML in, a validated frozen ``Campaign`` out, before any work.

Every key has a type, a default and a check. The engine's own keys are
``BASE`` below; every other key belongs to a part (``evoagent.registry``):
the environment ``env.kind`` names owns ``env.dialect`` and ``tasks.dbs``,
the strategy owns its population keys (evolution: ``mu``, ``lambda``,
``selection.*``, ``replacement.*``, ``budget.generations``), each policy,
operator, reward model and executor its own. A campaign holds the keys of
the parts it uses. A valid key of a part it does not use is dropped (a file
written for evolution runs with ``--set strategy.kind=ipr``; ``launch`` notes
the ``--set`` ones it ignores), except another environment's data keys, which
are refused. Unknown, misspelt, mistyped and out-of-range keys are all reported
together, one line each, naming where the value came from.
"""
from __future__ import annotations

import copy
import difflib
import json
import math
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoagent.errors import UserError
from evoagent import registry
from evoagent.registry import Key

AGGREGATES = ("last", "min", "mean")

REQUIRED = object()  # a default that must be replaced by the file or --set
_MISSING = object()


def upto(hi: float, lo: float = 1, *, open_low: bool = False) -> Any:
    """A range check: every number gets an upper bound, so no key can ask for unbounded work."""
    return lambda x: (lo < x if open_low else lo <= x) and x <= hi


SECONDS = 3600.0  # the longest wait any single timeout or poll may ask for
MAX_ITEMS_PER_GENERATION = 200_000  # tasks x items per task and round: planned, held and journaled at once

# The engine's own keys (the runner, budgets, the signals); every other key is a part's.
BASE: dict[str, Key] = {
    "name": Key(str, REQUIRED, bool, "a non-empty name"),
    "seed": Key(int, 0, lambda x: -(2**63) <= x < 2**63, "a 64-bit integer"),
    "concurrency": Key(int, 4, upto(1024), "within 1..1024"),
    "env.kind": Key(str, REQUIRED, bool, "an environment name"),
    "env.max_steps": Key(int, 10, upto(1000), "within 1..1000"),
    "tasks.ids": Key(list, [], lambda x: all(isinstance(d, str) for d in x), "a list of task ids"),
    "tasks.sample": Key(int, 0, upto(10**6, 0), "within 0..1000000 (0 = all)"),
    "policy.kind": Key(str, REQUIRED, bool, "a policy name"),
    "operators.llm": Key(bool, True),
    "strategy.kind": Key(str, registry.DEFAULTS["strategy"], bool, "a strategy name"),
    "search.reward": Key(str, "oracle", bool, "a reward model name"),
    "fitness.reward": Key(str, "env", bool, "env or a reward model name"),
    "fitness.aggregate": Key(str, "last", lambda x: x in AGGREGATES, f"one of {AGGREGATES}"),
    "rewards.batch_size": Key(int, 64, upto(100_000), "within 1..100000"),
    "rewards.batch_wait_ms": Key((int, float), 5.0, upto(SECONDS * 1000, 0), "within 0..3600000"),
    "executor.kind": Key(str, "thread", bool, "an executor name"),
    "budget.env_steps": Key(int, 0, upto(10**15, 0), "within 0..10^15 (0 = no limit)"),
    "budget.wall_time_s": Key((int, float), 0, upto(10**9, 0), "within 0..10^9 (0 = no limit)"),
    "budget.usd": Key((int, float), 0, upto(10**9, 0), "within 0..10^9 (0 = no limit)"),
    "budget.tokens": Key(int, 0, upto(10**15, 0), "within 0..10^15 (0 = no limit)"),
}
# The keys that name the parts a campaign uses, with the registry kind of each.
CHOICES = {"env.kind": "environment", "strategy.kind": "strategy", "search.reward": "reward",
           "fitness.reward": "reward", "executor.kind": "executor"}


@dataclass(frozen=True)
class Campaign:
    """A validated campaign: ``get("selection.kind")`` reads any key it holds.

    It holds the engine's keys and those of the parts it uses; ``get`` of any
    other key is a ``KeyError`` unless a default is given.
    """

    values: dict[str, Any]
    source: str = ""
    dropped: tuple[str, ...] = field(default=(), compare=False)  # --set keys of parts it does not use

    def get(self, path: str, default: Any = _MISSING) -> Any:
        if default is _MISSING:
            return self.values[path]
        return self.values.get(path, default)

    def settings_for(self, part: Any) -> registry.Settings:
        """What ``part`` reads: its own keys and the engine's (``BASE``), frozen (``registry.Settings``)."""
        return registry.Settings(part, self.values, BASE)

    def operator_rates(self) -> dict[str, float]:
        """Each registered operator's rate (0 for one registered after this campaign was built)."""
        from evoagent import registry

        return {op: float(self.values.get(f"operators.{op}.rate", 0.0)) for op in registry.names("operator")}

    def to_json(self) -> str:
        return json.dumps(self.values, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Campaign:
        """A stored campaign, validated again with today's parts (see ``load_stored``)."""
        return load_stored(text)


# -- which keys exist, and whose they are --------------------------------------------

@dataclass
class _Keys:
    """The keys a campaign may hold (``used``) and every key known, with its owner (for messages)."""

    used: dict[str, Key]
    known: dict[str, tuple[str, Key]]  # path -> ("kind name", key)
    prefixes: dict[str, str]  # "rewards.judge." -> "reward judge": keys of parts not imported
    broken: dict[str, str]  # "operators.x." -> the one-line error of a part that cannot load


def _policy_parts(env: Any) -> list[tuple[str, Any]]:
    from evoagent import registry
    from evoagent.registry import policy_names

    found = []
    for kind, name in policy_names(env).items():
        try:
            found.append((kind, registry.get("policy", name)))
        except KeyError:
            continue  # named by the environment, declared by nobody: policy_part() says so
    return found


def _part_keys(part: Any) -> dict[str, Key]:
    from evoagent.registry import part_keys

    return part_keys(part)


def _keys(chosen: dict[str, str], problems: list[tuple[str, str]]) -> _Keys:
    """The keys of the parts ``chosen`` names (``env.kind`` -> name, ...); problems appended."""
    from evoagent import registry

    used: dict[str, Key] = dict(BASE)
    known: dict[str, tuple[str, Key]] = {p: ("engine", k) for p, k in BASE.items()}
    prefixes: dict[str, str] = {}
    broken: dict[str, str] = {}

    def add(owner: str, part: Any, in_use: bool) -> None:
        for path, key in _part_keys(part).items():
            if in_use:
                used.setdefault(path, key)
                known[path] = (owner, key)
            else:
                known.setdefault(path, (owner, key))

    def get(kind: str, name: str, key: str) -> Any:
        try:
            return registry.get(kind, name)  # type: ignore[arg-type]
        except KeyError:
            have = registry.names(kind)  # type: ignore[arg-type]
            have = ["env", *[h for h in have if h != "env"]] if key == "fitness.reward" else [
                h for h in have if h != "env" or key != "search.reward"]
            problems.append((f"key {key!r}: unknown {kind} {name!r} (have {', '.join(have)})", key))
        except registry.PluginError as exc:
            problems.append((str(exc), key))
        return None

    env = get("environment", chosen["env.kind"], "env.kind")
    for name in registry.names("environment"):
        other = env if env is not None and name == env.name else _quiet("environment", name, broken)
        if other is not None:
            add(f"environment {name!r}", other, other is env)
    if env is not None:
        policy_kind = chosen.get("policy.kind")
        for kind, part in _policy_parts(env):
            add(f"policy {kind!r}", part, kind == policy_kind)
    for kind in ("strategy", "executor", "operator"):
        for name in registry.names(kind):  # type: ignore[arg-type]
            part = _quiet(kind, name, broken)
            if part is not None:
                add(f"{kind} {name!r}", part, kind == "operator" or chosen.get(CHOICES_BY_KIND[kind]) == name)
    rewards = {chosen["search.reward"], chosen["fitness.reward"]}
    for name in registry.names("reward"):
        if name in rewards:
            part = get("reward", name, "search.reward" if name == chosen["search.reward"] else "fitness.reward")
            if part is not None:
                add(f"reward {name!r}", part, True)
        else:  # not imported: its keys are known by their section only
            prefixes[f"rewards.{name}."] = f"reward {name!r}"
    for key in ("strategy.kind", "executor.kind"):
        if chosen[key] not in registry.names(CHOICES[key]):  # type: ignore[arg-type]
            get(CHOICES[key], chosen[key], key)
    for key in ("search.reward", "fitness.reward"):
        if chosen[key] not in registry.names("reward"):
            get("reward", chosen[key], key)
    return _Keys(used, known, prefixes, broken)


CHOICES_BY_KIND = {"strategy": "strategy.kind", "executor": "executor.kind"}


def _quiet(kind: str, name: str, broken: dict[str, str]) -> Any:
    """A part the campaign does not name, imported only for its keys. One that cannot load is left
    out (the built-ins keep working); a key given for it gets its one-line error (``broken``)."""
    from evoagent import registry

    try:
        return registry.get(kind, name)  # type: ignore[arg-type]
    except registry.PluginError as exc:
        broken[f"{registry.SECTION[kind]}.{name}."] = str(exc)
        return None


def spec() -> dict[str, tuple[Any, Any, Any, str]]:
    """Every key any built-in or installed part declares: path -> (types, default, check, meaning)."""
    from evoagent import registry

    out = {p: (k.types, k.default, k.check, k.meaning) for p, k in BASE.items()}
    for kind in registry.KINDS:
        for part in registry.parts(kind).values():  # type: ignore[arg-type]
            for path, k in _part_keys(part).items():
                out.setdefault(path, (k.types, k.default, k.check, k.meaning))
    return out


# -- reading a document ------------------------------------------------------------------

def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"env": {"kind": "x"}}`` -> ``{"env.kind": "x"}`` (no key's value is a table)."""
    out: dict[str, Any] = {}
    for key, val in doc.items():
        path = f"{prefix}{key}"
        if isinstance(val, dict):
            out.update(_flatten(val, path + "."))
        else:
            out[path] = val
    return out


def _sections(paths: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for p in paths:
        parts = p.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return out


def _check(path: str, val: Any, key: Key) -> str | None:
    """The problem with one value, or None."""
    allowed = key.types if isinstance(key.types, tuple) else (key.types,)
    ok_type = isinstance(val, allowed) and not (isinstance(val, bool) and bool not in allowed)
    if not ok_type:
        want = " or ".join(t.__name__ for t in allowed)
        return f"key {path!r}: expected {want}, got {type(val).__name__} {val!r}"
    if isinstance(val, float) and not math.isfinite(val):
        return f"key {path!r}: must be a finite number, got {val!r}"
    if key.check is not None and not key.check(val):
        return f"key {path!r}: must be {key.meaning}, got {val!r}"
    return None


def _home(source: str) -> Path:
    """The folder a campaign file's relative paths start from (stored campaigns hold absolute ones)."""
    p = Path(source)
    return p.resolve().parent if source and p.is_file() else Path.cwd()


def _resolve_path(key: str, value: str, base: Path) -> str:
    """An absolute path to an existing file, so the stored campaign resumes from anywhere."""
    if not value:
        return ""
    try:
        path = (base / Path(value).expanduser()).resolve()
        found = path.is_file()
    except (OSError, ValueError, RuntimeError):  # e.g. a NUL byte, an unknown ~user, a symlink loop
        raise UserError(f"key {key!r}: not a usable path {value!r}") from None
    if not found:
        if path.exists():  # /dev/zero, a FIFO, a folder: reading it would never end, or fail later
            raise UserError(f"key {key!r}: {str(path)!r} is not a regular file (a folder, device or FIFO); "
                            "give a file")
        raise UserError(f"key {key!r}: no such file {str(path)!r}")
    return str(path)


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` -> (path, value); value read as TOML, else kept as a string."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY.PATH=VALUE")
    path, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return path, value


class _Problems:
    """Every problem found, each prefixed with where its value came from; raised together."""

    def __init__(self, source: str, from_set: set[str]):
        self.source, self.from_set = source, from_set
        self.lines: list[str] = []

    def add(self, text: str, *paths: str) -> None:
        where = "--set" if self.from_set.intersection(paths) else self.source
        self.lines.append(f"{where}: {text}" if where else text)

    def raise_any(self) -> None:
        if self.lines:
            # one line each; the CLI prints the first after "error: ", so the others get it too
            raise UserError("\nerror: ".join(dict.fromkeys(self.lines)))


def build(doc: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), source: str = "",
          *, stored: bool = False) -> Campaign:
    """Validate a parsed document plus overrides into a Campaign: every problem reported at once.

    Each problem names where the wrong value came from: ``source`` (the campaign
    file) or ``--set``, so a typo on the command line is not blamed on the file.
    ``stored``: a campaign read back from a store (keys no part declares any more are dropped).
    """
    given = _flatten(doc)
    from_set: set[str] = set()
    bad_overrides = []
    for text in overrides:
        try:
            path, value = parse_override(text)
        except UserError as exc:
            bad_overrides.append(str(exc))
            continue
        given[path] = value
        from_set.add(path)
    problems = _Problems(source, from_set)
    for line in bad_overrides:
        problems.lines.append(f"--set: {line}")

    chosen = {}
    for path in (*CHOICES, "policy.kind"):
        val = given.get(path, BASE[path].default)
        if val is REQUIRED:
            if path == "env.kind":
                problems.add("missing key 'env.kind'")
                problems.raise_any()
            chosen[path] = ""
            continue
        issue = _check(path, val, BASE[path])
        if issue:
            problems.add(issue, path)
            problems.raise_any()
        chosen[path] = val
    part_problems: list[tuple[str, str]] = []
    keys = _keys(chosen, part_problems)
    for line, path in part_problems:
        problems.add(line, path)
    if not part_problems and chosen["policy.kind"]:
        from evoagent.registry import policy_part

        try:
            policy_part(Campaign(chosen))
        except UserError as exc:
            problems.add(str(exc), "policy.kind")
    if any(line.split(": ", 1)[-1].startswith(("key 'env.kind'", "missing")) for line in problems.lines):
        problems.raise_any()  # without the environment, its keys cannot be told from unknown ones

    values: dict[str, Any] = {p: k.default if k.default is REQUIRED else copy.deepcopy(k.default)
                              for p, k in keys.used.items()}
    dropped = []
    given_badly = set()
    sections = _sections(keys.used) | _sections(keys.known) | _sections(keys.prefixes) | _sections(keys.broken)
    for path, val in given.items():
        key = keys.used.get(path)
        if key is None:
            owner = keys.known.get(path)
            prefix_owner = next((o for pre, o in keys.prefixes.items() if path.startswith(pre)), None)
            if owner is None and prefix_owner is None:
                if (error := next((e for pre, e in keys.broken.items() if path.startswith(pre)), None)):
                    problems.add(error, path)
                    continue
                if stored:
                    continue  # a key of an older version, validated when the campaign started
                parts = path.split(".")  # name the first level nobody declares: [operators.mutate]
                head = next(".".join(parts[:i]) for i in range(1, len(parts) + 1)
                            if ".".join(parts[:i]) not in sections or i == len(parts))
                near = difflib.get_close_matches(head, [*keys.used, *sorted(sections)], n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                given_badly.update(near)  # a misspelt required key: not also "missing"
                problems.add(f"unknown key {head!r}{hint}", path)
                continue
            if owner is None and prefix_owner is not None:  # a model not in use: its key still gets checked
                from evoagent.registry import get, part_keys

                declared = part_keys(get("reward", path.split(".")[1])).get(path)
                if declared is None:
                    problems.add(f"unknown key {path!r} ({prefix_owner} declares no such key)", path)
                    continue
                owner = (prefix_owner, declared)
            who = owner[0] if owner else prefix_owner
            if owner is not None and (issue := _check(path, val, owner[1])):
                problems.add(issue, path)
            elif owner is not None and who.startswith("environment") and not stored and val != owner[1].default:
                problems.add(f"key {path!r} belongs to {who}, which this campaign does not use "
                             f"({_using(who, chosen)})", path)
            elif path in from_set:  # the file's keys of other parts are expected (a file for evolution
                dropped.append(path)  # run with --set strategy.kind=ipr); a --set one is worth a note
            continue
        if (issue := _check(path, val, key)) is not None:
            problems.add(issue, path)
            given_badly.add(path)
            continue
        values[path] = val
    for path, key in keys.used.items():
        if key.path and values[path]:
            try:
                values[path] = _resolve_path(path, values[path], Path.cwd() if path in from_set else _home(source))
            except UserError as exc:
                problems.add(str(exc), path)
    for path, val in values.items():
        if val is REQUIRED and path not in given_badly:
            problems.add(f"missing key {path!r}")
    if not problems.lines:
        _check_parts(values, problems)
    problems.raise_any()
    return Campaign(values, source=source, dropped=tuple(dropped))


def _using(owner: str, chosen: dict[str, str]) -> str:
    kind = owner.split(" ", 1)[0]
    key = {"environment": "env.kind", "policy": "policy.kind", "strategy": "strategy.kind",
           "executor": "executor.kind", "reward": "search.reward"}.get(kind, "")
    if kind == "reward":
        return f"search.reward = {chosen['search.reward']!r}, fitness.reward = {chosen['fitness.reward']!r}"
    return f"{key} = {chosen.get(key, '')!r}" if key else "not used"


def _check_parts(values: dict[str, Any], problems: _Problems) -> None:
    """Checks across keys: the policy fits the environment; each part's own campaign check."""
    from evoagent import registry

    if problems.lines:
        return  # the policy or a part named is unusable: its checks would only repeat that
    if registry.get("reward", values["search.reward"]).fn is None:
        problems.add(f"key 'search.reward': {values['search.reward']!r} is the outcome of whole trajectories, "
                     "not a model that scores steps", "search.reward")
    # A strategy's own checks: ``check_campaign(values) -> (key, problem) | None`` on its class.
    strategy = registry.get("strategy", values["strategy.kind"])
    problem = getattr(strategy.fn, "check_campaign", lambda v: None)(values)
    if problem is not None:
        problems.add(f"key {problem[0]!r}: {problem[1]}", problem[0])
    # an operator without a rate key (e.g. mcts, planned only by its strategy) is never drawn by rate
    rates = [p for p in values if p.startswith("operators.") and p.endswith(".rate")]
    if sum(float(values[r]) for r in rates) <= 0:
        problems.add("key 'operators': at least one operator needs a rate > 0", *rates)
    executor = registry.get("executor", values["executor.kind"])
    if executor.preflight is not None:  # cheap checks of the executor (installed, fits the policy)
        try:
            executor.preflight(Campaign(values))
        except UserError as exc:
            problems.add(str(exc), "executor.kind", "policy.kind")


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Campaign:
    """Read and validate a campaign file."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"campaign file not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{p}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a text file") from None
    return build(doc, overrides, source=str(p))


# Keys that may change on resume: they change how the work runs, never its results.
RESUMABLE = ("budget.", "concurrency", "policy.base_url", "policy.batch", "policy.max_in_flight",
             "policy.processes", "policy.tokens_per_minute", "policy.max_attempts", "policy.retry_base_s",
             "policy.timeout_s", "rewards.batch_size", "rewards.batch_wait_ms", "rewards.mc.threads",
             "rewards.http.timeout_s", "rewards.http.max_attempts", "rewards.http.retry_base_s",
             "rewards.http.max_batch", "executor.")


def load_stored(text: str, overrides: list[str] | tuple[str, ...] = ()) -> Campaign:
    """The campaign a store holds (its JSON), validated again; ``overrides`` only of ``RESUMABLE`` keys.

    The one way a stored campaign is read back: resume, rm labels, exports and Ray workers.
    Keys added since it was stored take their defaults; keys no part declares any more are dropped.
    """
    stored = json.loads(text)
    for o in overrides:
        path, _ = parse_override(o)
        if not path.startswith(RESUMABLE):
            raise UserError(f"--set {path}: on resume only these can change: "
                            f"{', '.join(k + '*' if k.endswith('.') else k for k in RESUMABLE)}")
    doc: dict[str, Any] = {}
    for path, value in stored.items():
        if path == "policy.batch" and value == "auto":  # gone: batching was keyed on the terminal
            value = False
        node = doc
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                break
        else:
            node[leaf] = value
    return build(doc, list(overrides), source="store", stored=True)
