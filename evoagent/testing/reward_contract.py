"""The reward-model contract: what the scorer, the store cache and resume rely on.

Call it from your plug-in's tests; every built-in reward model runs it in
``tests/test_contracts.py``::

    from evoagent.testing.reward_contract import check_reward_model, queries_of

    def test_my_reward_model_keeps_the_contract():
        runs = [...]  # a few trajectories, e.g. from your policy in your environment
        check_reward_model(lambda tasks: MyModel(tasks), tasks, queries_of(runs), uses_gold=False)

``make_model(tasks)`` builds the model over a task table (a dict by task id), as
the campaign builds it. Each check raises ``AssertionError`` naming what broke:

- **bounded outputs**: one ``Score`` per query, finite values within
  ``value_range``, non-negative integer ``env_steps``; ``source`` a non-empty string;
- **determinism**: the same query gets the same value in any batch, in any
  order, alone, and from a fresh instance (the ``rewards`` table caches values
  by query and source: a value that depended on its batch or on the process
  would make a resume disagree with the run it continues);
- **uses_gold honesty**: a model declaring ``uses_gold = False`` gives the
  same values on tasks whose gold answer is blanked or replaced (such a model
  drives searches that must not see gold); with ``uses_gold = True`` the
  check is skipped (an oracle may read it);
- **totality**: prefixes of hostile actions, never executed (no
  observations), are scored, not refused with an exception.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from evoagent.rewards.base import Query, RewardModel, Score
from evoagent.rewards.signal import queries
from evoagent.testing.env_contract import HOSTILE_ACTIONS
from evoagent.trajectory import Task, Trajectory

__all__ = ["check_reward_model", "hostile_queries", "prefixes", "queries_of"]

POISONS = ("", "POISONED GOLD 4f1c")


def queries_of(runs: Sequence[Trajectory]) -> list[Query]:
    """Every step query of ``runs`` (each step's prefix, with what the environment observed)."""
    return [q for run in runs for q in queries(run)]


def prefixes(task_id: str, actions: Sequence[str]) -> list[Query]:
    """Every prefix of ``actions`` as a query never executed (no observations), the last one terminal."""
    n = len(actions)
    return [Query(task_id, tuple(actions[: i + 1]), terminal=i == n - 1) for i in range(n)]


def hostile_queries(tasks: Sequence[Task]) -> list[Query]:
    """Prefixes of hostile actions, never executed: a model scores them (e.g. a judge's prompt)."""
    out = []
    for task in tasks:
        for n in (1, 2, 4):
            actions = tuple(HOSTILE_ACTIONS[i * 3 % len(HOSTILE_ACTIONS)][:2000] for i in range(n))
            out.append(Query(task.task_id, actions))
            out.append(Query(task.task_id, actions, terminal=True))
    return out


def _values(model: RewardModel, batch: Sequence[Query], value_range: tuple[float, float]) -> list[float]:
    try:
        scores = model.score(list(batch))
    except Exception as exc:
        raise AssertionError(f"{model.source}: score() of {len(batch)} queries raised {exc!r}") from exc
    assert isinstance(scores, list) and len(scores) == len(batch), (
        f"{model.source}: {len(scores) if isinstance(scores, list) else scores!r} scores for {len(batch)} queries")
    lo, hi = value_range
    for q, s in zip(batch, scores):
        where = f"{model.source}: {q.task_id!r} step {q.step_idx}"
        assert isinstance(s, Score), f"{where}: {type(s).__name__}, not Score"
        assert isinstance(s.value, (int, float)) and math.isfinite(s.value), f"{where}: value {s.value!r}"
        assert lo <= s.value <= hi, f"{where}: value {s.value} outside [{lo}, {hi}]"
        assert isinstance(s.env_steps, int) and s.env_steps >= 0, f"{where}: env_steps {s.env_steps!r}"
    return [float(s.value) for s in scores]


def check_reward_model(make_model: Callable[[Mapping[str, Task]], RewardModel], tasks: Sequence[Task],
                       batch: Sequence[Query], *, uses_gold: bool | None = None,
                       value_range: tuple[float, float] = (-1e9, 1e9), hostile: bool = True) -> None:
    """Run every check of the module docstring; ``uses_gold``: what the part declares (default: the model's)."""
    table = {t.task_id: t for t in tasks}
    batch = list(batch) + (hostile_queries(tasks) if hostile else [])
    assert batch, "check_reward_model needs queries"
    model = make_model(table)
    try:
        assert isinstance(model.source, str) and model.source, "a reward model needs a non-empty source"
        declared = model.uses_gold if uses_gold is None else uses_gold
        assert model.uses_gold == declared, (
            f"{model.source}: the model says uses_gold={model.uses_gold}, its part declares {declared}")
        want = _values(model, batch, value_range)
        assert _values(model, batch[::-1], value_range)[::-1] == want, f"{model.source}: values depend on batch order"
        for i in sorted({0, len(batch) // 2, len(batch) - 1}):
            assert _values(model, [batch[i]], value_range) == [want[i]], (
                f"{model.source}: {batch[i].task_id!r} step {batch[i].step_idx} scores differently alone")
        source = model.source
    finally:
        model.close()
    if declared:  # (a gold-free model's poisoned runs below are fresh instances too)
        _same(make_model(table), batch, want, value_range, "a fresh instance")
    else:
        for gold in POISONS:
            poisoned = {k: replace(t, gold=gold) for k, t in table.items()}
            _same(make_model(poisoned), batch, want, value_range, f"gold set to {gold!r} (it declares uses_gold=False)",
                  source)


def _same(model: RewardModel, batch: list[Query], want: list[float], value_range: tuple[float, float],
          what: str, source: str | None = None) -> None:
    try:
        got = _values(model, batch, value_range)
        if source is not None:
            assert model.source == source, f"{model.source}: source changed with {what}"
    finally:
        model.close()
    diff = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
    assert not diff, (f"{model.source}: {len(diff)} of {len(want)} values differ with {what}, e.g. "
                      f"{batch[diff[0]].task_id!r} step {batch[diff[0]].step_idx}: {got[diff[0]]} vs {want[diff[0]]}")
