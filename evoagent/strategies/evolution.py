"""``evolution``: one (mu+lambda) or (mu,lambda) population per task, SE-Agent operators.

Round 0 plans ``mu`` items of ``strategy.evolution.first_operator`` (``sample``) per task; round
g > 0 plans ``lambda`` items per task, each an operator drawn by its
``operators.<name>.rate`` and parents drawn by the campaign's selection from
round g-1's population. While a task's population after replacement has
fewer than ``mu`` distinct members (identical children are stored once;
failed items leave none), ``extend`` plans more items for it, at most ``mu``
extra per task and round (``replacement.fill``). Closing a round replaces the
population with the round's offspring and compiles DEAP statistics. Every choice comes from a
seed derived from (campaign seed, round, task or item), so plans and
populations never depend on timing; both are read back from the store.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from evoagent import evolution as evo
from evoagent import registry
from evoagent.campaign import REQUIRED
from evoagent.strategies.base import Closed, Strategy
from evoagent.strategies.ranked import RANKING_KEYS, Ranked
from stores.base import WorkItem

__all__ = ["Evolution"]


class Evolution(Strategy):
    """The generational loop as a strategy: select -> vary -> evaluate -> replace."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.seed = self.own["seed"]
        self.ranked = Ranked(self.own, self.store, self.task_ids, self.fitness_source)
        self.members, self.population = self.ranked.members, self.ranked.population
        self._survivors: tuple[tuple[int, list, Any, frozenset[str]],
                               tuple[dict[str, list[evo.Member]], int]] | None = None
        # This round's children as members, and each task's replacement: a round's fill-ups and
        # close read the same (growing) results, so each child is read and ranked once per round.
        self._round: tuple[int, dict[str, evo.Member], dict[str, tuple[Any, list[evo.Member]]]] = (-2, {}, {})
        self._parents_of: dict[str, int] = {}  # see _n_parents

    @classmethod
    def check_campaign(cls, values: dict[str, Any]) -> tuple[str, str] | None:
        """Checks across evolution's keys (``evoagent.campaign.build`` calls it): (key, problem) or None."""
        if values["replacement.kind"] == "comma" and values["lambda"] < values["mu"]:
            return "lambda", "(mu, lambda) replacement needs lambda >= mu"
        if values["replacement.elitism"] > values["mu"]:
            return "replacement.elitism", f"must be within 0..mu ({values['mu']}), got {values['replacement.elitism']}"
        return None

    @staticmethod
    def items_per_task(c: Any) -> int:
        """The most work items a round plans per task (``launch`` bounds a generation's size with it)."""
        return max(c.get("mu"), c.get("lambda"))

    def last_round(self) -> int:
        return int(self.own["budget.generations"])

    # -- ask -------------------------------------------------------------------
    def plan(self, round_: int) -> list[WorkItem]:
        prev = self.population(round_ - 1)
        items: list[WorkItem] = []
        rates = self._rates()
        for task_id in self.task_ids:
            rng = random.Random(evo.derive_seed(self.seed, round_, task_id, "plan"))
            n = self.own["mu"] if round_ == 0 else self.own["lambda"]
            for _ in range(n):
                items.append(self._item(round_, len(items), task_id, prev.get(task_id, []), rng, rates))
        return items

    def _rates(self) -> dict[str, float]:
        """The operators drawn from, by rate (read once per plan, not per item)."""
        return {op: r for op, r in self.c.operator_rates().items() if r > 0}

    def _item(self, round_: int, item_id: int, task_id: str, members: list[evo.Member],
              rng: random.Random, rates: dict[str, float]) -> WorkItem:
        """One item: an operator drawn by rate (round 0: the arity-0 one), its parents by selection."""
        first = self.own["first_operator"]
        op = first if round_ == 0 or not members else rng.choices(list(rates), list(rates.values()))[0]
        parents = self._parents(registry.get("operator", op), members, rng)
        if parents is None:  # too few distinct members: the operator's fallback
            op = registry.get("operator", op).fallback or first
            parents = self._parents(registry.get("operator", op), members, rng)
        return WorkItem(round_, item_id, op, task_id, tuple(m.traj_id for m in parents or ()),
                        evo.derive_seed(self.seed, round_, item_id))

    def extend(self, round_: int, items: list[WorkItem]) -> list[WorkItem]:
        """More items for the tasks whose population is below mu, planned like the others.

        Each call asks for the missing number, at most mu extra items per task
        and round (a task whose policy can only produce one trajectory stays
        small). Seeds come from the items planned so far, so a resume plans
        exactly the same.
        """
        if not self.own["replacement.fill"]:
            return []
        mu = self.own["mu"]
        cap = mu + (mu if round_ == 0 else self.own["lambda"])
        prev = self.population(round_ - 1)
        pop, _ = self.survivors(round_, prev)
        planned = Counter(i.task_id for i in items)
        extra: list[WorkItem] = []
        next_id = max((i.item_id for i in items), default=-1) + 1
        rates = self._rates()
        for task_id in self.task_ids:
            want = min(mu - len(pop.get(task_id, [])), cap - planned[task_id])
            if want <= 0:
                continue
            rng = random.Random(evo.derive_seed(self.seed, round_, task_id, "fill", planned[task_id]))
            for _ in range(want):
                extra.append(self._item(round_, next_id, task_id, prev.get(task_id, []), rng, rates))
                next_id += 1
        return extra

    def _parents(self, part: registry.Part, members: list[evo.Member],
                 rng: random.Random) -> list[evo.Member] | None:
        if part.arity == 0:
            return []
        kind, size = self.own["selection.kind"], self.own["selection.tournsize"]
        if part.arity == 1:
            return evo.select_parents(members, 1, kind, size, random.Random(rng.getrandbits(63)))
        distinct = {m.traj_id for m in members}
        if len(distinct) < 2:
            return None
        want = min(self._n_parents(part), len(distinct))  # the operator says how many it takes
        chosen: dict[str, evo.Member] = {}
        for _ in range(8 * want):
            for m in evo.select_parents(members, want, kind, size, random.Random(rng.getrandbits(63))):
                chosen.setdefault(m.traj_id, m)
            if len(chosen) >= want:
                break
        if len(chosen) < 2:
            chosen = {m.traj_id: m for m in evo.ranked(members)[:want]}
        return list(chosen.values())[:want]

    def _n_parents(self, part: registry.Part) -> int:
        """How many parents ``part`` takes (its ``n_parents`` key; the campaign's keys are fixed: read once)."""
        n = self._parents_of.get(part.name)
        if n is None:
            n = self._parents_of[part.name] = self.c.settings_for(part)["n_parents"]
        return n

    # -- tell ------------------------------------------------------------------
    def survivors(self, round_: int, prev: dict[str, list[evo.Member]],
                  unfinished: frozenset[str] = frozenset()) -> tuple[dict[str, list[evo.Member]], int]:
        """Each task's population after replacement, and how many items produced a child.

        A task in ``unfinished`` (a round cut short by a budget) replaces (mu + lambda) whatever
        the campaign's kind: its parents compete with the children that finished.
        The fill-up and the close of a round usually see the same results: the last answer is
        kept and handed out again for the same round, results, previous population and cut."""
        results = self.store.round_results(round_)
        if self._survivors is not None and self._survivors[0][:2] == (round_, results) \
                and self._survivors[0][2] is prev and self._survivors[0][3] == unfinished:
            return self._survivors[1]
        if self._round[0] != round_:
            self._round = (round_, {}, {})
        _, kids, replaced = self._round
        new = [traj_id for _, _, traj_id in results if traj_id not in kids]
        if new:  # stored summaries never change: only children not read before this round
            kids.update(self.members(new))
        offspring: dict[str, list[evo.Member]] = {t: [] for t in self.task_ids}
        for _, task_id, traj_id in results:
            offspring[task_id].append(kids[traj_id])
        kind, mu = self.own["replacement.kind"], self.own["mu"]
        elitism, selection = self.own["replacement.elitism"], self.own["selection.kind"]
        pop = {}
        for t in self.task_ids:
            before, children, plus = prev.get(t, []), offspring[t], t in unfinished
            key = (tuple(m.traj_id for m in before), tuple(m.traj_id for m in children), plus)
            hit = replaced.get(t)
            if hit is None or hit[0] != key:  # deterministic: the same inputs give the same survivors
                hit = replaced[t] = (key, evo.replace(before, children, mu=mu, kind="plus" if plus else kind,
                                                      elitism=elitism, selection=selection))
            pop[t] = hit[1]
        self._survivors = ((round_, results, prev, unfinished), (pop, len(results)))
        return pop, len(results)

    def close(self, round_: int) -> Closed:
        return self._close(round_, frozenset())

    def close_partial(self, round_: int) -> Closed:
        """A cut round: (mu, lambda) keeps the parents of tasks whose items did not all finish."""
        finished = self.store.finished_items(round_)
        return self._close(round_, frozenset(i.task_id for i in self.store.planned(round_)
                                             if i.item_id not in finished))

    def _close(self, round_: int, unfinished: frozenset[str]) -> Closed:
        pop, n_results = self.survivors(round_, self.population(round_ - 1), unfinished)
        pop = self.ranked.picked(pop)  # survivors chosen by fitness; the pick orders them
        closed = Closed(self.ranked.rows(pop), self.ranked.stats(round_, pop, n_results, self.own["mu"]))
        self.ranked.remember(round_, closed.population, pop)  # the next plan reads it back: same rows
        return closed

    def hall_of_fame(self) -> Any:
        return self.ranked.hof


def _first_operator(name: object) -> bool:
    try:
        return isinstance(name, str) and registry.get("operator", name).arity == 0
    except KeyError:
        return False


SELECTIONS = ("tournament", "best", "nsga2")
REPLACEMENTS = ("plus", "comma")


def _upto(hi: int, lo: int = 1) -> Callable[[Any], bool]:
    return lambda x: lo <= x <= hi


MU = registry.Key(int, REQUIRED, _upto(10_000), "within 1..10000")
# The keys of the population loop, at the top level of a campaign file (evolution owns them).
KEYS: dict[str, registry.Key] = {
    "mu": MU,
    "lambda": registry.Key(int, REQUIRED, _upto(10_000), "within 1..10000"),
    "selection.kind": registry.Key(str, "tournament", lambda x: x in SELECTIONS, f"one of {SELECTIONS}"),
    "selection.tournsize": registry.Key(int, 3, _upto(1000, 2), "within 2..1000"),
    **RANKING_KEYS,
    "replacement.kind": registry.Key(str, "plus", lambda x: x in REPLACEMENTS, f"one of {REPLACEMENTS}"),
    "replacement.elitism": registry.Key(int, 1, _upto(10_000, 0), "within 0..mu"),
    "replacement.fill": registry.Key(bool, True),
    "budget.generations": registry.Key(int, REQUIRED, _upto(100_000, 0), "within 0..100000"),
}


PART = registry.Part("strategy", "evolution", Evolution, {
    "first_operator": registry.Key(str, "sample", _first_operator,
                                   "an operator that needs no parent (arity 0), e.g. sample"),
}, shared_keys=KEYS, doc="a (mu+lambda) population per task with SE-Agent operators", bench=(
    registry.BenchMethod("evolution", lambda b: [
        "strategy.kind=evolution", "budget.generations=1000", f"budget.env_steps={b.budget * b.n_tasks}",
        *(f"{k}={max(1, min(4, int(b.budget // (4 * b.per_rollout))))}" for k in ("mu", "lambda"))],
        against=("sample",), order=3, doc="generations until B x tasks executions; mu = lambda <= 4"),))
