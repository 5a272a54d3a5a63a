"""Where a campaign's work items run (``executor.kind``): threads in the campaign's process, or Ray.

``thread`` (the default) is the runner's own ``ThreadPoolExecutor``. ``ray``
runs items on Ray actors that each hold their own environment and policy
(``evoagent.executors.ray``); the campaign's process stays the store's only
writer, so the journal, resume and the SQL views are the same either way.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor

from evoagent.campaign import Campaign
from evoagent.rollout import Context


def make_executor(c: Campaign, ctx: Context, note: Callable[[str], None] | None = None
                  ) -> Callable[[int], Executor] | None:
    """The runner's executor factory for ``executor.kind``: None for threads (the runner's default).

    For Ray, this connects (or starts a local instance) and starts the actors; ``ctx.close()``
    stops them and the Ray session, on every exit path.
    """
    if c.get("executor.kind") == "thread":
        return None
    from evoagent.executors.ray import start

    pool = start(c, ctx, note or (lambda stage: None))
    ctx.closers.insert(0, pool.close)  # before the scorers it serves close
    return pool.executor


__all__ = ["make_executor"]
