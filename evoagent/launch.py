"""Starting, resuming and inspecting a campaign stored in one store file.

The campaign's validated settings are committed to the store before any work,
so ``resume`` needs only the store path; it may change budgets and
concurrency (``--set``), never what would change the results.
"""
from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from evoagent import campaign as campaign_mod
from evoagent.campaign import Campaign
from evoagent.envs import make_env
from evoagent.errors import UserError
from evoagent.loop import Engine, Outcome
from evoagent.policies import make_policy
from evoagent.rollout import Context
from evoagent.trajectory import Task
from stores import DuckDBStore, Store

# Keys that may change on resume: they change how the work runs, never its results.
RESUMABLE = ("budget.", "concurrency", "policy.base_url", "policy.batch", "policy.max_in_flight",
             "policy.processes", "policy.tokens_per_minute", "policy.max_attempts", "policy.retry_base_s",
             "policy.timeout_s")


def select_tasks(c: Campaign) -> list[Task]:
    """The campaign's tasks: filters first, then a seeded sample."""
    from evoagent.envs.intercode_sql.data import load_tasks

    tasks = load_tasks()
    if c.get("tasks.ids"):
        by_id = {t.task_id: t for t in tasks}
        missing = [i for i in c.get("tasks.ids") if i not in by_id]
        if missing:
            raise UserError(f"key 'tasks.ids': unknown task {missing[0]!r}")
        tasks = [by_id[i] for i in dict.fromkeys(c.get("tasks.ids"))]
    if c.get("tasks.hardness"):
        tasks = [t for t in tasks if t.hardness in c.get("tasks.hardness")]
    if c.get("tasks.dbs"):
        known = {t.db for t in load_tasks()}
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


def build_context(c: Campaign, tasks: list[Task], store: Store | None = None) -> Context:
    """Tasks, policy (and for LLM policies: advisor and budget over the store's ledger), environment."""
    from evoagent.llm import LLM_POLICIES

    advisor = budget = None
    closers: list[Any] = []
    if c.get("policy.kind") in LLM_POLICIES:
        if store is None:
            raise UserError(f"policy {c.get('policy.kind')!r} needs a store for its call ledger")
        from evoagent import llm

        policy, advisor, budget, closers = llm.build(c, store)
    else:
        policy = make_policy(c.get("policy.kind"), sources=c.get("policy.sources"),
                             explore=c.get("policy.explore"))
    kind, dialect, timeout = c.get("env.kind"), c.get("env.dialect"), c.get("env.timeout_s")
    return Context(tasks={t.task_id: t for t in tasks}, policy=policy,
                   make_env=lambda: make_env(kind, dialect=dialect, timeout_s=timeout),
                   max_steps=c.get("env.max_steps"), advisor=advisor, budget=budget, closers=closers)


def upper_bound(ctx: Context, concurrency: int) -> dict[str, bool]:
    """Per task: does any action the policy could ever take solve it?

    No recombination of recorded actions can beat this. Only defined for
    policies with a finite repertoire (``pool``); others get no bound.
    """
    pool_of = getattr(ctx.policy, "pool", None)
    if pool_of is None:
        return {}

    def solvable(task_id: str) -> bool:
        env = ctx.env()
        for action in pool_of(task_id):
            env.reset(ctx.tasks[task_id])
            env.step(action)
            if env.step("submit")[1] >= 1.0:
                return True
        return False

    with ThreadPoolExecutor(concurrency) as ex:
        return dict(zip(ctx.tasks, ex.map(solvable, list(ctx.tasks))))


def _engine(c: Campaign, ctx: Context, store: Store,
            on_progress: Callable[[dict[str, Any]], None] | None, stop: threading.Event | None) -> Engine:
    if store.get_meta("upper_bound") is None:
        store.put_meta("upper_bound", json.dumps(upper_bound(ctx, c.get("concurrency"))))
    return Engine(c, store, ctx, on_progress=on_progress, stop=stop)


def start(c: Campaign, store_path: str, on_progress: Callable[[dict[str, Any]], None] | None = None,
          stop: threading.Event | None = None) -> Outcome:
    """Run a new campaign into a new (or empty) store."""
    tasks = select_tasks(c)  # validate everything before the first write
    check_policy(c)
    with DuckDBStore(store_path) as store:
        if store.get_meta("campaign") is not None:
            raise UserError(f"store {store_path} already holds a campaign; "
                            f"continue it with: evoagent resume {store_path}")
        ctx = build_context(c, tasks, store)
        store.put_meta("campaign", c.to_json())
        store.add_tasks(tasks)
        try:
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
        node = doc
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return campaign_mod.build(doc, list(overrides), source="store")


def resume(store_path: str, overrides: list[str] | tuple[str, ...] = (),
           on_progress: Callable[[dict[str, Any]], None] | None = None,
           stop: threading.Event | None = None) -> Outcome:
    """Continue the campaign stored at ``store_path`` from its journal."""
    with DuckDBStore(store_path) as store:
        c = stored_campaign(store, overrides)
        tasks = select_tasks(c)
        check_policy(c)
        ctx = build_context(c, tasks, store)
        store.add_tasks(tasks)  # idempotent: a run killed right after starting may lack them
        if overrides:
            store.put_meta("campaign", c.to_json())
        try:
            return _engine(c, ctx, store, on_progress, stop).run()
        finally:
            ctx.close()
