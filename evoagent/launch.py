"""Starting, resuming and inspecting a campaign stored in one store file.

The campaign's validated settings are committed to the store before any work,
so ``resume`` needs only the store path; it may change budgets and
concurrency (``--set``), never what would change the results.
"""
from __future__ import annotations

import contextlib
import json
import random
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from evoagent import campaign as campaign_mod
from evoagent.campaign import Campaign
from evoagent.envs import env_hooks, make_env
from evoagent.errors import UserError
from evoagent.loop import Outcome, Runner
from evoagent.policies import make_policy
from evoagent.rewards import build_signals
from evoagent.rewards.identity import check_resume as check_reward_models
from evoagent.rollout import Context
from evoagent.trajectory import Task
from stores import DuckDBStore, Store
from stores.snapshot import snapshot_dir

Progress = Callable[[dict[str, Any]], None]  # the CLI's printer: stages, items, committed generations

# Keys that may change on resume: they change how the work runs, never its results.
RESUMABLE = ("budget.", "concurrency", "policy.base_url", "policy.batch", "policy.max_in_flight",
             "policy.processes", "policy.tokens_per_minute", "policy.max_attempts", "policy.retry_base_s",
             "policy.timeout_s", "rewards.batch_size", "rewards.batch_wait_ms", "rewards.mc.threads",
             "rewards.http.timeout_s", "rewards.http.max_attempts", "rewards.http.retry_base_s",
             "rewards.http.max_batch", "executor.")


def database(c: Campaign) -> Path | None:
    """The DuckDB file built from the campaign's ``env.dump`` (cached by content); None: the bundled one."""
    from evoagent.envs.intercode_sql.build import database_path

    return _keyed("env.dump", database_path, c.get("env.dump")) if c.get("env.dump") else None


def _keyed(key: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with its one-line error prefixed by the campaign key it came from."""
    try:
        return fn(*args)
    except UserError as exc:
        raise UserError(f"key {key!r}: {exc}") from None


def select_tasks(c: Campaign) -> list[Task]:
    """The campaign's tasks (``env.tasks`` or the bundled ones): filters first, then a seeded sample."""
    if c.get("env.kind") != "intercode_sql":  # another environment loads its own tasks (its hook)
        tasks = env_hooks(c.get("env.kind")).load_tasks(c)
    else:
        tasks = _intercode_tasks(c)
    every = tasks
    if c.get("tasks.ids"):
        by_id = {t.task_id: t for t in tasks}
        missing = [i for i in c.get("tasks.ids") if i not in by_id]
        if missing:
            raise UserError(f"key 'tasks.ids': unknown task {missing[0]!r}")
        tasks = [by_id[i] for i in dict.fromkeys(c.get("tasks.ids"))]
    if c.get("tasks.hardness"):
        tasks = [t for t in tasks if t.hardness in c.get("tasks.hardness")]
    if c.get("tasks.dbs"):
        known = {t.db for t in every}
        bad = [d for d in c.get("tasks.dbs") if d not in known]
        if bad:
            raise UserError(f"key 'tasks.dbs': unknown database {bad[0]!r}")
        tasks = [t for t in tasks if t.db in c.get("tasks.dbs")]
    n = c.get("tasks.sample")
    if n and n < len(tasks):
        tasks = sorted(random.Random(c.get("seed")).sample(tasks, n), key=lambda t: t.task_id)
    if not tasks:
        raise UserError("key 'tasks': the filters select no task")
    return tasks


def _intercode_tasks(c: Campaign) -> list[Task]:
    from evoagent.envs.intercode_sql.build import catalog, database_path
    from evoagent.envs.intercode_sql.data import load_tasks, with_schemas

    if c.get("tasks.ranks"):
        raise UserError("key 'tasks.ranks' selects game24 puzzles; InterCode-SQL tasks are selected with "
                        "tasks.ids, tasks.hardness, tasks.dbs and tasks.sample")
    tasks = _keyed("env.tasks", load_tasks, c.get("env.tasks") or None)
    if c.get("env.tasks") or c.get("env.dump"):  # tables for the prompt where the task file has no db_tables
        tasks = with_schemas(tasks, catalog(database(c) or database_path()))
    return tasks


def env_files(c: Campaign) -> str:
    """Content hashes of the campaign's own task file and dump: a resume must run on the same data."""
    import hashlib

    return json.dumps({k: hashlib.sha256(Path(c.get(k)).read_bytes()).hexdigest()[:16]
                       for k in campaign_mod.PATH_KEYS if c.get(k)}, sort_keys=True)


def check_own_data(c: Campaign, tasks: list[Task], note: Progress | None) -> None:
    """With the user's own tasks or dump, list (through ``note``) the gold queries that do not run,
    with MySQL's reason: not fatal (those tasks score against an empty gold result, as in InterCode)."""
    if not (c.get("env.tasks") or c.get("env.dump")) or note is None:
        return
    from evoagent.envs.intercode_sql.data import gold_failures

    _stage(note, "running the gold queries")
    env = make_env(c.get("env.kind"), dialect="mysql", timeout_s=c.get("env.timeout_s"), database=database(c))
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


def check_policy(c: Campaign) -> None:
    """Fail before any work when an LLM policy cannot run (no key, no URL, unknown model)."""
    import os

    from evoagent.llm.pricing import price_of

    kind = c.get("policy.kind")
    if kind == "anthropic":
        price_of(c.get("policy.model"))
        if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
            raise UserError("policy.kind = anthropic needs ANTHROPIC_API_KEY in the environment")
    elif kind == "openai" and not c.get("policy.base_url"):
        raise UserError("key 'policy.base_url': policy.kind = openai needs the server's URL, e.g. http://127.0.0.1:8000/v1")
    from evoagent import registry

    for name in dict.fromkeys((c.get("search.reward"), c.get("fitness.reward"))):
        part = registry.parts("reward").get(name)  # "env" is the outcome, no model
        if part is not None and part.preflight is not None:
            part.preflight(c)


def build_context(c: Campaign, tasks: list[Task], store: Store | None = None) -> Context:
    """Tasks, policy (and for LLM policies: advisor and budget over the store's ledger), environment."""
    from evoagent.llm import LLM_POLICIES

    if c.get("env.kind") != "intercode_sql":  # another environment builds its own policy and env factory
        hooks = env_hooks(c.get("env.kind"))
        policy, advisor, budget, closers = hooks.make_policy(c, store)
        return Context(tasks={t.task_id: t for t in tasks}, policy=policy, make_env=hooks.make(c),
                       max_steps=c.get("env.max_steps"), advisor=advisor, budget=budget, closers=closers,
                       settings=dict(c.values))

    advisor = budget = None
    closers: list[Any] = []
    if c.get("policy.kind") in LLM_POLICIES:
        if store is None:
            raise UserError(f"policy {c.get('policy.kind')!r} needs a store for its call ledger")
        from evoagent import llm

        policy, advisor, budget, closers = llm.build(c, store)
    else:
        policy = make_policy(c.get("policy.kind"), sources=c.get("policy.sources"),
                             explore=c.get("policy.explore"), submit_p=c.get("policy.submit_p"),
                             distractors=c.get("policy.distractors"), edit_p=c.get("policy.edit_p"))
    kind, dialect, timeout, db = c.get("env.kind"), c.get("env.dialect"), c.get("env.timeout_s"), database(c)
    return Context(tasks={t.task_id: t for t in tasks}, policy=policy,
                   make_env=lambda: make_env(kind, dialect=dialect, timeout_s=timeout, database=db),
                   max_steps=c.get("env.max_steps"), advisor=advisor, budget=budget, closers=closers,
                   settings=dict(c.values))


def check_scale(c: Campaign, n_tasks: int) -> None:
    """Refuse a campaign whose generations would not fit in memory (all items are planned at once)."""
    per_task = max(c.get("mu"), c.get("lambda"))
    if n_tasks * per_task > campaign_mod.MAX_ITEMS_PER_GENERATION:
        raise UserError(f"keys 'mu'/'lambda': {n_tasks} tasks x {per_task} = {n_tasks * per_task:,} work items "
                        f"per generation; at most {campaign_mod.MAX_ITEMS_PER_GENERATION:,} "
                        "(lower mu/lambda or select fewer tasks)")


def _stage(note: Progress | None, stage: str, **counts: int) -> None:
    if note is not None:
        note({"event": "stage", "stage": stage, **counts})


def upper_bound(ctx: Context, concurrency: int, note: Progress | None = None,
                stop: threading.Event | None = None) -> dict[str, bool] | None:
    """Per task: does any action the policy could ever take solve it?

    No recombination of recorded actions can beat this. Only defined for
    policies with a finite repertoire (``pool``); others get no bound. It runs
    every pooled action once (the longest start-up step), so it reports its
    progress and gives up (None: not stored, computed by the next resume) on ``stop``.
    """
    pool_of = getattr(ctx.policy, "pool", None)
    if pool_of is None:
        return {}
    stage = "checking which tasks the replay pool can solve (the upper bound)"

    def solvable(task_id: str) -> bool:
        env = ctx.env()
        for action in pool_of(task_id):
            env.reset(ctx.tasks[task_id])
            env.step(action)
            if env.step("submit")[1] >= 1.0:
                return True
        return False

    found: dict[str, bool] = {}
    with ThreadPoolExecutor(concurrency) as ex:
        futures = {ex.submit(solvable, t): t for t in ctx.tasks}
        _stage(note, stage, done=0, total=len(futures))
        for fut in as_completed(futures):
            found[futures[fut]] = fut.result()
            _stage(note, stage, done=len(found), total=len(futures))
            if stop is not None and stop.is_set():
                for f in futures:
                    f.cancel()
                return None
    return {t: found[t] for t in ctx.tasks}


def _engine(c: Campaign, ctx: Context, store: Store, on_progress: Progress | None,
            stop: threading.Event | None) -> Runner:
    if store.get_meta("upper_bound") is None:
        bound = upper_bound(ctx, c.get("concurrency"), on_progress, stop)
        if bound is not None:
            store.put_meta("upper_bound", json.dumps(bound))
    ctx.search, ctx.fitness = build_signals(c, ctx, store)
    from evoagent.executors import make_executor

    executor = make_executor(c, ctx, lambda stage: _stage(on_progress, stage))  # threads: None
    _stage(on_progress, "planning and running the generations")
    return Runner(c, store, ctx, on_progress=on_progress, stop=stop, executor=executor)


def _prepare(c: Campaign, note: Progress | None) -> list[Task]:
    """Every check that needs data (tasks, policy), before anything is written."""
    _stage(note, "loading tasks")
    tasks = select_tasks(c)
    check_own_data(c, tasks, note)
    check_scale(c, len(tasks))
    check_policy(c)
    from evoagent.rewards.prm import check_unseen

    check_unseen(c, tasks)  # a learned model must not score the tasks whose gold it trained on
    if c.get("policy.batch") and c.get("policy.kind") == "anthropic" and c.get("concurrency") < 32 and note:
        note({"event": "note", "text": f"policy.batch = true with concurrency {c.get('concurrency')}: each "
              "batch holds at most that many requests and every round waits for its batch; "
              "raise concurrency (e.g. --set concurrency=64) for full batches"})
    return tasks


@contextlib.contextmanager
def _new_store(store_path: str) -> Iterator[DuckDBStore]:
    """Open the store of a new campaign. If this call created it and no campaign got
    committed into it (a failure before any work), remove what it created: nothing half-written."""
    paths = [Path(store_path), Path(f"{store_path}.wal"), snapshot_dir(store_path)]
    created = not any(p.exists() for p in paths)
    new_dirs = [d for d in Path(store_path).absolute().parents if not d.exists()]
    store = DuckDBStore(store_path)
    try:
        yield store
    except BaseException:
        try:
            keep = not created or store.get_meta("campaign") is not None
        except Exception:  # cannot tell: keep it
            keep = True
        store.close()
        if not keep:
            for path in paths:
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            for d in new_dirs:  # innermost first; only folders this call made, and only if empty
                with contextlib.suppress(OSError):
                    d.rmdir()
        raise
    store.close()


def start(c: Campaign, store_path: str, on_progress: Progress | None = None,
          stop: threading.Event | None = None) -> Outcome:
    """Run a new campaign into a new (or empty) store; every check runs before the store exists."""
    from evoagent.llm import LLM_POLICIES

    tasks = _prepare(c, on_progress)
    offline = c.get("policy.kind") not in LLM_POLICIES
    _stage(on_progress, "loading the policy")
    ctx = build_context(c, tasks) if offline else None  # e.g. replay's sources, checked before any file exists
    with _new_store(store_path) as store:
        if store.get_meta("campaign") is not None:
            raise UserError(f"store {store_path} already holds a campaign; "
                            f"continue it with: evoagent resume {store_path}")
        ctx = ctx or build_context(c, tasks, store)
        try:
            store.put_meta("campaign", c.to_json())
            store.put_meta("env_files", env_files(c))
            store.add_tasks(tasks)
            return _engine(c, ctx, store, on_progress, stop).run()
        finally:
            ctx.close()


def stored_campaign(store: Store, overrides: list[str] | tuple[str, ...] = ()) -> Campaign:
    text = store.get_meta("campaign")
    if text is None:
        raise UserError(f"store {store.path} holds no campaign; start one with: evoagent run FILE --store {store.path}")
    stored = Campaign.from_json(text)
    for o in overrides:
        path, _ = campaign_mod.parse_override(o)
        if not path.startswith(RESUMABLE):
            raise UserError(f"--set {path}: on resume only these can change: "
                            f"{', '.join(k + '*' if k.endswith('.') else k for k in RESUMABLE)}")
    doc: dict[str, Any] = {}
    for path, value in stored.values.items():
        if path == "policy.batch" and value == "auto":  # gone: batching was keyed on the terminal
            value = False
        node = doc
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return campaign_mod.build(doc, list(overrides), source="store")


def resume(store_path: str, overrides: list[str] | tuple[str, ...] = (),
           on_progress: Progress | None = None, stop: threading.Event | None = None) -> Outcome:
    """Continue the campaign stored at ``store_path`` from its journal."""
    with DuckDBStore(store_path) as store:
        c = stored_campaign(store, overrides)
        tasks = _prepare(c, on_progress)
        started = store.get_meta("env_files")
        if started is not None and started != env_files(c):
            raise UserError(f"the files of env.tasks/env.dump changed since the campaign started ({started}); "
                            "restore them, or start a new campaign on the new data")
        check_reward_models(c, store)  # every reward model is the one the campaign scored with
        _stage(on_progress, "loading the policy")
        ctx = build_context(c, tasks, store)
        store.add_tasks(tasks)  # idempotent: a run killed right after starting may lack them
        if overrides:
            store.put_meta("campaign", c.to_json())
        try:
            return _engine(c, ctx, store, on_progress, stop).run()
        finally:
            ctx.close()
