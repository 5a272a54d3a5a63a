"""Strategies of one round: ``n`` items per task with one operator, results ranked by fitness.

    round 0: n items per task, operator op, seed derived from (campaign seed, 0, item)
    close:   each task's distinct results, best first by ``fitness.reward`` (then fewer steps, id)

- ``rro``: ``strategy.rro.n`` trajectories per task (default 1), each built by the
  ``rro`` operator (``operators.rro.*``): data collection with RRO's step search.
- ``ipr``: the same with the ``ipr`` operator (``operators.ipr.k`` candidates a step).
- both, with ``strategy.<kind>.executions_per_task = B`` (> 0): a budget per task instead of a
  count. The round runs in waves, one trajectory per task each (item ids, hence seeds, in wave
  order); after a wave a task gets another trajectory while ``used + mean / 2 < B`` (``used``: the
  environment executions of its trajectories so far, scoring included; ``mean``: their mean), i.e.
  while one more is expected to end nearer B than stopping now, and at most ``n`` in all. The
  waves are ``extend`` calls: decided from committed results only, so a resume plans the same.
- ``best_of_n``: ``strategy.best_of_n.n`` rollouts of ``sample`` per task (default 8);
  the answer is the rank-0 member, i.e. the best ``fitness.reward`` trajectory score.
  It picks with a reward model, not gold: a ``fitness.reward`` whose values derive
  from gold (``env``, and every model registered with ``uses_gold``: ``oracle``,
  ``mc``'s outcome checker, an environment's exact solver) is refused unless the campaign
  sets ``strategy.best_of_n.allow_gold = true``, and then the pick sees gold (an
  oracle pick, an upper bound). ``prm``, ``http``, ``judge`` and ``recorded`` never read gold.

Members, ranking and statistics are the evolution strategy's (success: each task's
rank-0 member judged by gold afterwards), so ``generations``, ``status`` and the
report read these campaigns unchanged. ``mu``, ``lambda`` are not read;
Each runs one round (round 0); ``budget.generations`` is evolution's key, not theirs.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

from evoagent import evolution as evo
from evoagent import registry
from evoagent.strategies.base import Closed, Strategy
from evoagent.strategies.ranked import RANKING_KEYS, Ranked
from stores.base import WorkItem

__all__ = ["IPR", "RRO", "BestOfN", "PerTask", "goes_on"]


def _n(default: int) -> registry.Key:
    return registry.Key(int, default, lambda x: 1 <= x <= 1000, "within 1..1000")


def goes_on(finished: int, used: int, planned: int, most: int, budget: int) -> bool:
    """Whether a task that spent ``used`` executions on ``finished`` trajectories (``planned`` so
    far, at most ``most``) gets another under a budget of ``budget`` per task: while one more is
    expected (at their mean cost) to end nearer the budget than stopping now."""
    return 0 < finished and planned < most and used + used / (2 * finished) < budget


class PerTask(Strategy):
    """``n`` items of one operator per task, one round; see the module docstring."""

    name = ""  # the strategy's registered name (its ``strategy.<name>.n`` key)
    operator = ""
    budgeted = False  # has ``strategy.<name>.executions_per_task`` (rro, ipr)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.seed = self.own["seed"]
        self.ranked = Ranked(self.own, self.store, self.task_ids, self.fitness_source)

    @classmethod
    def check_campaign(cls, values: dict[str, Any]) -> tuple[str, str] | None:
        """This strategy's campaign check (``evoagent.campaign.build`` calls it): (key, problem) or None."""
        return None

    @classmethod
    def items_per_task(cls, c: Any) -> int:
        return int(c.get(f"strategy.{cls.name}.n"))

    def last_round(self) -> int:
        return 0

    def _per_task_budget(self) -> int:
        return int(self.own["executions_per_task"]) if self.budgeted else 0

    def _item(self, round_: int, item_id: int, task_id: str) -> WorkItem:
        return WorkItem(round_, item_id, self.operator, task_id, (), evo.derive_seed(self.seed, round_, item_id))

    def plan(self, round_: int) -> list[WorkItem]:
        n = 1 if self._per_task_budget() else self.own["n"]  # under a budget: the first wave
        pairs = [(task_id, j) for task_id in self.task_ids for j in range(n)]
        return [self._item(round_, i, task_id) for i, (task_id, _) in enumerate(pairs)]

    def extend(self, round_: int, items: list[WorkItem]) -> list[WorkItem]:
        """Under ``executions_per_task``: the next wave (see the module docstring); else none
        (n items per task, distinct or not: no fill-up)."""
        budget = self._per_task_budget()
        if not budget:
            return []
        used = self.store.round_task_env_steps(round_)
        planned = Counter(i.task_id for i in items)
        next_id = max((i.item_id for i in items), default=-1) + 1
        wave = [t for t in self.task_ids if goes_on(*used.get(t, (0, 0)), planned[t], self.own["n"], budget)]
        return [self._item(round_, next_id + k, task_id) for k, task_id in enumerate(wave)]

    def close(self, round_: int) -> Closed:
        results = self.store.round_results(round_)
        found = self.ranked.members([traj_id for _, _, traj_id in results])
        pop: dict[str, list[evo.Member]] = {t: [] for t in self.task_ids}
        for _, task_id, traj_id in results:
            if all(m.traj_id != traj_id for m in pop[task_id]):
                pop[task_id].append(found[traj_id])
        pop = self.ranked.picked({t: evo.ranked(ms) for t, ms in pop.items()})
        return Closed(self.ranked.rows(pop), self.ranked.stats(round_, pop, len(results)))

    def hall_of_fame(self) -> Any:
        return self.ranked.hof


class RRO(PerTask):
    """RRO trajectories (data collection): ``strategy.rro.n`` per task."""

    name, operator, budgeted = "rro", "rro", True


class IPR(PerTask):
    """IPR trajectories (the fixed-budget baseline): ``strategy.ipr.n`` per task."""

    name, operator, budgeted = "ipr", "ipr", True


class BestOfN(PerTask):
    """N ``sample`` rollouts per task; the best by the fitness reward model is the answer."""

    name, operator = "best_of_n", "sample"

    @staticmethod
    def refuses_gold_fitness(values: dict[str, Any]) -> bool:
        """Whether its pick must not see gold (a reward model trained on these tasks included)."""
        return not values["strategy.best_of_n.allow_gold"]

    @classmethod
    def check_campaign(cls, values: dict[str, Any]) -> tuple[str, str] | None:
        reward = values["fitness.reward"]
        if registry.get("reward", reward).uses_gold and cls.refuses_gold_fitness(values):
            return "fitness.reward", (f"best_of_n picks with a reward model, not gold, and {reward!r} reads gold: "
                                      "set one that does not (e.g. prm, http, judge), or "
                                      "strategy.best_of_n.allow_gold = true for a pick that sees gold")
        return super().check_campaign(values)


# -- how ``evoagent bench search`` runs them at a budget of B executions per task -------------------
IPR_K = 5  # IPR's candidates a step in the benchmark (``operators.ipr.k``; RRO's cap too)
MAX_BENCH_TRAJECTORIES = 100  # a step search's trajectories per task at most (each costs >= 1 execution)


def _rollouts(name: str, n: int) -> list[str]:
    """``n`` rollouts per task; the pick may see gold (oracle, mc): such a row is named by its reward model."""
    return [f"strategy.kind={name}", f"strategy.{name}.n={n}", "budget.generations=0", f"strategy.{name}.allow_gold=true"]


def _step_search(name: str) -> Any:
    """Trajectories per task until B executions (``executions_per_task``), at most min(B, 100)."""
    def settings(b: registry.BenchBudget) -> list[str]:
        return [f"strategy.kind={name}", f"strategy.{name}.n={min(b.budget, MAX_BENCH_TRAJECTORIES)}",
                f"strategy.{name}.executions_per_task={b.budget}", "budget.generations=0", f"operators.ipr.k={IPR_K}"]
    return settings


_BEST = "best_of_n"
BENCH_BEST_OF_N = (
    registry.BenchMethod("reference", lambda b: _rollouts(_BEST, b.budget), scored=False, reference=True, order=0,
                         doc="B rollouts per task (B = 8): the rollout's cost, and the tasks every rollout solves"),
    registry.BenchMethod("sample", lambda b: _rollouts(_BEST, 1), scored=False, order=1,
                         doc="one rollout: nothing is picked"),
    registry.BenchMethod(_BEST, lambda b: _rollouts(_BEST, max(1, math.floor(b.budget / b.per_rollout))),
                         random_pick=True, against=("sample",), order=2,
                         doc="floor(B / (L + s)) rollouts, the best by the reward model"),
)
_EXECUTIONS = registry.Key(int, 0, lambda x: 0 <= x <= 10**9, "within 0..10^9 (0 = off: n trajectories)")
_PER_TASK_BUDGET = "trajectories until B executions per task"
RRO_PART = registry.Part("strategy", "rro", RRO, {"n": _n(1), "executions_per_task": _EXECUTIONS},
                         shared_keys=RANKING_KEYS, doc="RRO step search, n trajectories (or a budget) per task",
                         bench=(registry.BenchMethod("rro", _step_search("rro"), against=("ipr",), order=4,
                                                     doc=_PER_TASK_BUDGET),))
IPR_PART = registry.Part("strategy", "ipr", IPR, {"n": _n(1), "executions_per_task": _EXECUTIONS},
                         shared_keys=RANKING_KEYS,
                         doc="IPR step search (k candidates a step), n trajectories (or a budget) per task",
                         bench=(registry.BenchMethod("ipr", _step_search("ipr"), order=5, doc=_PER_TASK_BUDGET),))
BEST_OF_N_PART = registry.Part("strategy", "best_of_n", BestOfN, {"n": _n(8), "allow_gold": registry.Key(bool, False)},
                               shared_keys=RANKING_KEYS, doc="N rollouts per task, the best by the fitness reward model",
                               bench=BENCH_BEST_OF_N)
