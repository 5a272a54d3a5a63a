"""Starting, resuming and inspecting a campaign stored in one store file.

The campaign's validated settings are committed to the store before any work,
so ``resume`` needs only the store path; it may change budgets and
concurrency (``--set``), never what would change the results.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from evoagent import campaign as campaign_mod
from evoagent.campaign import Campaign
from evoagent.envs import environment, policy_part, select_tasks
from evoagent.errors import UserError
from evoagent.loop import Outcome, Runner, run_item
from evoagent.registry import settings_of
from evoagent.rewards import build_signals
from evoagent.rewards.identity import check_resume as check_reward_models
from evoagent.rollout import Context, build_context
from evoagent.trajectory import Task
from stores import DuckDBStore, Store
from stores.snapshot import snapshot_dir

Progress = Callable[[dict[str, Any]], None]  # the CLI's printer: stages, items, committed generations

def env_files(c: Campaign) -> str:
    """Content hashes of the campaign's own data files (its environment's path keys and ``files``):
    a resume must run on the same data."""
    import hashlib

    env = environment(c)
    paths = {k: c.get(k) for k, key in env.keys.items() if key.path and c.get(k)}
    for i, extra in enumerate(env.files(settings_of(c, env)) if env.files is not None else ()):
        paths[f"files.{i}"] = extra
    return json.dumps({k: hashlib.sha256(Path(p).read_bytes()).hexdigest()[:16] for k, p in paths.items()},
                      sort_keys=True)


def check_parts(c: Campaign) -> None:
    """Fail before any work when a part cannot run (no key, no URL, no model, no Ray)."""
    from evoagent import registry

    policy = policy_part(c)
    if policy.check is not None:
        policy.check(settings_of(c, policy))
    for name in dict.fromkeys((c.get("search.reward"), c.get("fitness.reward"))):
        part = registry.get("reward", name)
        if part.preflight is not None:
            part.preflight(c)


def check_scale(c: Campaign, n_tasks: int) -> None:
    """Refuse a campaign whose generations would not fit in memory (all items are planned at once)."""
    from evoagent import registry

    per_task = getattr(registry.get("strategy", c.get("strategy.kind")).fn, "items_per_task", lambda c: 1)(c)
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

    executor = make_executor(c, ctx, run_item, lambda stage: _stage(on_progress, stage))  # threads: None
    _stage(on_progress, "planning and running the generations")
    return Runner(c, store, ctx, on_progress=on_progress, stop=stop, executor=executor)


def _prepare(c: Campaign, note: Progress | None) -> list[Task]:
    """Every check that needs data (tasks, policy), before anything is written."""
    if c.dropped and note is not None:
        note({"event": "note", "text": f"not used by this campaign's parts, so ignored: {', '.join(c.dropped)}"})
    _stage(note, "loading tasks")
    tasks = select_tasks(c)
    env = environment(c)
    if env.check is not None:
        env.check(settings_of(c, env), tasks, note)
    check_scale(c, len(tasks))
    check_parts(c)
    from evoagent.rewards.prm import check_unseen

    check_unseen(c, tasks)  # a learned model must not score the tasks whose gold it trained on
    if c.get("policy.batch", False) and c.get("concurrency") < 32 and note:
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
    tasks = _prepare(c, on_progress)
    offline = not policy_part(c).needs_store
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
    """The campaign ``store`` holds, validated again (``campaign.load_stored``)."""
    text = store.get_meta("campaign")
    if text is None:
        raise UserError(f"store {store.path} holds no campaign; start one with: evoagent run FILE --store {store.path}")
    return campaign_mod.load_stored(text, overrides)


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
