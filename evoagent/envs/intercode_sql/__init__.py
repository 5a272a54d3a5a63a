"""InterCode-SQL (Spider dev) on embedded DuckDB: tasks, environment, reward, replay.

The names below are imported on first use, so that a SQL worker process
(``python -m evoagent.envs.intercode_sql.sandbox``) loads only what it runs.
"""
from __future__ import annotations

import importlib
from typing import Any

_HOME = {"InterCodeSQLEnv": "env", "bundled_runs": "data", "intercode_reward": "reward",
         "load_recorded": "data", "load_tasks": "data"}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


# -- the environment part (``env.kind = "intercode_sql"``) and its policies ---------------------
# Declared here so that naming it imports nothing heavy; each hook imports what it runs.

import dataclasses  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

from evoagent.envs.base import Environment, Importer, Replayer  # noqa: E402
from evoagent.errors import UserError  # noqa: E402
from evoagent.policies.base import RECORDED_KEYS, SUBMIT, Made, PolicyPart  # noqa: E402
from evoagent.registry import BenchSetup, Key  # noqa: E402

HARDNESS = ("easy", "medium", "hard", "extra")
NAME = "intercode_sql"

KEYS: dict[str, Key] = {
    "env.dialect": Key(str, "mysql", lambda x: x in ("mysql", "duckdb"), "mysql or duckdb"),
    "env.timeout_s": Key((int, float), 5.0, lambda x: 0 < x <= 3600, "> 0 and <= 3600"),
    "env.tasks": Key(str, "", path=True),  # an InterCode task file ("" = the bundled tasks)
    "env.dump": Key(str, "", path=True),  # a MySQL dump of the tasks' databases ("" = the bundled one)
    "tasks.hardness": Key(list, [], lambda x: all(h in HARDNESS for h in x), f"a list of {HARDNESS}"),
    "tasks.dbs": Key(list, [], lambda x: all(isinstance(d, str) for d in x), "a list of names"),
}


def _keyed(key: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with its one-line error prefixed by the campaign key it came from."""
    try:
        return fn(*args)
    except UserError as exc:
        raise UserError(f"key {key!r}: {exc}") from None


def database(c: Any) -> Path | None:
    """The DuckDB file built from the campaign's ``env.dump`` (cached by content); None: the bundled one."""
    from evoagent.envs.intercode_sql.build import database_path

    return _keyed("env.dump", database_path, c.get("env.dump")) if c.get("env.dump") else None


def _load_tasks(c: Any) -> list[Any]:
    """The task file's tasks (``env.tasks`` or the bundled ones), filtered by ``tasks.hardness``/``tasks.dbs``."""
    from evoagent.envs.intercode_sql.build import catalog, database_path
    from evoagent.envs.intercode_sql.data import load_tasks, with_schemas

    tasks = _keyed("env.tasks", load_tasks, c.get("env.tasks") or None)
    if c.get("env.tasks") or c.get("env.dump"):  # tables for the prompt where the task file has no db_tables
        tasks = with_schemas(tasks, catalog(database(c) or database_path()))
    every = tasks
    if c.get("tasks.hardness"):
        tasks = [t for t in tasks if t.meta["hardness"] in c.get("tasks.hardness")]
    if c.get("tasks.dbs"):
        known = {t.meta["db"] for t in every}
        bad = [d for d in c.get("tasks.dbs") if d not in known]
        if bad:
            raise UserError(f"key 'tasks.dbs': unknown database {bad[0]!r}")
        tasks = [t for t in tasks if t.meta["db"] in c.get("tasks.dbs")]
    return tasks


def _make_env(c: Any) -> Callable[[], Any]:
    dialect, timeout, db = c.get("env.dialect"), c.get("env.timeout_s"), database(c)

    def make() -> Any:
        from evoagent.envs.intercode_sql.env import InterCodeSQLEnv

        return InterCodeSQLEnv(dialect=dialect, timeout_s=timeout, database=db)

    return make


def render_task(task: Any) -> str:
    """The task as the agent's prompt shows it: database, tables, question."""
    from evoagent.policies.llm import schema_text
    from evoagent.envs.intercode_sql.prompt import AGENT

    return AGENT.user.format(db=task.meta.get("db", ""), schema=schema_text(task), question=task.question)


def opening(task: Any, c: Any) -> list[dict[str, str]]:
    """The agent's system prompt and first user turn (the task), for training exports."""
    from evoagent.envs.intercode_sql.prompt import AGENT

    return [{"role": "system", "content": AGENT.system.format(max_steps=c.get("env.max_steps"))},
            {"role": "user", "content": render_task(task)}]


def gold_key(task: Any) -> str:
    """The task's gold-equivalence class: its database and normalised gold query (``gold.py``)."""
    from evoagent.envs.intercode_sql.gold import gold_key as key

    return key(task)


def _answer_key(action: str, observation: str | None) -> str | None:
    """The result an episode ended on, for the vote (``answers.py``); None: no answer."""
    from evoagent.envs.intercode_sql.answers import answer_key

    return answer_key(action, observation)


def _check(c: Any, tasks: Sequence[Any], note: Any) -> None:
    """With the user's own tasks or dump, list (through ``note``) the gold queries that do not run,
    with MySQL's reason: not fatal (those tasks score against an empty gold result, as in InterCode)."""
    if not (c.get("env.tasks") or c.get("env.dump")) or note is None:
        return
    from evoagent.envs.intercode_sql.data import gold_failures
    from evoagent.envs.intercode_sql.env import InterCodeSQLEnv

    note({"event": "stage", "stage": "running the gold queries"})
    env = InterCodeSQLEnv(dialect="mysql", timeout_s=c.get("env.timeout_s"), database=database(c))
    try:
        failed = gold_failures(tasks, env)
    finally:
        env.close()
    if failed:
        note({"event": "note", "text": f"{len(failed)} of {len(tasks)} gold queries do not run; those tasks "
              "score against an empty gold result, as in InterCode:"})
        for task_id, reason in failed:
            note({"event": "note", "text": f"  {task_id}: {reason}"})
    if c.get("policy.kind").startswith("replay") and c.get("env.tasks"):
        note({"event": "note", "text": "policy.kind = replay knows recorded actions of the bundled tasks only: "
              "on your own tasks every rollout submits at once; use an LLM policy (anthropic or openai)"})


def _fake_agent(**options: Any) -> Any:
    """The loopback fake server's stand-in model for this environment's agent (``fake_agent.py``)."""
    from evoagent.envs.intercode_sql.fake_agent import intercode_responder

    return intercode_responder(**options)


# -- ``evoagent bench search`` on it -------------------------------------------------------------
# The 5 databases (205 tasks) held out from the benchmark PRM's training: the default task set.
HELDOUT_DBS = ("concert_singer", "pets_1", "poker_player", "orchestra", "employee_hire_evaluation")


def _dbs(dbs: Sequence[str]) -> str:
    return "tasks.dbs=[" + ", ".join(f'"{d}"' for d in dbs) + "]"


def rollout_length(c: Any) -> float:
    """Expected executed actions of one replay rollout: ``1 + (1-p) + ... + (1-p)^(limit-1)``
    for the policy's own stopping rule (``policy.submit_p`` = p); the step limit otherwise."""
    limit = c.get("env.max_steps")
    try:
        p = c.get("policy.submit_p") if c.get("policy.kind") == "replay" else 0
    except KeyError:
        p = 0
    return float(limit) if not p else (1 - (1 - p) ** limit) / p


BENCH = BenchSetup(
    campaign_file="experiments/intercode_sql.toml",
    task_sets={"heldout": (_dbs(HELDOUT_DBS),), "all": ("tasks.dbs=[]",)},
    rewards=("prm", "mc", "oracle"), rollout_length=rollout_length,
    doc="heldout: the 205 tasks of 5 databases no benchmark PRM is trained on; all: 1,034 tasks")

ENVIRONMENT = Environment(
    name=NAME, load_tasks=_load_tasks, make_env=_make_env,
    policies=("replay", "anthropic", "openai", "replay_recorder_stops"),
    render_task=render_task, meta_fields={"db": "str", "hardness": "str", "schema": "dict[str, list[str]]"},
    gold_key=gold_key, keys=KEYS, check=_check, fake_agent=_fake_agent,
    opening=opening, closing=SUBMIT, bench=BENCH, answer_key=_answer_key,
    doc="InterCode-SQL: Spider-dev questions answered with SQL on DuckDB, InterCode's reward")


# -- policies ----------------------------------------------------------------------------------
# The replay walks' own keys: when to submit, and schema-aware SQL edits mixed in (walk.py).
REPLAY_KEYS: dict[str, Key] = {
    **RECORDED_KEYS,
    "policy.submit_p": Key((int, float), 0.3, lambda x: 0 <= x <= 1, "within [0, 1]"),
    "policy.distractors": Key((int, float), 0.0, lambda x: 0 <= x < 1, "within [0, 1)"),
    "policy.edit_p": Key((int, float), 0.0, lambda x: 0 <= x <= 1, "within [0, 1]"),
}


def _replay(walk: str) -> Callable[[Any, Any], Made]:
    def make(c: Any, store: Any) -> Made:
        from evoagent.envs.intercode_sql import walk as walks

        cls = getattr(walks, walk)
        return Made(cls.from_bundled(c.get("policy.sources") or None, explore=c.get("policy.explore"),
                                     submit_p=c.get("policy.submit_p"), distractors=c.get("policy.distractors"),
                                     edit_p=c.get("policy.edit_p")))

    return make


def _llm(transport: str) -> PolicyPart:
    from evoagent import llm

    def build(c: Any, client: Any) -> tuple[Any, Any]:
        from evoagent import registry
        from evoagent.envs.intercode_sql.agent import LLMPolicy
        from evoagent.llm.advisor import Advisor

        model = c.get("policy.model")
        policy = LLMPolicy(transport, client, model=model, max_tokens=c.get("policy.max_tokens"),
                           temperature=c.get("policy.temperature"), max_steps=c.get("env.max_steps"),
                           observation_chars=c.get("policy.observation_chars"))
        seen = not registry.get("reward", c.get("search.reward")).uses_gold
        advisor = (Advisor(client, model=model, max_tokens=c.get("policy.max_tokens"), show_rewards=seen)
                   if c.get("operators.llm") else None)
        return policy, advisor

    return llm.policy_part(NAME, transport, build,
                           f"a tool-using SQL agent over the {transport} API (calls in the store's ledger)")


REPLAY = PolicyPart(f"{NAME}.replay", _replay("ReplayPolicy"), REPLAY_KEYS, envs=(NAME,),
                    doc="recorded GPT-4/GPT-3.5 InterCode actions, recombined; submits by its own rule (offline)")
REPLAY_RECORDER_STOPS = PolicyPart(
    f"{NAME}.replay_recorder_stops", _replay("RecorderStopsReplayPolicy"), REPLAY_KEYS, envs=(NAME,),
    doc="the old replay walk: submits where a recording ended (at gold); to reproduce old figures only")
ANTHROPIC = _llm("anthropic")
OPENAI = _llm("openai")


# -- recorded runs: ``evoagent import intercode`` and ``evoagent replay intercode`` --------------------
def _bundled_runs() -> list[Path]:
    from evoagent.envs.intercode_sql.data import bundled_runs

    return sorted(bundled_runs().values())


def _import_runs(paths: list[Path], store_path: str) -> Any:
    """Every file checked (within one import's budget) before one transaction writes them all."""
    from evoagent.envs.intercode_sql.data import ImportBudget, load_recorded, load_tasks
    from stores import DuckDBStore, TrajectoryBatch

    tasks = load_tasks()
    budget = ImportBudget()  # bytes across all the files, not per file
    loaded = [(p, load_recorded(p, tasks, budget)) for p in paths]
    batch = TrajectoryBatch.from_trajectories([t for _, ts in loaded for t in ts], campaign="import",
                                              reward_source="recorded")
    with DuckDBStore(store_path) as store:
        store.add_tasks(tasks)
        n = store.write(batch)
    for p, trajs in loaded:
        blocked = sum(s.observation is None for t in trajs for s in t.steps)
        yield (f"{p.name}: {len(trajs)} trajectories, {sum(t.n_steps for t in trajs)} steps"
               + (f" ({blocked} never executed: 'blocked', stored with no observation)" if blocked else ""))
    yield f"{store_path}: {n} new trajectories"


def _replay_runs(file: str | None, bundled: str | None) -> Any:
    from evoagent.envs.intercode_sql.data import bundled_runs
    from evoagent.envs.intercode_sql.replay import replay_file

    if bundled:
        runs = bundled_runs()
        if bundled not in runs:
            raise UserError(f"no bundled recording {bundled!r} (have {', '.join(sorted(runs))})")
        file = str(runs[bundled])
    if not file:
        raise UserError("give FILE or --bundled NAME")
    yield replay_file(file).render()


IMPORTER = Importer(
    "intercode",
    "Import InterCode-SQL trajectory files (InterCode's JSON, optionally gzipped).\n\n"
    "All files are checked before anything is written, then their trajectories are written in one\n"
    "transaction: one bad file stops the import with nothing written (no store is created).",
    "Also import the recorded GPT-4, GPT-3.5 and human runs shipped with evoagent.", _bundled_runs, _import_runs,
    ("evoagent import intercode --bundled --store runs/recorded.duckdb",
     "evoagent import intercode my_model_multiturn_10.json --store runs/recorded.duckdb"))
REPLAYER = Replayer(
    "intercode",
    "Replay every executed recorded action; the last line is `agreement: A/N executed actions (P%)`.\n\n"
    "Actions the recorder never executed (format retries, `blocked`) are skipped and counted.",
    "Name of a shipped recording instead of FILE (gpt-4, gpt-3.5, human).", _replay_runs,
    ("evoagent replay intercode gpt-4_multiturn_10.json", "evoagent replay intercode --bundled gpt-4"))
ENVIRONMENT = dataclasses.replace(ENVIRONMENT, importers=(IMPORTER,), replayers=(REPLAYER,))
