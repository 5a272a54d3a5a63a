"""Where a campaign's work items run (``executor.kind``): threads in the campaign's process, or Ray.

``thread`` (the default) is the runner's own ``ThreadPoolExecutor``. ``ray``
runs items on Ray actors that each hold their own environment and policy
(``evoagent.executors.ray``); the campaign's process stays the store's only
writer, so the journal, resume and the SQL views are the same either way.
Each is an executor part: ``fn(settings, ctx, note, run_item)`` returns the
runner's executor factory (None: the runner's threads). ``settings`` is its own
``registry.Settings`` (its keys and the engine's), like every part's. An executor
whose workers rebuild the campaign (Ray's actors build their own Context)
declares a ``campaign`` parameter and gets the stored campaign's JSON: it hands
it on to its workers without reading it (``build_context`` does). Its
``ray_address`` hook names the Ray session reward models placed on Ray join.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from evoagent.errors import UserError
from evoagent.registry import Key, Part


RunItem = Callable[..., Any]  # the runner's ``run_item(item, parents, ctx) -> ItemResult``


def make_executor(c: Any, ctx: Any, run: RunItem, note: Callable[[str], None] | None = None
                  ) -> Callable[[int], Executor] | None:
    """The runner's executor factory for ``executor.kind``: None for threads (the runner's default).

    ``run`` is the runner's own function for one item: an executor that holds its own contexts
    (Ray actors) runs exactly it, handed over here so that no executor imports the runner."""
    import inspect

    from evoagent import registry

    part = registry.get("executor", c.get("executor.kind"))
    extra = {"campaign": c.to_json()} if "campaign" in inspect.signature(part.fn).parameters else {}
    return part.fn(registry.settings_of(c, part), ctx, note or (lambda stage: None), run, **extra)


def _threads(s: Any, ctx: Any, note: Callable[[str], None], run: RunItem) -> None:
    return None


def _ray(s: Any, ctx: Any, note: Callable[[str], None], run: RunItem, campaign: str) -> Callable[[int], Executor]:
    """Connect (or start a local instance) and start the actors, which rebuild ``campaign`` (the
    stored JSON, not read here); ``ctx.close()`` stops them and the Ray session, on every exit path."""
    from evoagent.executors.ray import start

    pool = start(s, ctx, note, run, campaign)
    ctx.closers.insert(0, pool.close)  # before the scorers it serves close
    return pool.executor


def _ray_preflight(c: Any) -> None:
    """Ray installed, and a policy that needs no store (LLM calls go through the store's ledger)."""
    import importlib.util

    from evoagent.registry import policy_part

    if importlib.util.find_spec("ray") is None:
        raise UserError("key 'executor.kind': \"ray\" needs Ray: pip install -e '.[ray]'")
    if policy_part(c).needs_store:
        raise UserError(f"key 'executor.kind': \"ray\" runs offline policies only (replay), not "
                        f"{c.get('policy.kind')!r}: LLM calls go through the store's call ledger, in the "
                        "campaign's process")


THREAD = Part("executor", "thread", _threads, doc="threads in the campaign's process (concurrency of them)")
RAY = Part("executor", "ray", _ray, shared_keys={
    "executor.address": Key(str, "local", lambda x: x in ("local", "auto") or (x.startswith("ray://") and len(x) <= 300),
                            '"local" (a Ray instance on this machine), "auto" or ray://host:port'),
    "executor.actors": Key(int, 0, lambda x: 0 <= x <= 1024, "within 0..1024 (0 = concurrency, at most the cluster's CPUs)"),
    "executor.num_cpus": Key((int, float), 1, lambda x: 0 <= x <= 1024, "within 0..1024 (per actor)"),
    "executor.num_gpus": Key((int, float), 0, lambda x: 0 <= x <= 64, "within 0..64 (per actor)"),
    "executor.max_retries": Key(int, 3, lambda x: 0 <= x <= 100, "within 0..100 (tries of an item whose actor died)"),
}, preflight=_ray_preflight, ray_address=lambda s: s["executor.address"],
   doc="Ray actors, each with its own environment and policy (pip install -e '.[ray]')")

__all__ = ["make_executor"]
