"""Running a campaign with a context built by hand: what tests and measuring scripts share.

``launch.start`` builds its own context; a script that compares two runs of one campaign
(with and without environment restore, one shared policy between runs) builds the context
itself and runs it here, the same way every time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from evoagent.campaign import Campaign
from evoagent.loop import Outcome, Runner
from evoagent.rewards import build_signals
from evoagent.rollout import Context
from stores import DuckDBStore


class WithoutRestore:
    """An environment with its ``snapshot``/``restore`` hidden: what ``rollout`` falls back on
    (re-executing a prefix) for environments that are not ``Restorable``."""

    def __init__(self, inner: Any):
        self.inner, self.name = inner, inner.name

    def reset(self, task: Any) -> str:
        return self.inner.reset(task)

    def step(self, action: str) -> tuple:
        return self.inner.step(action)

    def submit(self) -> float:
        return self.inner.submit()

    def close(self) -> None:
        self.inner.close()


def without_restore(ctx: Context) -> Context:
    """Make ``ctx`` hand out environments without snapshot/restore (its threads' cached ones dropped)."""
    inner = ctx.make_env
    ctx.make_env = lambda: WithoutRestore(inner())
    ctx._local.__dict__.clear()
    return ctx


def run_in_new_store(c: Campaign, ctx: Context, path: str | Path,
                     read: Callable[[DuckDBStore], Any] | None = None, **runner: Any) -> tuple[Outcome, Any]:
    """Run ``c`` on ``ctx`` into a new store at ``path`` (``launch.start`` without its start-up checks),
    close ``ctx``, and return the outcome with ``read(store)`` taken before the store closes."""
    with DuckDBStore(path) as store:
        store.put_meta("campaign", c.to_json())
        store.add_tasks(list(ctx.tasks.values()))
        store.put_meta("upper_bound", "{}")
        ctx.search, ctx.fitness = build_signals(c, ctx, store)
        try:
            out = Runner(c, store, ctx, **runner).run()
        finally:
            ctx.close()
        return out, (read(store) if read else None)


def search_rows(store: DuckDBStore) -> dict[str, list]:
    """Every row a search writes, in a fixed order (for "the same run" comparisons): candidates,
    simulations, steps and the population."""
    rows = {name: store.query(f"SELECT * EXCLUDE (created_at) FROM {name} ORDER BY ALL").to_pylist()
            for name in ("candidates", "simulations")}
    rows["steps"] = store.query("SELECT traj_id, idx, action, observation, reward FROM steps "
                                "ORDER BY ALL").to_pylist()
    rows["population"] = store.query("SELECT generation, task_id, traj_id, rank FROM population "
                                     "ORDER BY ALL").to_pylist()
    return rows
