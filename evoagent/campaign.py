"""Campaign files: TOML in, a validated frozen ``Campaign`` out, before any work.

Every key has a type, a default and a check in ``SPEC``; an unknown, misspelt,
mistyped or out-of-range key fails with one line that names it. ``--set
a.b=value`` overrides any key (the value is read as TOML, else as a string).
"""
from __future__ import annotations

import copy
import difflib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoagent.errors import UserError

HARDNESS = ("easy", "medium", "hard", "extra")
SELECTIONS = ("tournament", "best", "nsga2")
REPLACEMENTS = ("plus", "comma")
OBJECTIVES = ("reward", "steps", "cost")


REQUIRED = object()  # a default that must be replaced by the file or --set


def _pos(x: Any) -> bool:
    return x > 0


def _nonneg(x: Any) -> bool:
    return x >= 0


# path -> (type(s), default, check or None, what the check means)
SPEC: dict[str, tuple[Any, Any, Any, str]] = {
    "name": (str, REQUIRED, bool, "a non-empty name"),
    "seed": (int, 0, None, ""),
    "mu": (int, REQUIRED, _pos, "> 0"),
    "lambda": (int, REQUIRED, _pos, "> 0"),
    "concurrency": (int, 4, _pos, "> 0"),
    "env.kind": (str, REQUIRED, None, ""),
    "env.dialect": (str, "mysql", lambda x: x in ("mysql", "duckdb"), "mysql or duckdb"),
    "env.timeout_s": ((int, float), 5.0, _pos, "> 0"),
    "env.max_steps": (int, 10, _pos, "> 0"),
    "tasks.hardness": (list, [], lambda x: all(h in HARDNESS for h in x), f"a list of {HARDNESS}"),
    "tasks.dbs": (list, [], lambda x: all(isinstance(d, str) for d in x), "a list of names"),
    "tasks.ids": (list, [], lambda x: all(isinstance(d, str) for d in x), "a list of task ids"),
    "tasks.sample": (int, 0, _nonneg, ">= 0 (0 = all)"),
    "policy.kind": (str, REQUIRED, None, ""),
    "policy.sources": (list, [], lambda x: all(isinstance(d, str) for d in x), "a list of names"),
    "policy.explore": ((int, float), 0.1, lambda x: 0 <= x <= 1, "within [0, 1]"),
    "policy.model": (str, "claude-haiku-4-5", bool, "a model name"),
    "policy.base_url": (str, "", None, ""),
    "policy.max_tokens": (int, 512, _pos, "> 0"),
    "policy.temperature": ((int, float), 1.0, lambda x: 0 <= x <= 2, "within [0, 2]"),
    "policy.batch": ((bool, str), "auto", lambda x: x in (True, False, "auto"), 'true, false or "auto"'),
    "policy.batch_idle_s": ((int, float), 0.25, _pos, "> 0"),
    "policy.batch_poll_s": ((int, float), 5.0, _pos, "> 0"),
    "policy.max_in_flight": (int, 32, _pos, "> 0"),
    "policy.processes": ((int, str), "auto", lambda x: x == "auto" or (isinstance(x, int) and 0 <= x <= 32),
                         '"auto" or 0..32 (0 = send from the campaign process)'),
    "policy.tokens_per_minute": (int, 0, _nonneg, ">= 0 (0 = no limit)"),
    "policy.max_attempts": (int, 6, _pos, "> 0"),
    "policy.retry_base_s": ((int, float), 0.5, _nonneg, ">= 0"),
    "policy.timeout_s": ((int, float), 60.0, _pos, "> 0"),
    "policy.observation_chars": (int, 2000, _pos, "> 0"),
    "operators.llm": (bool, True, None, ""),
    "operators.sample.rate": ((int, float), 0.1, _nonneg, ">= 0"),
    "operators.revise.rate": ((int, float), 0.4, _nonneg, ">= 0"),
    "operators.recombine.rate": ((int, float), 0.3, _nonneg, ">= 0"),
    "operators.recombine.n_parents": (int, 2, lambda x: x >= 2, ">= 2"),
    "operators.refine.rate": ((int, float), 0.2, _nonneg, ">= 0"),
    "selection.kind": (str, "tournament", lambda x: x in SELECTIONS, f"one of {SELECTIONS}"),
    "selection.tournsize": (int, 3, lambda x: x >= 2, ">= 2"),
    "selection.objectives": (list, ["reward", "steps"],
                             lambda x: bool(x) and all(o in OBJECTIVES for o in x),
                             f"a non-empty list of {OBJECTIVES}"),
    "replacement.kind": (str, "plus", lambda x: x in REPLACEMENTS, f"one of {REPLACEMENTS}"),
    "replacement.elitism": (int, 1, _nonneg, ">= 0"),
    "budget.generations": (int, REQUIRED, _nonneg, ">= 0"),
    "budget.env_steps": (int, 0, _nonneg, ">= 0 (0 = no limit)"),
    "budget.wall_time_s": ((int, float), 0, _nonneg, ">= 0 (0 = no limit)"),
    "budget.usd": ((int, float), 0, _nonneg, ">= 0 (0 = no limit)"),
    "budget.tokens": (int, 0, _nonneg, ">= 0 (0 = no limit)"),
}
_SECTIONS = {p.rsplit(".", 1)[0] for p in SPEC if "." in p} | {
    p.rsplit(".", 2)[0] for p in SPEC if p.count(".") == 2
}


@dataclass(frozen=True)
class Campaign:
    """A validated campaign: ``get("selection.kind")`` reads any key."""

    values: dict[str, Any]
    source: str = ""

    def get(self, path: str) -> Any:
        return self.values[path]

    def operator_rates(self) -> dict[str, float]:
        return {op: float(self.values[f"operators.{op}.rate"])
                for op in ("sample", "revise", "recombine", "refine")}

    def to_json(self) -> str:
        return json.dumps(self.values, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Campaign:
        return cls(json.loads(text), source="store")


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in doc.items():
        path = f"{prefix}{key}"
        if isinstance(val, dict) and (path in _SECTIONS or path not in SPEC):
            if path not in _SECTIONS:
                _unknown(path)
            out.update(_flatten(val, path + "."))
        else:
            out[path] = val
    return out


def _unknown(path: str) -> None:
    near = difflib.get_close_matches(path, list(SPEC) + sorted(_SECTIONS), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise UserError(f"unknown key {path!r}{hint}")


def _check(path: str, val: Any) -> Any:
    if path not in SPEC:
        _unknown(path)
    types, _, check, meaning = SPEC[path]
    allowed = types if isinstance(types, tuple) else (types,)
    ok_type = isinstance(val, allowed) and not (isinstance(val, bool) and bool not in allowed)
    if not ok_type:
        want = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise UserError(f"key {path!r}: expected {want}, got {type(val).__name__} {val!r}")
    if check is not None and not check(val):
        raise UserError(f"key {path!r}: must be {meaning}, got {val!r}")
    return val


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
    """Validate a parsed document plus overrides into a Campaign (all checks first)."""
    values = {p: spec[1] if spec[1] is REQUIRED else copy.deepcopy(spec[1]) for p, spec in SPEC.items()}
    given = _flatten(doc)
    for text in overrides:
        path, value = parse_override(text)
        given[path] = value
    for path, val in given.items():
        values[path] = _check(path, val)
    missing = [p for p, v in values.items() if v is REQUIRED]
    if missing:
        raise UserError(f"missing key {missing[0]!r}")
    from evoagent.envs import ENVIRONMENTS
    from evoagent.policies import POLICIES

    if values["env.kind"] not in ENVIRONMENTS:
        raise UserError(f"key 'env.kind': unknown environment {values['env.kind']!r} "
                        f"(have {', '.join(ENVIRONMENTS)})")
    if values["policy.kind"] not in POLICIES:
        raise UserError(f"key 'policy.kind': unknown policy {values['policy.kind']!r} "
                        f"(have {', '.join(POLICIES)})")
    if sum(float(values[f"operators.{o}.rate"]) for o in ("sample", "revise", "recombine", "refine")) <= 0:
        raise UserError("key 'operators': at least one operator needs a rate > 0")
    if values["replacement.kind"] == "comma" and values["lambda"] < values["mu"]:
        raise UserError("key 'lambda': (mu, lambda) replacement needs lambda >= mu")
    return Campaign(values, source=source)


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
    try:
        return build(doc, overrides, source=str(p))
    except UserError as exc:
        raise UserError(f"{p}: {exc}") from None
