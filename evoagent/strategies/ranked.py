"""A ranked population per task, read from the store: what every strategy that keeps members shares.

Strategies compose it (``self.ranked``) instead of inheriting one another: it
turns stored trajectory summaries into DEAP members ranked by the campaign's
``selection.objectives``, reads a committed round's population, compiles a
round's statistics and keeps the hall of fame (restored from the last
committed round, so a resumed campaign reports the same best members).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from evoagent import evolution as evo
from evoagent import registry
from evoagent.strategies.vote import PICKS, default_answer_key, vote
from stores.base import Store

__all__ = ["OBJECTIVES", "OBJECTIVES_KEY", "PICK_KEY", "RANKING_KEYS", "Ranked"]

OBJECTIVES = ("reward", "steps", "cost")
# How members are ranked (lexicographic, DEAP weights: reward up, steps and cost down); every
# strategy that ranks members declares this key.
OBJECTIVES_KEY = registry.Key(list, ["reward", "steps"], lambda x: bool(x) and all(o in OBJECTIVES for o in x),
                              f"a non-empty list of {OBJECTIVES}")
# How each task's closed population is ordered, so which member is its answer (rank 0):
# ``strategies/vote.py``; every strategy that ranks members declares it with the objectives.
PICK_KEY = registry.Key(str, "rank", lambda x: x in PICKS, f"one of {PICKS}")
RANKING_KEYS = {"selection.objectives": OBJECTIVES_KEY, "selection.pick": PICK_KEY}


class Ranked:
    """Members, populations, statistics and the hall of fame of one campaign's tasks (see the module docstring)."""

    def __init__(self, settings: Mapping[str, Any], store: Store, task_ids: Sequence[str],
                 fitness_source: str | None):
        """``settings``: the holding strategy's (``Strategy.own``), which declares ``selection.objectives``."""
        self.store, self.task_ids = store, sorted(task_ids)
        self.fitness_source = fitness_source
        self.objectives = list(settings["selection.objectives"])
        self.pick = settings["selection.pick"]
        self.answer_key = default_answer_key
        if self.pick != "rank":  # the environment says what an answer is (InterCode: a query's result)
            self.answer_key = getattr(registry.environment(settings), "answer_key", None) or default_answer_key
        self.hof = evo.hall_of_fame()
        self._last: tuple[tuple[int, list], dict[str, list[evo.Member]]] | None = None  # see population()
        last = store.last_committed_generation()
        if last is not None:
            self.hof.update([m for ms in self.population(last).values() for m in ms])

    def members(self, traj_ids: list[str]) -> dict[str, evo.Member]:
        found = self.store.summaries(traj_ids, self.fitness_source)
        return {tid: evo.Member(s, self.objectives) for tid, s in found.items()}

    def population(self, round_: int) -> dict[str, list[evo.Member]]:
        """A committed round's members per task, best first (empty before round 0).

        A round's plan, fill-up and close each read the previous population: the last one read
        is kept and handed out again while the store's rows for it are the same (stored
        summaries never change), so its members are built once. Callers do not change it."""
        rows = self.store.population(round_) if round_ >= 0 else []
        if self._last is not None and self._last[0] == (round_, rows):
            return self._last[1]
        found = self.members([r[1] for r in rows])
        pop: dict[str, list[evo.Member]] = {t: [] for t in self.task_ids}
        for task_id, traj_id, _ in rows:
            pop[task_id].append(found[traj_id])
        self._last = ((round_, rows), pop)
        return pop

    def remember(self, round_: int, rows: list[tuple[str, str, int]], pop: dict[str, list[evo.Member]]) -> None:
        """``pop`` as the population of ``round_`` whose store rows are ``rows`` (a close about to be
        committed): ``population(round_)`` hands it out while the store's rows are these."""
        self._last = ((round_, rows), pop)

    def picked(self, pop: dict[str, list[evo.Member]]) -> dict[str, list[evo.Member]]:
        """Each task's members in ``selection.pick``'s order (``rank``: as given, best first)."""
        if self.pick == "rank":
            return pop
        said = self.store.answers([m.traj_id for ms in pop.values() for m in ms])
        keys = {tid: self.answer_key(*said[tid]) for tid in said}
        return {t: vote(ms, keys, count=self.pick == "vote_count") for t, ms in pop.items()}

    def rows(self, pop: dict[str, list[evo.Member]]) -> list[tuple[str, str, int]]:
        """A population as the store's (task, trajectory, rank) rows."""
        return [(t, m.traj_id, rank) for t in self.task_ids for rank, m in enumerate(pop[t])]

    def stats(self, round_: int, pop: dict[str, list[evo.Member]], nevals: int, mu: int = 1) -> dict[str, Any]:
        """DEAP statistics of the gold outcome, and success: each task's rank-0 member judged by gold."""
        everyone = [m for ms in pop.values() for m in ms]
        record = evo.statistics().compile(everyone)
        solved = sum(1 for ms in pop.values() if ms and ms[0].traj.solved)
        n_tasks = max(len(self.task_ids), 1)
        record.update(
            gen=round_, nevals=nevals, env_steps=self.store.env_steps_used(),
            success_rate=solved / n_tasks, solved=solved,
            members_solved=sum(m.traj.solved for m in everyone) / max(len(everyone), 1),
            tasks=len(self.task_ids), members=len(everyone),
            tasks_below_mu=sum(len(ms) < mu for ms in pop.values()),
        )
        if self.fitness_source is not None:
            record["fitness_avg"] = sum(m.traj.fitness for m in everyone) / max(len(everyone), 1)
        bound = self.store.get_meta("upper_bound")
        if bound and json.loads(bound):  # an LLM policy has no finite repertoire, so no bound
            solvable = sum(json.loads(bound).values())
            record["bound"] = solvable / n_tasks
            record["of_bound"] = solved / solvable if solvable else None
        self.hof.update(everyone)
        return record
