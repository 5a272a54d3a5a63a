"""InterCode-SQL tasks (the bundled Spider dev set or the user's own) and recorded runs.

Tasks come in InterCode's format: a JSON list of records with ``query``,
``gold``, ``db`` and optionally ``hardness`` and ``db_tables``. Recorded runs
come in InterCode's two formats: the multi-turn experiment files (a dict of
task index -> ``turn_history`` with per-turn rewards) and its own episode
logs (``trajectory`` of action/observation pairs plus a final ``reward`` and
the gold result in ``info.eval_obs``). For the latter, per-step rewards are
derived from the recorded MySQL observations with InterCode's formula.

Files are untrusted: each is read with a bound on its decompressed size and
checked whole (task keys, list shapes, finite rewards within InterCode's
range, text that can be stored) before anything is returned, so a caller can
validate every file before writing any. An action InterCode's harness logged
but never executed (``blocked``: the provider refused to answer; it has no
observation) becomes a step with ``observation = None`` and ``reward = None``.
"""
from __future__ import annotations

import io
import json
import math
import re
import tokenize
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from evoagent.envs.files import MAX_IMPORT_BYTES, MAX_JSON_BYTES, MAX_JSON_CONTAINERS, ImportBudget, read_json  # noqa: F401
from evoagent.envs.intercode_sql.reward import intercode_reward
from evoagent.errors import UserError
from evoagent.trajectory import Step, Task, Trajectory

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "intercode_sql"
ENV_NAME = "intercode_sql"
#: InterCode's rewards are an IoU scaled by Kendall's tau: always within [-1, 1].
REWARD_BOUND = 1.0
#: The action InterCode's harness logs when the model's answer never came (no observation).
NOT_EXECUTED = "blocked"
_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")


class _Bad(ValueError):
    """A malformed part of a file; the loader prefixes the file name."""


# -- reading ---------------------------------------------------------------------
def _text(value: Any, what: str, *, empty: bool = True) -> str:
    """A string that can be stored (valid Unicode, no lone surrogate)."""
    if not isinstance(value, str):
        raise _Bad(f"{what} must be a string, got {type(value).__name__}")
    if not empty and not value.strip():
        raise _Bad(f"{what} is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Bad(f"{what} holds a lone surrogate (\\ud800-\\udfff), which is not text") from None
    return value


def _reward(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"{what} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and -REWARD_BOUND <= value <= REWARD_BOUND):
        raise _Bad(f"{what} is {value!r}, outside InterCode's range [-1, 1]")
    return float(value)


def _list(value: Any, what: str) -> list:
    if not isinstance(value, list):
        raise _Bad(f"{what} must be a list, got {type(value).__name__}")
    return value


def _obj(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise _Bad(f"{what} must be an object, got {type(value).__name__}")
    return value


# -- tasks -------------------------------------------------------------------------
def _task(i: int, rec: Any, prefix: str) -> Task:
    rec = _obj(rec, f"task {i}")
    hardness = rec.get("hardness")
    tables = rec.get("db_tables") or {}
    schema = {_text(t, f"task {i}: a db_tables name"): [_text(c, f"task {i}: a column of {t}")
                                                       for c in _list(cols, f"task {i}: db_tables[{t!r}]")]
              for t, cols in _obj(tables, f"task {i}: db_tables").items()}
    return Task(task_id=f"{prefix}/{i}", env=ENV_NAME,
                question=_text(rec.get("query"), f"task {i}: query", empty=False),
                gold=_text(rec.get("gold"), f"task {i}: gold"),
                meta={"db": _text(rec.get("db"), f"task {i}: db", empty=False),
                      "hardness": "" if hardness is None else _text(hardness, f"task {i}: hardness"),
                      "schema": schema})


def task_prefix(path: Path) -> str:
    """Task ids of a task file are ``<prefix>/<index>``: the file's stem, never the bundled ``sql``."""
    stem = re.sub(r"(\.json)?(\.gz)?$", "", path.name)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "tasks"
    return stem + "-own" if stem.lower() == "sql" else stem


@lru_cache(maxsize=8)
def _task_file(path: str, _stamp: tuple[int, int] | None, prefix: str) -> tuple[Task, ...]:
    p = Path(path)
    raw = read_json(p)
    try:
        records = _list(raw, "the file")
        if not records:
            raise _Bad("no tasks")
        return tuple(_task(i, r, prefix) for i, r in enumerate(records))
    except _Bad as err:
        raise UserError(f"{p}: not an InterCode task file ({err}; expected a JSON list of "
                        f"{{\"query\", \"gold\", \"db\", \"hardness\"}} records)") from None


def load_tasks(path: str | Path | None = None) -> list[Task]:
    """Tasks of an InterCode task file (cached per file version); default: the 1,034 bundled
    Spider-dev tasks, ``task_id`` = ``sql/<index>``."""
    if path is None:
        return list(_task_file(str(DATA_DIR / "ic_spider_dev.json.gz"), None, "sql"))
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise UserError(f"{p}: no such file") from None
    return list(_task_file(str(p.resolve()), (st.st_mtime_ns, st.st_size), task_prefix(p)))


def with_schemas(tasks: Sequence[Task], catalog: dict[str, dict[str, list[str]]]) -> list[Task]:
    """Tasks whose file gave no ``db_tables`` get their database's tables from the dump."""
    lower = {db.lower(): tables for db, tables in catalog.items()}
    return [t if t.meta["schema"] else t.with_meta(schema=dict(lower.get(t.meta["db"].lower(), {}))) for t in tasks]


def gold_failures(tasks: Sequence[Task], env: Any) -> list[tuple[str, str]]:
    """(task id, reason) for each task whose gold query does not run in ``env`` (an
    environment in the mysql dialect). Not fatal: InterCode scored such a task against an
    empty gold result, and so does our environment."""
    out = []
    for t in tasks:
        env.reset(t)
        obs, rows, info = env.execute(t.gold)
        if rows is None:
            out.append((t.task_id, str(info.get("error") or obs).removeprefix("Error executing query: ")))
    return out


# -- recorded runs -------------------------------------------------------------------
def bundled_runs() -> dict[str, Path]:
    """Source name (e.g. ``gpt-4``) -> bundled recorded-run file."""
    out = {}
    for p in sorted((DATA_DIR / "trajectories").glob("*.json*")):
        out[source_name(p)] = p
    return out


def source_name(path: Path) -> str:
    """The recording's agent: ``gpt-4_multiturn_10.json.gz`` -> ``gpt-4``,
    ``ic_sql_multiturn_vicuna_10_turns.json`` (InterCode's results) -> ``vicuna_10_turns``;
    else the bare stem."""
    name = path.name
    for suffix in (".gz", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    before, marker, after = name.partition("_multiturn")
    if not marker:
        return name
    return (after.strip("_") or before) if before.startswith("ic_") else before


def split_joined_rows(obs: str) -> list[str] | None:
    """``"('a',)('b',)"`` (InterCode's log format) -> ``["('a',)", "('b',)"]``; None if not rows."""
    if obs.startswith("Error executing query"):
        return None
    if obs.strip() == "":
        return []
    rows, depth, start = [], 0, 0
    lines = obs.splitlines(keepends=True)
    offsets = [0]
    for ln in lines:
        offsets.append(offsets[-1] + len(ln))
    try:
        for tok in tokenize.generate_tokens(io.StringIO(obs).readline):
            if tok.type != tokenize.OP or tok.string not in "()":
                continue
            pos = offsets[tok.start[0] - 1] + tok.start[1]
            if tok.string == "(":
                if depth == 0:
                    start = pos
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    rows.append(obs[start: pos + 1])
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return rows if rows and "".join(rows) == obs else None


def _unexecuted(acts: list[str], n_obs: int, key: str) -> set[int]:
    """Indices of the logged actions that got no observation: the last ``blocked`` ones."""
    missing = len(acts) - n_obs
    if missing < 0:
        raise _Bad(f"task {key}: {n_obs} observations for {len(acts)} actions")
    marked = [i for i, a in enumerate(acts) if a.strip().lower() == NOT_EXECUTED]
    if len(marked) < missing:
        raise _Bad(f"task {key}: {len(acts)} actions but {n_obs} observations; an action without one must be "
                   f"the never-executed marker {NOT_EXECUTED!r} ({len(marked)} found)")
    return set(marked[len(marked) - missing:]) if missing else set()


def _per_action(values: list, n_acts: int, skip: set[int], what: str, key: str) -> list:
    """Align a per-turn list to the actions: given for every action, or only for executed ones."""
    if len(values) == n_acts:
        return list(values)
    if len(values) == n_acts - len(skip):
        it = iter(values)
        return [None if i in skip else next(it) for i in range(n_acts)]
    raise _Bad(f"task {key}: {len(values)} {what} for {n_acts} actions ({n_acts - len(skip)} executed)")


def _multiturn(key: str, rec: dict, source: str, task_id: str) -> Trajectory:
    th = _obj(rec.get("turn_history"), f"task {key}: turn_history")
    acts = [_text(a, f"task {key}: an action") for a in _list(th.get("actions"), f"task {key}: actions")]
    obs = [_text(o, f"task {key}: an observation") for o in _list(th.get("observations"), f"task {key}: observations")]
    if not acts:
        raise _Bad(f"task {key}: no actions")
    skip = _unexecuted(acts, len(obs), key)
    it = iter(obs)
    observations = [None if i in skip else next(it) for i in range(len(acts))]
    rewards = _per_action(_list(th.get("rewards"), f"task {key}: rewards"), len(acts), skip, "rewards", key)
    valid = _per_action(_list(th.get("valid_action", [None] * len(acts)), f"task {key}: valid_action"),
                        len(acts), skip, "valid_action entries", key)
    thoughts = th.get("thoughts")
    thoughts = (_per_action(_list(thoughts, f"task {key}: thoughts"), len(acts), skip, "thoughts", key)
                if thoughts is not None else [None] * len(acts))
    steps = []
    for i, (a, o, r, v, t) in enumerate(zip(acts, observations, rewards, valid, thoughts)):
        if v is not None and not isinstance(v, bool):
            raise _Bad(f"task {key}: valid_action[{i}] must be true or false, got {v!r}")
        reward = None if r is None and o is None else _reward(r, f"task {key}: rewards[{i}]")
        steps.append(Step(idx=i, action=a, observation=o,  # type: ignore[arg-type]  # None: not executed
                          reward=None if o is None else reward,  # type: ignore[arg-type]
                          thought="" if t is None else _text(t, f"task {key}: a thought"),
                          valid=o is not None and (v if v is not None else not o.startswith("Error executing query"))))
    summary = _obj(rec.get("summary", {}), f"task {key}: summary")
    executed_rewards = [s.reward for s in steps if s.reward is not None]
    outcome = summary.get("max_reward", max(executed_rewards, default=0.0))
    return Trajectory(task_id=task_id, steps=tuple(steps), source=source, info={"hardness": rec.get("hardness", "")},
                      outcome_reward=_reward(outcome, f"task {key}: summary.max_reward"))


def _episode_log(key: str, rec: dict, source: str, task_id: str) -> Trajectory:
    info = _obj(rec.get("info") or {}, f"task {key}: info")
    eval_obs = info.get("eval_obs")
    gold = [str(tuple(_list(r, f"task {key}: a gold row"))) for r in eval_obs] if isinstance(eval_obs, list) else None
    steps = []
    for i, t in enumerate(_list(rec.get("trajectory"), f"task {key}: trajectory")):
        t = _obj(t, f"task {key}: trajectory[{i}]")
        a = _text(t.get("action"), f"task {key}: trajectory[{i}].action")
        o = t.get("observation")
        if o is None:
            steps.append(Step(idx=i, action=a, observation=None, reward=None, valid=False))  # type: ignore[arg-type]
            continue
        o = _text(o, f"task {key}: trajectory[{i}].observation")
        steps.append(Step(idx=i, action=a, observation=o,
                          reward=float(intercode_reward(split_joined_rows(o), gold)) if gold is not None else 0.0,
                          valid=not o.startswith("Error executing query")))
    if not steps:
        raise _Bad(f"task {key}: no actions")
    outcome = rec.get("reward")
    return Trajectory(task_id=task_id, steps=tuple(steps), source=source, info={"derived_step_rewards": True},
                      outcome_reward=0.0 if outcome is None else _reward(outcome, f"task {key}: reward"))


def _index(key: Any, n_tasks: int, what: str) -> int:
    """A task index as InterCode writes it (decimal, no sign or padding) that names a task."""
    text = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
    if not isinstance(text, str) or not _INDEX.fullmatch(text):
        raise _Bad(f"{what} {key!r} is not a task index (0 to {n_tasks - 1})")
    if int(text) >= n_tasks:
        raise _Bad(f"{what} {key!r} is not a task index (0 to {n_tasks - 1})")
    return int(text)


def load_recorded(path: str | Path, tasks: Sequence[Task] | None = None,
                  budget: ImportBudget | None = None) -> list[Trajectory]:
    """Recorded InterCode runs in either format (.json or .json.gz), checked whole.

    Keys (and a record's own ``task_id``/``query_idx``) must be indices of ``tasks``
    (default: the bundled ones); the trajectory's ``task_id`` is that task's id."""
    path = Path(path)
    tasks = load_tasks() if tasks is None else tasks
    data = read_json(path, budget)
    if isinstance(data, dict) and isinstance(data.get("logs"), dict) and set(data) <= {"meta", "logs"}:
        data = data["logs"]  # InterCode's plan-and-solve logs wrap the episodes
    if isinstance(data, dict) and "trajectory" in data and "environment" in data:
        data = {str(data.get("query_idx", "")): data}
    if not isinstance(data, dict) or not data:
        raise UserError(f"{path}: expected a JSON object of task index -> recorded episode")
    source = source_name(path)
    out = []
    try:
        for key, rec in data.items():
            i = _index(key, len(tasks), "key")
            rec = _obj(rec, f"task {key}")
            own = rec.get("task_id", rec.get("query_idx", i))
            if _index(own, len(tasks), f"task {key}: its index") != i:
                raise _Bad(f"task {key}: the record says it is task {own!r}")
            if "turn_history" in rec:
                out.append(_multiturn(str(key), rec, source, tasks[i].task_id))
            elif "trajectory" in rec:
                out.append(_episode_log(str(key), rec, source, tasks[i].task_id))
            else:
                raise _Bad(f"task {key}: neither 'turn_history' nor 'trajectory'")
    except _Bad as err:
        raise UserError(f"{path}: not an InterCode run ({err})") from None
    return out
