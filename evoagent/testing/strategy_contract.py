"""The strategy contract: a strategy plans and closes rounds from committed facts only.

Call it from your plug-in's tests with a small campaign that uses your
strategy; every built-in strategy runs it in ``tests/test_contracts.py``::

    from evoagent.testing.strategy_contract import check_strategy

    def test_my_strategy_keeps_the_contract(tmp_path):
        check_strategy({"name": "t", "strategy": {"kind": "mine"}, ...}, tmp_path)

It runs the campaign through the real runner (``evoagent.launch``) into
DuckDB stores under ``folder``. Each check raises ``AssertionError``:

- **determinism and resumability**: a run stopped right after its first plan
  is journaled (the runner's stop, as Ctrl-C does), resumed and stopped again
  at its first commit, then resumed to the end, each time in a new runner,
  gives the population of an uninterrupted run, round by round, row for row
  (a strategy that kept state in memory, or depended on timing, would not);
- **bounded outputs**: every committed round's population ranks each task's
  members 0, 1, 2, ... without gaps, every member is a committed trajectory of
  its task, and the rounds are those the strategy announced (0 ..
  ``last_round()``).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stores import SnapshotStore

__all__ = ["check_strategy", "population"]


def population(store_path: str | Path) -> list[tuple[Any, ...]]:
    """Every committed round's members: (generation, task_id, traj_id, rank), sorted."""
    s = SnapshotStore(store_path)
    try:
        return [tuple(r.values()) for r in s.query(
            "SELECT generation, task_id, traj_id, rank FROM population ORDER BY ALL").to_pylist()]
    finally:
        s.close()


def _bounded(store_path: Path, rounds: int) -> None:
    s = SnapshotStore(store_path)
    try:
        gens = [r["generation"] for r in s.query(
            "SELECT generation FROM generations WHERE status = 'committed' ORDER BY 1").to_pylist()]
        assert gens == list(range(rounds)), f"committed rounds {gens}, the strategy announced 0..{rounds - 1}"
        gaps = s.query("SELECT generation, task_id FROM population GROUP BY ALL "
                       "HAVING list_sort(list(rank)) <> range(count(*)::BIGINT)").to_pylist()
        assert not gaps, f"ranks with gaps or repeats: {gaps[:3]}"
        strays = s.query("SELECT p.generation, p.task_id, p.traj_id FROM population p LEFT JOIN trajectories t "
                         "ON t.traj_id = p.traj_id AND t.task_id = p.task_id WHERE t.traj_id IS NULL").to_pylist()
        assert not strays, f"members that are no committed trajectory of their task: {strays[:3]}"
    finally:
        s.close()


def check_strategy(doc: Mapping[str, Any], folder: str | Path, overrides: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    """Run every check of the module docstring on the campaign ``doc``; returns its population."""
    from evoagent import api

    folder = Path(folder)
    whole = folder / "whole.duckdb"
    outcome = api.run(api.make_campaign(doc, overrides), whole)
    assert outcome.status == "completed", f"the uninterrupted run: {outcome.status}"
    want = population(whole)
    assert want, "the campaign committed no population"
    _bounded(whole, 1 + max(r[0] for r in want))

    stopped = folder / "stopped.duckdb"
    stop, note = _stopper(lambda i: i.get("event") == "stage" and str(i.get("stage", "")).startswith("planning"))
    first = api.run(api.make_campaign(doc, overrides), stopped, on_progress=note, stop=stop)
    assert first.status.startswith("stopped"), f"a run stopped before its first item: {first.status}"
    stop, note = _stopper(lambda i: i.get("event") in ("items", "generation"))
    second = api.resume(stopped, on_progress=note, stop=stop)
    final = api.resume(stopped)
    assert final.status == "completed", f"the last resume: {final.status}"
    assert population(stopped) == want, (
        f"stopped (at the first plan, then {second.status} at the first commit) and resumed, the population "
        "differs from the uninterrupted run's")
    return want


def _stopper(when: Callable[[dict[str, Any]], bool]) -> tuple[threading.Event, Callable[[dict[str, Any]], None]]:
    """A stop event and a progress callback that sets it at the first event ``when`` accepts (as Ctrl-C would)."""
    stop = threading.Event()

    def on_progress(info: dict[str, Any]) -> None:
        if when(info):
            stop.set()

    return stop, on_progress
