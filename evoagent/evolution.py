"""DEAP's side of the loop: fitness, parent selection, replacement, statistics.

Selection and bookkeeping are DEAP's (``selBest``, ``selNSGA2``,
``Statistics``, ``Logbook``, ``HallOfFame``). DEAP's ``selTournament`` draws
from the global ``random`` module, which any other thread (a reward-model
client, a policy) may also draw from; so the tournament is rewritten here in
a few lines over the work item's own ``random.Random``, drawing exactly as
DEAP's does from a generator in the same state.
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from operator import attrgetter

from typing import TYPE_CHECKING

from deap import base  # light; deap.tools (and NumPy) load when a population is first selected or counted

from evoagent.trajectory import Summary

if TYPE_CHECKING:
    from deap import tools


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (campaign seed, generation, task, ...)."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big") >> 1


class ObjectiveFitness(base.Fitness):
    """A DEAP fitness whose weights come from the campaign's objectives."""

    weights = (1.0,)

    def __init__(self, weights: tuple[float, ...] = (1.0,), values: tuple[float, ...] = ()):
        self.weights = weights
        super().__init__(values)

    def __deepcopy__(self, memo: dict) -> ObjectiveFitness:
        return ObjectiveFitness(self.weights, self.values)


WEIGHTS = {"reward": 1.0, "steps": -1.0, "cost": -1.0}


class Member:
    """A population member: a trajectory's summary (no steps) with its DEAP fitness."""

    __slots__ = ("traj", "fitness")

    def __init__(self, traj: Summary, objectives: Sequence[str]):
        self.traj = traj
        values = {"reward": traj.fitness, "steps": float(traj.n_steps), "cost": traj.cost_usd}
        self.fitness = ObjectiveFitness(tuple(WEIGHTS[o] for o in objectives),
                                        tuple(values[o] for o in objectives))

    @property
    def traj_id(self) -> str:
        return self.traj.traj_id

    def __deepcopy__(self, memo: dict) -> Member:
        # The trajectory is frozen: copies (e.g. DEAP's HallOfFame) can share it.
        twin = Member.__new__(Member)
        twin.traj = self.traj
        twin.fitness = ObjectiveFitness(self.fitness.weights, self.fitness.values)
        return twin

    def __repr__(self) -> str:
        return f"Member({self.traj_id[:8]}, {self.fitness.values})"


def ranked(members: Sequence[Member]) -> list[Member]:
    """Best first (lexicographic on weighted values), ties broken by id: deterministic."""
    return sorted(members, key=lambda m: (tuple(-w for w in m.fitness.wvalues), m.traj_id))


def tournament(pool: Sequence[Member], k: int, tournsize: int, rng: random.Random) -> list[Member]:
    """DEAP's ``selTournament`` drawing from ``rng``: k times, the fittest of ``tournsize`` random picks."""
    return [max((rng.choice(pool) for _ in range(tournsize)), key=attrgetter("fitness")) for _ in range(k)]


def select_parents(members: Sequence[Member], k: int, kind: str, tournsize: int,
                   rng: random.Random) -> list[Member]:
    """Pick ``k`` parents (with repetition) by the campaign's selection."""
    if not members:
        return []
    pool = ranked(members)
    if kind == "best":
        return [pool[i % len(pool)] for i in range(k)]
    # NSGA-II ranks survivors in replacement; parents come by tournament on the same fitness.
    return tournament(pool, k, tournsize, rng)


def replace(parents: Sequence[Member], offspring: Sequence[Member], *, mu: int, kind: str,
            elitism: int, selection: str) -> list[Member]:
    """Survivors of a generation, best first: (mu + lambda) or (mu, lambda) with elitism.

    Deterministic: ``selBest`` and ``selNSGA2`` draw nothing at random.
    """
    seen: set[str] = set()

    def unique(ms: Sequence[Member]) -> list[Member]:
        out = []
        for m in ms:
            if m.traj_id not in seen:
                seen.add(m.traj_id)
                out.append(m)
        return out

    if kind == "plus":
        pool, elites = unique(list(parents) + list(offspring)), []
    else:
        elites = unique(ranked(parents)[:elitism])
        pool = unique(offspring)
    from deap import tools

    room = max(mu - len(elites), 0)
    pool = ranked(pool)
    if selection == "nsga2" and len(pool) > room:
        chosen = tools.selNSGA2(pool, room)
    else:
        chosen = tools.selBest(pool, room)
    return ranked(elites + list(chosen))


def statistics() -> tools.Statistics:
    """Reward statistics of a population, DEAP-style."""
    import numpy as np
    from deap import tools

    stats = tools.Statistics(key=lambda m: m.traj.outcome_reward)
    stats.register("avg", lambda xs: float(np.mean(xs)) if len(xs) else 0.0)
    stats.register("std", lambda xs: float(np.std(xs)) if len(xs) else 0.0)
    stats.register("min", lambda xs: float(np.min(xs)) if len(xs) else 0.0)
    stats.register("max", lambda xs: float(np.max(xs)) if len(xs) else 0.0)
    return stats


def logbook() -> tools.Logbook:
    from deap import tools

    book = tools.Logbook()
    book.header = ["gen", "nevals", "env_steps", "success_rate", "bound", "avg", "max"]
    return book


def hall_of_fame(size: int = 10) -> tools.HallOfFame:
    from deap import tools

    return tools.HallOfFame(size, similar=lambda a, b: a.traj_id == b.traj_id)
