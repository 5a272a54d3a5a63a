"""The operator contract: what the runner and resume rely on from every variation operator.

Call it from your plug-in's tests; every built-in operator runs it in
``tests/test_contracts.py``::

    from evoagent.testing.operator_contract import check_operator

    def test_my_operator_keeps_the_contract():
        check_operator("my_op", make_context, tasks, parents)

The operator runs exactly as in a campaign: ``evoagent.loop.run_item`` on a
``WorkItem`` (its registered arity decides what it gets: a task, a parent, or
two parents of one task). ``make_context(tasks)`` builds a fresh
``evoagent.rollout.Context`` over a task table (a dict by id), as a resumed
campaign does in a new process. Each check raises ``AssertionError``:

- **totality**: no item fails (``ItemResult.error``), parents with hostile
  actions included: an operator bug would otherwise cost a campaign its items;
- **bounded outputs**: the child is on the item's task, has at most
  ``max_steps`` steps, finite rewards; ``env_steps`` is a non-negative integer;
- **determinism under the item's seed**: the same item gives the same child
  (actions, observations, rewards), candidates and simulations, again and in
  a fresh context: a resume re-runs unfinished items and must get what the
  interrupted run would have;
- **gold honesty**: when the context's search signal declares
  ``uses_gold = False``, the child's actions are the same with every task's
  gold answer blanked or replaced (a gold-free search must not find gold elsewhere).
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from evoagent import registry
from evoagent.rollout import Context
from evoagent.testing.env_contract import HOSTILE_ACTIONS
from evoagent.trajectory import Step, Task, Trajectory
from stores.base import ItemResult, WorkItem

__all__ = ["check_operator", "hostile_parent", "items_for"]


def hostile_parent(task_id: str, n: int = 4) -> Trajectory:
    """A parent whose actions are hostile texts (as a recorded or imported run may hold)."""
    steps = tuple(Step(i, HOSTILE_ACTIONS[(i * 5 + 1) % len(HOSTILE_ACTIONS)][:5000], "\x1b[31m?", 0.0, valid=False)
                  for i in range(n))
    return Trajectory(task_id, steps, 0.0, "contract")


def items_for(operator: str, tasks: Sequence[Task], parents: Sequence[Trajectory], seed: int = 0,
              args: Mapping[str, Any] | None = None) -> list[tuple[WorkItem, list[Trajectory]]]:
    """Work items for ``operator`` by its arity: one per task, per parent, or per pair of a task's parents."""
    import json

    part = registry.get("operator", operator)
    rng = random.Random(seed)
    groups: list[list[Trajectory]]
    if part.arity == 0:
        groups = [[] for _ in tasks]
    elif part.arity == 1:
        groups = [[p] for p in parents]
    else:
        by_task: dict[str, list[Trajectory]] = {}
        for p in parents:
            by_task.setdefault(p.task_id, []).append(p)
        groups = [ps[:2] for ps in by_task.values() if len(ps) >= 2]
    task_of = [t.task_id for t in tasks] if part.arity == 0 else [g[0].task_id for g in groups]
    text = json.dumps(dict(args)) if args else ""
    return [(WorkItem(1, i, operator, task_id, tuple(p.traj_id for p in group), rng.getrandbits(63), text), group)
            for i, (task_id, group) in enumerate(zip(task_of, groups))]


def _fingerprint(result: ItemResult) -> tuple[Any, ...]:
    child = result.trajectory
    steps = tuple((s.action, s.observation, s.reward, s.valid, s.process_reward) for s in child.steps)  # type: ignore[union-attr]
    # env_steps is left out: it counts scoring too, which a warm reward cache skips
    return (child.task_id, steps, child.outcome_reward,  # type: ignore[union-attr]
            result.candidates, result.simulations, result.rewards)


def _run(item: WorkItem, parents: list[Trajectory], ctx: Context, max_steps: int) -> ItemResult:
    from evoagent.loop import run_item

    result = run_item(item, parents, ctx)
    where = f"operator {item.operator!r}, item {item.item_id} on {item.task_id!r}"
    assert result.error is None, f"{where}: failed: {result.error}"
    child = result.trajectory
    assert child is not None and child.task_id == item.task_id, f"{where}: child is not on the item's task"
    assert len(child.steps) <= max_steps, f"{where}: {len(child.steps)} steps (at most {max_steps})"
    assert math.isfinite(child.outcome_reward), f"{where}: outcome {child.outcome_reward!r}"
    assert all(s.reward is None or math.isfinite(s.reward) for s in child.steps), f"{where}: a step reward is not finite"
    assert isinstance(result.env_steps, int) and result.env_steps >= 0, f"{where}: env_steps {result.env_steps!r}"
    return result


def check_operator(operator: str, make_context: Callable[[Mapping[str, Task]], Context], tasks: Sequence[Task],
                   parents: Sequence[Trajectory] = (), *, seed: int = 0, args: Mapping[str, Any] | None = None,
                   hostile: bool = True) -> None:
    """Run every check of the module docstring; ``parents``: trajectories on ``tasks`` (arity 1 and more)."""
    table = {t.task_id: t for t in tasks}
    pool = list(parents) + ([hostile_parent(t.task_id) for t in tasks] if hostile else [])
    work = items_for(operator, tasks, pool, seed, args)
    assert work, f"operator {operator!r}: no work item could be made from {len(tasks)} tasks and {len(pool)} parents"
    ctx = make_context(table)
    try:
        max_steps = ctx.max_steps
        first = [_fingerprint(_run(item, ps, ctx, max_steps)) for item, ps in work]
        again = [_fingerprint(_run(item, ps, ctx, max_steps)) for item, ps in work]
    finally:
        ctx.close()
    for (item, _), a, b in zip(work, first, again):
        assert a == b, f"operator {operator!r}: item {item.item_id} gives another child the second time"
    fresh = make_context(table)
    try:
        for (item, ps), want in zip(work, first):
            assert _fingerprint(_run(item, ps, fresh, max_steps)) == want, (
                f"operator {operator!r}: item {item.item_id} gives another child in a fresh context (a resume would differ)")
        gold_free = fresh.search is not None and not fresh.search.scorer.model.uses_gold
    finally:
        fresh.close()
    if not gold_free:
        return
    for gold in ("", "POISONED GOLD 4f1c"):
        poisoned = make_context({k: replace(t, gold=gold) for k, t in table.items()})
        try:
            for (item, ps), want in zip(work, first):
                got = _run(item, ps, poisoned, max_steps).trajectory
                assert got is not None and tuple(s.action for s in got.steps) == tuple(s[0] for s in want[1]), (
                    f"operator {operator!r}: item {item.item_id}'s actions change with the gold answer "
                    f"under a search signal that declares uses_gold=False")
        finally:
            poisoned.close()
