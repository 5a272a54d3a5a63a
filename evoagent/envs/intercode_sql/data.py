"""The bundled InterCode-SQL tasks and recorded runs, as our data model.

Two recorded formats exist: the multi-turn experiment files (a dict of task
index -> ``turn_history`` with per-turn rewards) and InterCode's own episode
logs (``trajectory`` of action/observation pairs plus a final ``reward`` and
the gold result in ``info.eval_obs``). For the latter, per-step rewards are
derived from the recorded MySQL observations with InterCode's formula.
"""
from __future__ import annotations

import gzip
import io
import json
import tokenize
from functools import lru_cache
from pathlib import Path
from typing import Any

from evoagent.envs.intercode_sql.reward import intercode_reward
from evoagent.errors import UserError
from evoagent.trajectory import Step, Task, Trajectory

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "intercode_sql"
ENV_NAME = "intercode_sql"


@lru_cache(maxsize=1)
def _tasks() -> tuple[Task, ...]:
    with gzip.open(DATA_DIR / "ic_spider_dev.json.gz", "rt", encoding="utf-8") as fh:
        raw = json.load(fh)
    return tuple(Task(task_id=f"sql/{i}", env=ENV_NAME, question=r["query"], db=r["db"],
                      hardness=r.get("hardness", ""), gold=r["gold"], schema=r.get("db_tables", {}))
                 for i, r in enumerate(raw))


def load_tasks() -> list[Task]:
    """The 1,034 Spider-dev tasks, ``task_id`` = ``sql/<index>`` (cached)."""
    return list(_tasks())


def bundled_runs() -> dict[str, Path]:
    """Source name (e.g. ``gpt-4``) -> bundled recorded-run file."""
    out = {}
    for p in sorted((DATA_DIR / "trajectories").glob("*.json*")):
        out[source_name(p)] = p
    return out


def source_name(path: Path) -> str:
    """``gpt-4_multiturn_10.json.gz`` -> ``gpt-4``; else the bare stem."""
    name = path.name
    for suffix in (".gz", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.split("_multiturn")[0] if "_multiturn" in name else name


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


def _fail(path: Path, problem: str) -> UserError:
    return UserError(f"{path}: {problem}")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise _fail(path, "no such file")
    try:
        if path.read_bytes()[:2] == b"\x1f\x8b":
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return json.load(fh)
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, EOFError) as err:
        raise _fail(path, f"not a JSON file ({type(err).__name__}: {str(err).splitlines()[0][:80]})") from None


def _multiturn(key: str, rec: dict, source: str) -> Trajectory:
    th = rec["turn_history"]
    acts, obs, rews = th["actions"], th["observations"], th["rewards"]
    valid = th.get("valid_action", [True] * len(acts))
    if not (len(acts) == len(obs) == len(rews)):
        raise ValueError(f"task {key}: actions/observations/rewards differ in length")
    steps = tuple(Step(idx=i, action=str(a), observation=str(o), reward=float(r), valid=bool(v))
                  for i, (a, o, r, v) in enumerate(zip(acts, obs, rews, valid)))
    return Trajectory(task_id=f"sql/{key}", steps=steps, outcome_reward=float(rec["summary"]["max_reward"]),
                      source=source, info={"hardness": rec.get("hardness", "")})


def _episode_log(key: str, rec: dict, source: str) -> Trajectory:
    idx = rec.get("query_idx", key)
    eval_obs = rec.get("info", {}).get("eval_obs")
    gold = [str(tuple(r)) for r in eval_obs] if isinstance(eval_obs, list) else None
    steps = []
    for i, t in enumerate(rec["trajectory"]):
        o = str(t["observation"])
        rows = split_joined_rows(o)
        steps.append(Step(idx=i, action=str(t["action"]), observation=o,
                          reward=float(intercode_reward(rows, gold)) if gold is not None else 0.0,
                          valid=not o.startswith("Error executing query")))
    return Trajectory(task_id=f"sql/{idx}", steps=tuple(steps), outcome_reward=float(rec.get("reward") or 0.0),
                      source=source, info={"derived_step_rewards": True})


def load_recorded(path: str | Path) -> list[Trajectory]:
    """Recorded InterCode runs in either format (.json or .json.gz)."""
    path = Path(path)
    data = _read_json(path)
    if isinstance(data, dict) and "trajectory" in data and "environment" in data:
        data = {str(data.get("query_idx", 0)): data}
    if not isinstance(data, dict) or not data:
        raise _fail(path, "expected a JSON object of task index -> recorded episode")
    source = source_name(path)
    out = []
    for key, rec in data.items():
        try:
            if "turn_history" in rec:
                out.append(_multiturn(str(key), rec, source))
            elif "trajectory" in rec:
                out.append(_episode_log(str(key), rec, source))
            else:
                raise ValueError(f"task {key}: neither 'turn_history' nor 'trajectory'")
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise _fail(path, f"not an InterCode run ({type(err).__name__}: {err})") from None
    return out
