"""Campaign files: TOML in, a validated frozen ``Campaign`` out, before any work.

Every key has a type, a default and a check (``spec()``: the base keys below
plus those each registered operator, strategy and reward model declares in
``evoagent.registry``); an unknown, misspelt,
mistyped or out-of-range key fails with one line that names it. ``--set
a.b=value`` overrides any key (the value is read as TOML, else as a string).
"""
from __future__ import annotations

import contextlib
import copy
import difflib
import json
import math
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoagent.errors import UserError

HARDNESS = ("easy", "medium", "hard", "extra")
SELECTIONS = ("tournament", "best", "nsga2")
REPLACEMENTS = ("plus", "comma")
OBJECTIVES = ("reward", "steps", "cost")
AGGREGATES = ("last", "min", "mean")
EXECUTORS = ("thread", "ray")


REQUIRED = object()  # a default that must be replaced by the file or --set


def _upto(hi: float, lo: float = 1, *, open_low: bool = False) -> Any:
    """A range check: every number gets an upper bound, so no key can ask for unbounded work."""
    return lambda x: (lo < x if open_low else lo <= x) and x <= hi


SECONDS = 3600.0  # the longest wait any single timeout or poll may ask for
MAX_ITEMS_PER_GENERATION = 200_000  # tasks x max(mu, lambda): planned, held and journaled at once


# path -> (type(s), default, check or None, what the check means); the keys of
# operators, strategies and reward models come from evoagent.registry (see spec()).
BASE: dict[str, tuple[Any, Any, Any, str]] = {
    "name": (str, REQUIRED, bool, "a non-empty name"),
    "seed": (int, 0, lambda x: -(2**63) <= x < 2**63, "a 64-bit integer"),
    "mu": (int, REQUIRED, _upto(10_000), "within 1..10000"),
    "lambda": (int, REQUIRED, _upto(10_000), "within 1..10000"),
    "concurrency": (int, 4, _upto(1024), "within 1..1024"),
    "env.kind": (str, REQUIRED, None, ""),
    "env.dialect": (str, "mysql", lambda x: x in ("mysql", "duckdb"), "mysql or duckdb"),
    "env.timeout_s": ((int, float), 5.0, _upto(SECONDS, 0, open_low=True), "> 0 and <= 3600"),
    "env.max_steps": (int, 10, _upto(1000), "within 1..1000"),
    "env.tasks": (str, "", None, ""),  # PATH_KEYS: an InterCode task file ("" = the bundled tasks)
    "env.dump": (str, "", None, ""),  # a MySQL dump of the tasks' databases ("" = the bundled one)
    "tasks.hardness": (list, [], lambda x: all(h in HARDNESS for h in x), f"a list of {HARDNESS}"),
    "tasks.dbs": (list, [], lambda x: all(isinstance(d, str) for d in x), "a list of names"),
    "tasks.ids": (list, [], lambda x: all(isinstance(d, str) for d in x), "a list of task ids"),
    "tasks.sample": (int, 0, _upto(10**6, 0), "within 0..1000000 (0 = all)"),
    "tasks.ranks": (list, [], lambda x: x == [] or (len(x) == 2 and all(type(r) is int for r in x)
                                                    and 1 <= x[0] <= x[1] <= 10**6),
                    "[first, last], an inclusive range of puzzle ranks (game24)"),
    "policy.kind": (str, REQUIRED, None, ""),
    "policy.sources": (list, [], lambda x: all(isinstance(d, str) for d in x), "a list of names"),
    "policy.explore": ((int, float), 0.1, lambda x: 0 <= x <= 1, "within [0, 1]"),
    # replay: its own stopping rule, SQL edits (evoagent/policies/replay.py)
    "policy.submit_p": ((int, float), 0.3, lambda x: 0 <= x <= 1, "within [0, 1]"),
    "policy.distractors": ((int, float), 0.0, lambda x: 0 <= x < 1, "within [0, 1)"),
    "policy.edit_p": ((int, float), 0.0, lambda x: 0 <= x <= 1, "within [0, 1]"),
    "policy.model": (str, "claude-haiku-4-5", bool, "a model name"),
    "policy.base_url": (str, "", None, ""),
    "policy.max_tokens": (int, 512, _upto(200_000), "within 1..200000"),
    "policy.temperature": ((int, float), 1.0, lambda x: 0 <= x <= 2, "within [0, 2]"),
    "policy.batch": ((bool, str), False, lambda x: isinstance(x, bool),
                     'true or false ("auto" is gone: batching is never switched on implicitly)'),
    "policy.batch_idle_s": ((int, float), 0.25, _upto(SECONDS, 0, open_low=True), "> 0 and <= 3600"),
    "policy.batch_poll_s": ((int, float), 5.0, _upto(SECONDS, 0, open_low=True), "> 0 and <= 3600"),
    "policy.max_in_flight": (int, 32, _upto(10_000), "within 1..10000"),
    "policy.processes": ((int, str), "auto", lambda x: x == "auto" or (isinstance(x, int) and 0 <= x <= 32),
                         '"auto" or 0..32 (0 = send from the campaign process)'),
    "policy.tokens_per_minute": (int, 0, _upto(10**12, 0), "within 0..10^12 (0 = no limit)"),
    "policy.max_attempts": (int, 6, _upto(100), "within 1..100"),
    "policy.retry_base_s": ((int, float), 0.5, _upto(600, 0), "within 0..600"),
    "policy.timeout_s": ((int, float), 60.0, _upto(SECONDS, 0, open_low=True), "> 0 and <= 3600"),
    "policy.observation_chars": (int, 2000, _upto(10**6), "within 1..1000000"),
    "operators.llm": (bool, True, None, ""),
    "strategy.kind": (str, "evolution", bool, "a strategy name"),
    "search.reward": (str, "oracle", bool, "a reward model name"),
    "fitness.reward": (str, "env", bool, "env or a reward model name"),
    "fitness.aggregate": (str, "last", lambda x: x in AGGREGATES, f"one of {AGGREGATES}"),
    "rewards.batch_size": (int, 64, _upto(100_000), "within 1..100000"),
    "rewards.batch_wait_ms": ((int, float), 5.0, _upto(SECONDS * 1000, 0), "within 0..3600000"),
    "selection.kind": (str, "tournament", lambda x: x in SELECTIONS, f"one of {SELECTIONS}"),
    "selection.tournsize": (int, 3, _upto(1000, 2), "within 2..1000"),
    "selection.objectives": (list, ["reward", "steps"],
                             lambda x: bool(x) and all(o in OBJECTIVES for o in x),
                             f"a non-empty list of {OBJECTIVES}"),
    "replacement.kind": (str, "plus", lambda x: x in REPLACEMENTS, f"one of {REPLACEMENTS}"),
    "replacement.elitism": (int, 1, _upto(10_000, 0), "within 0..mu"),
    "replacement.fill": (bool, True, None, ""),
    # Where work items run (evoagent/executors): threads here, or Ray actors (pip install -e '.[ray]').
    "executor.kind": (str, "thread", lambda x: x in EXECUTORS, f"one of {EXECUTORS}"),
    "executor.address": (str, "local", lambda x: x in ("local", "auto") or (x.startswith("ray://") and len(x) <= 300),
                         '"local" (a Ray instance on this machine), "auto" or ray://host:port'),
    "executor.actors": (int, 0, _upto(1024, 0), "within 0..1024 (0 = concurrency, at most the cluster's CPUs)"),
    "executor.num_cpus": ((int, float), 1, lambda x: 0 <= x <= 1024, "within 0..1024 (per actor)"),
    "executor.num_gpus": ((int, float), 0, lambda x: 0 <= x <= 64, "within 0..64 (per actor)"),
    "executor.max_retries": (int, 3, _upto(100, 0), "within 0..100 (tries of an item whose actor died)"),
    "budget.generations": (int, REQUIRED, _upto(100_000, 0), "within 0..100000"),
    "budget.env_steps": (int, 0, _upto(10**15, 0), "within 0..10^15 (0 = no limit)"),
    "budget.wall_time_s": ((int, float), 0, _upto(10**9, 0), "within 0..10^9 (0 = no limit)"),
    "budget.usd": ((int, float), 0, _upto(10**9, 0), "within 0..10^9 (0 = no limit)"),
    "budget.tokens": (int, 0, _upto(10**15, 0), "within 0..10^15 (0 = no limit)"),
}


def spec() -> dict[str, tuple[Any, Any, Any, str]]:
    """Every valid key: the base keys plus each registered part's own."""
    from evoagent import registry

    out = dict(BASE)
    for path, key in registry.campaign_keys():
        out[path] = (key.types, key.default, key.check, key.meaning)
    return out


def _sections(paths: dict[str, Any]) -> set[str]:
    return {p.rsplit(".", 1)[0] for p in paths if "." in p} | {
        p.rsplit(".", 2)[0] for p in paths if p.count(".") == 2
    }


@dataclass(frozen=True)
class Campaign:
    """A validated campaign: ``get("selection.kind")`` reads any key."""

    values: dict[str, Any]
    source: str = ""

    def get(self, path: str) -> Any:
        return self.values[path]

    def operator_rates(self) -> dict[str, float]:
        """Each registered operator's rate (0 for one registered after this campaign was built)."""
        from evoagent import registry

        return {op: float(self.values.get(f"operators.{op}.rate", 0.0)) for op in registry.parts("operator")}

    def to_json(self) -> str:
        return json.dumps(self.values, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Campaign:
        return cls(json.loads(text), source="store")


def _flatten(doc: dict[str, Any], keys: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    sections = _sections(keys)
    for key, val in doc.items():
        path = f"{prefix}{key}"
        if isinstance(val, dict) and (path in sections or path not in keys):
            if path not in sections:
                _unknown(path, keys)
            out.update(_flatten(val, keys, path + "."))
        else:
            out[path] = val
    return out


def _unknown(path: str, keys: dict[str, Any]) -> None:
    near = difflib.get_close_matches(path, list(keys) + sorted(_sections(keys)), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise UserError(f"unknown key {path!r}{hint}")


def _check(path: str, val: Any, keys: dict[str, Any]) -> Any:
    if path not in keys:
        _unknown(path, keys)
    types, _, check, meaning = keys[path]
    allowed = types if isinstance(types, tuple) else (types,)
    ok_type = isinstance(val, allowed) and not (isinstance(val, bool) and bool not in allowed)
    if not ok_type:
        want = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise UserError(f"key {path!r}: expected {want}, got {type(val).__name__} {val!r}")
    if isinstance(val, float) and not math.isfinite(val):
        raise UserError(f"key {path!r}: must be a finite number, got {val!r}")
    if check is not None and not check(val):
        raise UserError(f"key {path!r}: must be {meaning}, got {val!r}")
    return val


PATH_KEYS = ("env.tasks", "env.dump")  # relative to the campaign file's folder (to the cwd for --set)


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


def build(doc: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), source: str = "") -> Campaign:
    """Validate a parsed document plus overrides into a Campaign (all checks first).

    Each error names where the wrong value came from: ``source`` (the campaign
    file) or ``--set``, so a typo on the command line is not blamed on the file.
    """
    keys = spec()
    values = {p: k[1] if k[1] is REQUIRED else copy.deepcopy(k[1]) for p, k in keys.items()}
    from_set: set[str] = set()

    def blame(*paths: str) -> str:
        return "--set" if from_set.intersection(paths) else source

    with _blamed(source):
        given = _flatten(doc, keys)
    for text in overrides:
        with _blamed("--set"):
            path, value = parse_override(text)
        given[path] = value
        from_set.add(path)
    for path, val in given.items():
        with _blamed(blame(path)):
            values[path] = _check(path, val, keys)
    for key in PATH_KEYS:
        with _blamed(blame(key)):
            values[key] = _resolve_path(key, values[key], Path.cwd() if key in from_set else _home(source))
    if values["strategy.kind"] != "evolution":  # population sizes and generations: only evolution reads them
        for key, default in (("mu", 1), ("lambda", 1), ("budget.generations", 0)):
            values[key] = default if values[key] is REQUIRED else values[key]
    missing = [p for p, v in values.items() if v is REQUIRED]
    with _blamed(source):
        if missing:
            raise UserError(f"missing key {missing[0]!r}")
    from evoagent.envs import ENVIRONMENTS
    from evoagent.policies import POLICIES

    with _blamed(blame("env.kind")):
        if values["env.kind"] not in ENVIRONMENTS:
            raise UserError(f"key 'env.kind': unknown environment {values['env.kind']!r} "
                            f"(have {', '.join(ENVIRONMENTS)})")
    with _blamed(blame("policy.kind")):
        if values["policy.kind"] not in POLICIES:
            raise UserError(f"key 'policy.kind': unknown policy {values['policy.kind']!r} "
                            f"(have {', '.join(POLICIES)})")
    from evoagent import registry

    names = {kind: list(registry.parts(kind)) for kind in ("operator", "strategy", "reward")}
    for path, kind, extra in (("strategy.kind", "strategy", []), ("search.reward", "reward", []),
                              ("fitness.reward", "reward", ["env"])):
        with _blamed(blame(path)):
            if values[path] not in names[kind] + extra:
                raise UserError(f"key {path!r}: unknown {kind} {values[path]!r} "
                                f"(have {', '.join(extra + names[kind])})")
    # A strategy's own checks: ``check_campaign(values) -> (key, problem) | None`` on its class.
    problem = getattr(registry.get("strategy", values["strategy.kind"]).fn, "check_campaign", lambda v: None)(values)
    if problem is not None:
        with _blamed(blame(problem[0])):
            raise UserError(f"key {problem[0]!r}: {problem[1]}")
    # an operator without a rate key (e.g. mcts, planned only by its strategy) is never drawn by rate
    rates = [f"operators.{o}.rate" for o in names["operator"] if f"operators.{o}.rate" in values]
    with _blamed(blame(*rates)):
        if sum(float(values[r]) for r in rates) <= 0:
            raise UserError("key 'operators': at least one operator needs a rate > 0")
    with _blamed(blame("replacement.kind", "lambda", "mu")):
        if values["replacement.kind"] == "comma" and values["lambda"] < values["mu"]:
            raise UserError("key 'lambda': (mu, lambda) replacement needs lambda >= mu")
    with _blamed(blame("replacement.elitism", "mu")):
        if values["replacement.elitism"] > values["mu"]:
            raise UserError(f"key 'replacement.elitism': must be within 0..mu ({values['mu']}), "
                            f"got {values['replacement.elitism']}")
    with _blamed(blame("executor.kind", "policy.kind")):
        _check_executor(values)
    return Campaign(values, source=source)


def _check_executor(values: dict[str, Any]) -> None:
    """``executor.kind = "ray"`` needs Ray installed, and a policy that needs no store (its call ledger)."""
    if values["executor.kind"] != "ray":
        return
    import importlib.util

    from evoagent.llm import LLM_POLICIES

    if importlib.util.find_spec("ray") is None:
        raise UserError("key 'executor.kind': \"ray\" needs Ray: pip install -e '.[ray]'")
    if values["policy.kind"] in LLM_POLICIES:
        raise UserError(f"key 'executor.kind': \"ray\" runs offline policies only (replay), not "
                        f"{values['policy.kind']!r}: LLM calls go through the store's call ledger, in the campaign's process")


@contextlib.contextmanager
def _blamed(where: str) -> Iterator[None]:
    """Prefix a UserError raised inside with where the value came from (file or ``--set``)."""
    try:
        yield
    except UserError as exc:
        raise UserError(f"{where}: {exc}" if where else str(exc)) from None


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
