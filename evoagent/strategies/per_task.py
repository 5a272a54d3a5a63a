"""Strategies of one round: ``n`` items per task with one operator, results ranked by fitness.

    round 0: n items per task, operator op, seed derived from (campaign seed, 0, item)
    close:   each task's distinct results, best first by ``fitness.reward`` (then fewer steps, id)

- ``rro``: ``strategy.rro.n`` trajectories per task (default 1), each built by the
  ``rro`` operator (``operators.rro.*``): data collection with RRO's step search.
- ``ipr``: the same with the ``ipr`` operator (``operators.ipr.k`` candidates a step).
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

from typing import Any

from evoagent import evolution as evo
from evoagent import registry
from evoagent.strategies.base import Closed, Strategy
from evoagent.strategies.ranked import RANKING_KEYS, Ranked
from stores.base import WorkItem

__all__ = ["IPR", "RRO", "BestOfN", "PerTask"]


def _n(default: int) -> registry.Key:
    return registry.Key(int, default, lambda x: 1 <= x <= 1000, "within 1..1000")


class PerTask(Strategy):
    """``n`` items of one operator per task, one round; see the module docstring."""

    name = ""  # the strategy's registered name (its ``strategy.<name>.n`` key)
    operator = ""

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

    def plan(self, round_: int) -> list[WorkItem]:
        n = self.own["n"]
        pairs = [(task_id, j) for task_id in self.task_ids for j in range(n)]
        return [WorkItem(round_, i, self.operator, task_id, (), evo.derive_seed(self.seed, round_, i))
                for i, (task_id, _) in enumerate(pairs)]

    def extend(self, round_: int, items: list[WorkItem]) -> list[WorkItem]:
        return []  # n items per task, distinct or not: no fill-up

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

    name, operator = "rro", "rro"


class IPR(PerTask):
    """IPR trajectories (the fixed-budget baseline): ``strategy.ipr.n`` per task."""

    name, operator = "ipr", "ipr"


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
RRO_CANDIDATES = 1.64  # RRO's reported samples per step (Wang et al. 2025)
IPR_K = 5  # IPR's candidates a step in the benchmark (``operators.ipr.k``; RRO's cap too)


def _rollouts(name: str, n: int) -> list[str]:
    """``n`` rollouts per task; the pick may see gold (oracle, mc): such a row is named by its reward model."""
    return [f"strategy.kind={name}", f"strategy.{name}.n={n}", "budget.generations=0", f"strategy.{name}.allow_gold=true"]


def _step_search(name: str, candidates: float) -> Any:
    """``floor(B / (c (L + s)))`` trajectories per task, ``c`` candidates a step."""
    def settings(b: registry.BenchBudget) -> list[str]:
        n = max(1, math.floor(b.budget / (candidates * b.per_rollout)))
        return [f"strategy.kind={name}", f"strategy.{name}.n={n}", "budget.generations=0", f"operators.ipr.k={IPR_K}"]
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
_RANKING = RANKING_KEYS  # how members are ranked and the answer picked, as evolution does
RRO_PART = registry.Part("strategy", "rro", RRO, {"n": _n(1)}, shared_keys=_RANKING,
                         doc="RRO step search, n trajectories per task",
                         bench=(registry.BenchMethod("rro", _step_search("rro", RRO_CANDIDATES), against=("ipr",),
                                                     order=4, doc="c = 1.64 candidates a step"),))
IPR_PART = registry.Part("strategy", "ipr", IPR, {"n": _n(1)}, shared_keys=_RANKING,
                         doc="IPR step search (k candidates a step), n trajectories per task",
                         bench=(registry.BenchMethod("ipr", _step_search("ipr", IPR_K), order=5,
                                                     doc="c = k = 5 candidates a step"),))
BEST_OF_N_PART = registry.Part("strategy", "best_of_n", BestOfN, {"n": _n(8), "allow_gold": registry.Key(bool, False)},
                               shared_keys=_RANKING, doc="N rollouts per task, the best by the fitness reward model",
                               bench=BENCH_BEST_OF_N)
