"""Training data for TRL from a store: SFT conversations, step-level DPO pairs, PRM step labels.

``evoagent export STORE --format sft|dpo|prm --out DIR`` writes ``DIR/<format>.parquet``
(and ``DIR/<format>.jsonl`` with ``--jsonl``), which ``datasets.load_dataset("parquet",
data_files=...)`` loads and TRL's trainers take as they are:

* ``sft`` (conversational language modelling, for ``SFTTrainer``): one row per solved
  trajectory (deduplicated by its content id), ``messages`` = the policy's system prompt,
  the user turn with the question and schema (the environment's agent template;
  environments without one: the question alone), then per step the action as an ``assistant``
  turn and what the environment answered as a ``user`` turn, ending with the assistant's
  closing action where its environment names one (``Environment.closing``: ``submit``). Observations are ``user`` turns, not ``tool`` turns: every chat template
  accepts them (the policy saw them as tool results; the text is the same).
* ``dpo`` (conversational preference, for ``DPOTrainer``): step-level pairs from the
  ``candidates`` that step-level searches (RRO, IPR, MCTS) record, as RRO and IPR build
  them: at one prefix, ``chosen`` = the accepted candidate (else the best scored),
  ``rejected`` = each other candidate scored lower by at least ``threshold`` (default:
  any lower), ``prompt`` = the conversation up to that step, and the ``margin``.
* ``prm`` (standard stepwise supervision, for ``PRMTrainer``): one row per trajectory whose
  every step has a value from ``reward_source``: ``prompt`` (system and user text),
  ``completions`` (one per step: the action, then ``\nObservation: `` and its observation),
  ``labels`` (value >= ``threshold``, default 0.5). A multi-line action could look like an
  observation in that text, so ``actions`` and ``observations`` hold each step's two parts
  exactly, one list entry per step.

An export with no rows is refused with one line, nothing written (``datasets`` cannot load an
empty Parquet file). JSONL lines keep every character but U+2028, U+2029 and U+0085, which
are written as ``\\u`` escapes: readers that split on ``str.splitlines()`` would cut a line there.

Prompts hold only what the policy saw (never gold, never a reward); rewards stay in their
own columns. Every file is written under a temporary name and renamed: nothing half-written.
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from evoagent.errors import UserError
from evoagent.policies.base import SUBMIT
from evoagent.trajectory import Task, trajectory_id

__all__ = ["FORMATS", "Written", "export_training"]

FORMATS = ("sft", "dpo", "prm")
NOT_EXECUTED = "(not executed)"
OBSERVATION = "\nObservation: "  # between a PRM completion's action and its observation
_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"}  # str.splitlines() cuts at them
_TEXT, _MESSAGES = pa.string(), pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
# Column types, so that every export (an empty one too) has the same columns.
SCHEMAS = {
    "sft": pa.schema([("messages", _MESSAGES), ("task_id", _TEXT), ("source", _TEXT), ("traj_id", _TEXT),
                      ("n_steps", pa.int32()), ("hardness", _TEXT)]),
    "dpo": pa.schema([("prompt", _MESSAGES), ("chosen", _MESSAGES), ("rejected", _MESSAGES),
                      ("margin", pa.float64()), ("chosen_reward", pa.float64()), ("rejected_reward", pa.float64()),
                      ("task_id", _TEXT), ("source", _TEXT), ("reward_source", _TEXT), ("step_idx", pa.int32()),
                      ("prefix_id", _TEXT)]),
    "prm": pa.schema([("prompt", _TEXT), ("completions", pa.list_(_TEXT)), ("labels", pa.list_(pa.bool_())),
                      ("values", pa.list_(pa.float64())), ("task_id", _TEXT), ("source", _TEXT),
                      ("traj_id", _TEXT), ("reward_source", _TEXT), ("actions", pa.list_(_TEXT)),
                      ("observations", pa.list_(_TEXT))]),
}

Rows = tuple[list[dict[str, Any]], dict[str, int]]  # the rows, and what was left out (and why)


@dataclass(frozen=True)
class Written:
    """What an export wrote: its files, rows, and what it left out (and why)."""

    paths: tuple[str, ...]
    rows: int
    skipped: dict[str, int]
    reward_source: str | None = None

    def summary(self, fmt: str) -> str:
        left = "; ".join(f"{n} {why}" for why, n in self.skipped.items() if n)
        src = f" (reward source {self.reward_source})" if self.reward_source else ""
        return f"{fmt}: {self.rows} rows{src}" + (f", left out: {left}" if left else "")


class _Prompts:
    """The policy's prompts for the store's tasks (the campaign's settings where it has them)."""

    def __init__(self, store: Any):
        rows = store.query("SELECT task_id, env, question, meta FROM tasks").to_pylist()
        self.max_steps, self.observation_chars = 10, 2000  # the campaign defaults
        known = None
        c = self._campaign(store)
        if c is not None:
            self.max_steps, self.observation_chars = c.get("env.max_steps"), c.get("policy.observation_chars", 2000)
            known = self._campaign_tasks(c)
        if known is None:  # e.g. imported runs: their environments' bundled tasks (with what the prompt shows)
            known = self._bundled_tasks({r["env"] for r in rows if r["env"]})
        metas = {t.task_id: t.meta for t in known or ()}
        self.tasks = {r["task_id"]: Task(r["task_id"], r["env"], r["question"] or "",
                                         meta=metas.get(r["task_id"]) or json.loads(r["meta"] or "{}"))
                      for r in rows}
        self._envs: dict[str, Any] = {}

    @staticmethod
    def _campaign(store: Any) -> Any:
        """The stored campaign's settings, if the store holds a campaign this version can read."""
        from evoagent.campaign import Campaign

        text = store.get_meta("campaign")
        try:
            return Campaign.from_json(text) if text is not None else None
        except UserError:
            return None

    @staticmethod
    def _campaign_tasks(c: Any) -> list[Task] | None:
        """The campaign's own tasks (with the tables the policy was shown), if its files are still there."""
        try:
            from evoagent.envs import select_tasks

            return select_tasks(c)
        except (UserError, OSError):
            return None

    @staticmethod
    def _bundled_tasks(envs: set[str]) -> list[Task] | None:
        from evoagent.envs import default_tasks

        found: list[Task] = []
        for name in sorted(envs):
            try:
                found += default_tasks(name)
            except (UserError, OSError):  # an environment this installation lacks: the stored fields
                continue
        return found or None

    def part(self, task_id: str) -> Any:
        """The environment part of a task (None: not installed here)."""
        from evoagent import registry

        env = self.env(task_id)
        if env not in self._envs:
            self._envs[env] = registry.get("environment", env) if env in registry.names("environment") else None
        return self._envs[env]

    def head(self, task_id: str) -> list[dict[str, str]]:
        """The opening turns as the policy saw them (its environment's ``opening``: the task with
        what the prompt shows, no gold); just the question for an environment without one."""
        task = self.tasks.get(task_id) or Task(task_id, "", "")
        env = self.part(task_id)
        if env is not None and env.opening is not None:
            return env.opening(task, {"env.max_steps": self.max_steps})
        return [{"role": "user", "content": task.question}]

    def closing(self, task_id: str) -> str | None:
        """The action its environment's agents end an episode with, if they name one."""
        env = self.part(task_id)
        return None if env is None else env.closing

    def env(self, task_id: str) -> str:
        return self.tasks[task_id].env if task_id in self.tasks else ""

    def observation(self, text: str | None) -> str:
        return NOT_EXECUTED if text is None else text[: self.observation_chars]

    def turns(self, steps: Sequence[tuple[str, str | None]]) -> list[dict[str, str]]:
        """Each (action, observation) as an assistant turn and a user turn."""
        out: list[dict[str, str]] = []
        for action, obs in steps:
            out += [{"role": "assistant", "content": action}, {"role": "user", "content": self.observation(obs)}]
        return out


def _steps(store: Any, chars: int, traj_ids_sql: str,
           params: Sequence[Any] = ()) -> dict[str, list[tuple[str, str | None]]]:
    """(action, observation) of every step of the trajectories the subquery selects, in order;
    observations cut to ``chars`` as they are read (what the policy was shown), so memory stays bounded."""
    rows = store.query(
        "SELECT traj_id, idx, any_value(action) AS action, left(any_value(observation), ?) AS observation "
        f"FROM steps WHERE traj_id IN ({traj_ids_sql}) GROUP BY ALL ORDER BY traj_id, idx",
        [chars, *params]).to_pylist()
    out: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for r in rows:
        out[r["traj_id"]].append((r["action"], r["observation"]))
    return out


def _trajectories(store: Any, where: str) -> list[dict[str, Any]]:
    """One row per distinct trajectory (its first production's source), in a stable order."""
    return store.query(
        "SELECT traj_id, any_value(task_id) AS task_id, arg_min(source, created_at) AS source, "
        "any_value(n_steps) AS n_steps, any_value(outcome_reward) AS outcome_reward "
        f"FROM trajectories WHERE {where} GROUP BY traj_id ORDER BY task_id, traj_id").to_pylist()


def sft_rows(store: Any, prompts: _Prompts) -> Rows:
    """Solved trajectories as conversations."""
    trajs = _trajectories(store, "solved")
    steps = _steps(store, prompts.observation_chars, "SELECT traj_id FROM trajectories WHERE solved")
    rows = []
    for t in trajs:
        messages = prompts.head(t["task_id"]) + prompts.turns(steps.get(t["traj_id"], []))
        closing = prompts.closing(t["task_id"])
        if closing is not None:  # its agents end an episode with an action of their own (submit)
            messages.append({"role": "assistant", "content": closing})
        hardness = prompts.tasks[t["task_id"]].meta.get("hardness", "") if t["task_id"] in prompts.tasks else ""
        rows.append({"messages": messages, "task_id": t["task_id"], "source": t["source"],
                     "traj_id": t["traj_id"], "n_steps": t["n_steps"], "hardness": hardness})
    return rows, {}


def _step_sources(store: Any, table: str) -> list[str]:
    col = "reward_source"
    where = "step_idx IS NOT NULL AND value IS NOT NULL" if table == "rewards" else "reward IS NOT NULL"
    return store.query(f"SELECT DISTINCT {col} FROM {table} WHERE {where} ORDER BY 1").column(0).to_pylist()


def _pick_source(store: Any, table: str, asked: str | None) -> str:
    have = _step_sources(store, table)
    if asked is None:
        if not have:
            what = "scored candidates (run a step-level search: rro, ipr, mcts)" if table == "candidates" \
                else "step-level rewards (run a campaign with a search reward model)"
            raise UserError(f"the store has no {what}")
        return have[0]
    if asked not in have:
        raise UserError(f"--reward-source {asked!r}: not in the store's {table} (have {', '.join(have) or 'none'})")
    return asked


def dpo_rows(store: Any, prompts: _Prompts, reward_source: str, threshold: float) -> Rows:
    """Step-level preference pairs: at each prefix, the accepted (else best) candidate over each lower one."""
    cands = store.query(
        "SELECT task_id, strategy, prefix_id, node_id, step_idx, traj_id, action, left(observation, ?) AS observation, "
        "reward, accepted FROM candidates WHERE reward_source = ? AND reward IS NOT NULL "
        "ORDER BY generation, item_id, step_idx, rank", [prompts.observation_chars, reward_source]).to_pylist()
    nodes: dict[str, dict[str, Any]] = {}  # node id -> its first record, accepted anywhere
    by_prefix: dict[str, list[str]] = defaultdict(list)
    for c in cands:
        first = nodes.get(c["node_id"])
        if first is None:
            nodes[c["node_id"]] = dict(c)
            by_prefix[c["prefix_id"]].append(c["node_id"])
        elif c["accepted"]:
            first["accepted"] = True
    steps = _steps(store, prompts.observation_chars,
                   "SELECT DISTINCT traj_id FROM candidates WHERE reward_source = ?", [reward_source])
    rows, skipped = [], {"prefixes whose steps are not in the store": 0}
    for prefix_id, ids in by_prefix.items():
        group = [nodes[i] for i in ids]
        accepted = [n for n in group if n["accepted"]]
        chosen = max(accepted or group, key=lambda n: n["reward"])  # first of the best: earliest sampled
        lower = [n for n in group if chosen["reward"] - n["reward"] > 0 and chosen["reward"] - n["reward"] >= threshold]
        if not lower:
            continue
        prefix = _prefix(prefix_id, chosen, nodes, steps)
        if prefix is None:
            skipped["prefixes whose steps are not in the store"] += 1
            continue
        prompt = prompts.head(chosen["task_id"]) + prompts.turns(prefix)
        for n in lower:
            rows.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen["action"]}],
                         "rejected": [{"role": "assistant", "content": n["action"]}],
                         "margin": chosen["reward"] - n["reward"], "chosen_reward": chosen["reward"],
                         "rejected_reward": n["reward"], "task_id": chosen["task_id"], "source": chosen["strategy"],
                         "reward_source": reward_source, "step_idx": chosen["step_idx"], "prefix_id": prefix_id})
    return rows, skipped


def _prefix(prefix_id: str, chosen: dict[str, Any], nodes: dict[str, dict[str, Any]],
            steps: dict[str, list[tuple[str, str | None]]]) -> list[tuple[str, str | None]] | None:
    """The (action, observation) steps of a prefix: from the trajectory its candidates were building
    (checked against the prefix's content id), else by walking candidates back to the task's start."""
    task_id, k = chosen["task_id"], chosen["step_idx"]
    built = steps.get(chosen["traj_id"], [])[:k]
    if len(built) == k and trajectory_id(task_id, [a for a, _ in built]) == prefix_id:
        return built
    walked: list[tuple[str, str | None]] = []
    root, at = trajectory_id(task_id, ()), prefix_id
    while at != root:
        node = nodes.get(at)
        if node is None or len(walked) > 10_000:
            return None
        walked.append((node["action"], node["observation"]))
        at = node["prefix_id"]
    return walked[::-1]


def prm_rows(store: Any, prompts: _Prompts, reward_source: str, threshold: float) -> Rows:
    """Trajectories with one label per step from ``reward_source`` (value >= threshold)."""
    values = {(r["traj_id"], r["step_idx"]): r["value"] for r in store.query(
        "SELECT traj_id, step_idx, any_value(value) AS value FROM rewards "
        "WHERE reward_source = ? AND step_idx IS NOT NULL GROUP BY ALL", [reward_source]).to_pylist()}
    trajs = _trajectories(store, "n_steps > 0")
    steps = _steps(store, prompts.observation_chars, "SELECT traj_id FROM trajectories WHERE n_steps > 0")
    rows, skipped = [], {"trajectories with unscored steps": 0}
    for t in trajs:
        mine = steps.get(t["traj_id"], [])
        actions = [a for a, _ in mine]
        scores = []
        for i in range(len(mine)):
            # the last step's value is that of the submitted episode (the key with its submit)
            keys = [trajectory_id(t["task_id"], actions[: i + 1])]
            if i == len(mine) - 1:
                keys.insert(0, trajectory_id(t["task_id"], actions + [SUBMIT]))
            scores.append(next((values[(k, i)] for k in keys if (k, i) in values), None))
        if not mine or any(v is None for v in scores):
            skipped["trajectories with unscored steps"] += 1
            continue
        head = prompts.head(t["task_id"])
        rows.append({"prompt": "\n\n".join(m["content"] for m in head),
                     "completions": [f"{a}{OBSERVATION}{prompts.observation(o)}" for a, o in mine],
                     "labels": [v >= threshold for v in scores], "values": scores,
                     "task_id": t["task_id"], "source": t["source"], "traj_id": t["traj_id"],
                     "reward_source": reward_source, "actions": [a for a, _ in mine],
                     "observations": [prompts.observation(o) for _, o in mine]})
    return rows, skipped


def jsonl_line(row: dict[str, Any]) -> str:
    """One JSON line, UTF-8 kept, with the characters other readers take for line breaks escaped."""
    line = json.dumps(row, ensure_ascii=False)
    for char, escaped in _LINE_BREAKS.items():
        if char in line:  # only inside strings: JSON's own syntax has none of them
            line = line.replace(char, escaped)
    return line + "\n"


def _write(rows: list[dict[str, Any]], schema: pa.Schema, path: Path, jsonl: bool) -> list[str]:
    """Parquet (and JSONL): every file written under a temporary name first, then all renamed into
    place, so a failed write leaves the folder as it was (never a new .parquet beside an old .jsonl)."""
    targets = [path, path.with_suffix(".jsonl")] if jsonl else [path]
    staged = [t.with_name(f".{t.name}.partial-{os.getpid()}") for t in targets]
    try:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), staged[0], compression="zstd")
        if jsonl:
            with staged[1].open("w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(jsonl_line(row))
        for staging, target in zip(staged, targets):
            os.replace(staging, target)
    finally:
        for staging in staged:
            if staging.is_file():
                staging.unlink()
    return [str(t) for t in targets]


def export_training(store_path: str, fmt: str, out_dir: str, *, jsonl: bool = False,
                    reward_source: str | None = None, threshold: float | None = None) -> Written:
    """Write one training format of the store at ``store_path`` to ``out_dir``; see the module docstring."""
    from stores import open_reader
    from stores.readonly import refuse_store_paths

    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r} (have {', '.join(FORMATS)})")
    if threshold is not None and not math.isfinite(threshold):
        raise UserError(f"--threshold must be a finite number, got {threshold}")
    if fmt == "sft" and (reward_source is not None or threshold is not None):
        raise UserError("--reward-source and --threshold apply to --format dpo and prm, not sft")
    out = Path(out_dir)
    target = out / f"{fmt}.parquet"
    refuse_store_paths(store_path, out, replaced=False)
    for p in (target, target.with_suffix(".jsonl")):
        refuse_store_paths(store_path, p)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out_dir} is a file; give a folder")
    store = open_reader(store_path)
    try:
        prompts = _Prompts(store)
        source = None
        if fmt == "sft":
            rows, skipped = sft_rows(store, prompts)
        elif fmt == "dpo":
            source = _pick_source(store, "candidates", reward_source)
            rows, skipped = dpo_rows(store, prompts, source, 0.0 if threshold is None else threshold)
        else:
            source = _pick_source(store, "rewards", reward_source)
            rows, skipped = prm_rows(store, prompts, source, 0.5 if threshold is None else threshold)
    finally:
        store.close()
    if not rows:
        empty = Written((), 0, skipped, source).summary(fmt)
        raise UserError(f"nothing to export: {empty}; no file written (an empty Parquet file is not a dataset "
                        "that datasets.load_dataset can load)")
    out.mkdir(parents=True, exist_ok=True)
    return Written(tuple(_write(rows, SCHEMAS[fmt], target, jsonl)), len(rows), skipped, source)
