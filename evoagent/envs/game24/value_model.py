"""A learned value of a Game of 24 state from the numbers left: the ``state_value`` reward model.

The input is the state itself, the sorted multiset of numbers left (exact
fractions), never the text of the steps. Each multiset is described by a few
generic numbers (``describe``): how many are left, their values (clipped),
which are integers, their distances to 24 (sorted), how many divide 24 or are
multiples of it, how many are negative, and whether the state is ``24`` alone.
There is no pairwise arithmetic among them (no sum, product, difference or
ratio of two numbers: those would hand the model the solver). The features of a
state (``features``) are its own description and a one-step look-ahead: the
minimum, maximum and mean of the descriptions of every state one legal move
away, and how many there are (a one-number state looks ahead at itself). The
look-ahead decides two-number states exactly (a move to ``24`` alone exists or
not); for three numbers the model must judge two-number states from their
values, which it learns. The classifier is scikit-learn's histogram gradient
boosting, fixed seed: the same training states give the same model.

Training states are labelled by exact solvability (``solver.solvable``) and
drawn from the multisets one, two and three moves from the puzzles of
``train_ranks`` (and the puzzles themselves), minus every multiset in
``exclude``: the reward model excludes every multiset reachable from the
campaign's own puzzles, so no state it judges in a campaign was a training
state (a split by number multiset, not by puzzle: two puzzles share many
states). ``experiments/game24_value_model.py`` measures it on the 4,469 states
GPT-4 valued in Tree of Thoughts' log, against GPT-4's recorded values.
"""
from __future__ import annotations

import functools
import random
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from evoagent.envs.game24.env import Episode, play, start
from evoagent.envs.game24.rules import State, parse_state
from evoagent.envs.game24.solver import TARGET, next_states, solvable
from evoagent.rewards.base import Query, RewardModel, Score
from evoagent.trajectory import Task

__all__ = ["StateValue", "StateValueModel", "describe", "features", "next_states", "reachable",
           "training_states"]

CLIP = 1e4  # values beyond this are one value to the model (the puzzles' numbers are 1..13)
DIVISORS = frozenset({1, 2, 3, 4, 6, 8, 12, 24})


def reachable(puzzles: Iterable[State]) -> set[State]:
    """Every multiset a puzzle is or can become (zero to three moves), as sorted tuples."""
    found: set[State] = set()
    for puzzle in puzzles:
        level = {tuple(sorted(puzzle))}
        while level:
            found |= level
            level = {s for state in level if len(state) > 1 for s in next_states(state)} - found
    return found


def _clip(x: float) -> float:
    return max(min(x, CLIP), -CLIP)


@functools.lru_cache(maxsize=1 << 18)  # states recur as each other's neighbours
def describe(state: State) -> tuple[float, ...]:
    """A multiset of up to four numbers as 17 generic numbers (see the module docstring)."""
    n = len(state)
    pad = 4 - n
    values = [_clip(float(v)) for v in state] + [0.0] * pad
    ints = [float(v.denominator == 1) for v in state] + [0.0] * pad
    far = sorted(min(abs(float(v - TARGET)), CLIP) for v in state) + [CLIP] * pad
    divides = sum(1 for v in state if v.denominator == 1 and int(v) in DIVISORS)
    multiple = sum(1 for v in state if v.denominator == 1 and v != 0 and int(v) % 24 == 0)
    negative = sum(1 for v in state if v < 0)
    return (float(n), *values, *ints, *far, float(divides), float(multiple),
            float(n == 1 and state[0] == TARGET), float(negative))


def features(state: State, look_ahead: bool = True) -> list[float]:
    """The state's description, then (``look_ahead``) min, max and mean over the states one move away."""
    own = describe(state)
    if not look_ahead:
        return list(own)
    kids = [describe(s) for s in next_states(state)] if len(state) > 1 else [own]
    cols = list(zip(*kids))
    return [*own, *(min(c) for c in cols), *(max(c) for c in cols), *(sum(c) / len(c) for c in cols),
            float(len(kids))]


def training_states(ranks: Sequence[int], exclude: set[State], limit: int, seed: int = 0) -> list[State]:
    """Up to ``limit`` distinct multisets from the puzzles of ``ranks`` (inclusive), none in ``exclude``;
    a seeded sample, in a fixed order."""
    from evoagent.envs.game24.data import load_tasks

    pool = sorted(reachable(parse_state(t.question) for t in load_tasks(ranks)) - exclude)
    if len(pool) > limit:
        pool = sorted(random.Random(seed).sample(pool, limit))
    return pool


def _one_thread() -> Any:
    """OpenMP on one thread: the trees are small, and on shared cores spinning threads cost minutes."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


class StateValueModel:
    """Gradient-boosted trees over ``features``; ``value`` is the probability a state is solvable."""

    def __init__(self, look_ahead: bool = True, seed: int = 0):
        self.look_ahead, self.seed = look_ahead, seed
        self._clf: Any = None

    def fit(self, states: Sequence[State]) -> StateValueModel:
        import numpy as np
        from sklearn.ensemble import HistGradientBoostingClassifier

        labels = np.array([solvable(s) for s in states], dtype=int)
        if labels.min() == labels.max():
            raise ValueError("the training states are all solvable or all unsolvable")
        self._clf = HistGradientBoostingClassifier(max_iter=300, random_state=self.seed)
        x = self._matrix(states)
        with _one_thread():
            self._clf.fit(x, labels)
        return self

    def _matrix(self, states: Sequence[State]) -> Any:
        import numpy as np

        return np.array([features(tuple(sorted(s)), self.look_ahead) for s in states], dtype=float)

    def value(self, states: Sequence[State]) -> list[float]:
        if self._clf is None:
            raise RuntimeError("fit() the model first")
        if not states:
            return []
        x = self._matrix(states)
        with _one_thread():
            return [float(p) for p in self._clf.predict_proba(x)[:, 1]]


def _walk(task: Task, actions: Sequence[str]) -> tuple[Episode, bool]:
    episode, ok = start(task), True
    for a in actions:
        episode, _, _, info = play(episode, a)
        ok = ok and bool(info.get("valid"))
    return episode, ok


@functools.lru_cache(maxsize=4)  # campaigns of one process on the same puzzles share one model
def _trained(ranks: tuple[int, ...], n_states: int, puzzles: frozenset[State]) -> tuple[StateValueModel, int]:
    """The model trained on up to ``n_states`` multisets of ``ranks``, none reachable from ``puzzles``."""
    train = training_states(ranks, reachable(puzzles), n_states)
    return StateValueModel().fit(train), len(train)


class StateValue(RewardModel):
    """``state_value``: the learned value of the numbers a prefix leaves (see the module docstring).

    A prefix with an invalid step scores 0 (as with ``recorded``); an answer
    line is valued by the numbers left when it was given. Trained once, on first
    use, on states no puzzle of ``tasks`` can reach.
    """

    name = "state_value"
    uses_gold = False

    def __init__(self, tasks: dict[str, Task], *, train_ranks: Sequence[int], states: int):
        self.tasks, self.train_ranks, self.n_states = tasks, tuple(train_ranks), states
        self._model: StateValueModel | None = None
        self._lock = threading.Lock()
        self.trained_on = 0

    @property
    def source(self) -> str:
        lo, hi = self.train_ranks
        return f"state_value(ranks={lo}-{hi},states={self.n_states})"

    def model(self) -> StateValueModel:
        with self._lock:
            if self._model is None:
                puzzles = frozenset(tuple(sorted(parse_state(t.question))) for t in self.tasks.values())
                self._model, self.trained_on = _trained(self.train_ranks, self.n_states, puzzles)
            return self._model


    def score(self, queries: Sequence[Query]) -> list[Score]:
        """A terminal query is the episode submitted there: with more than one number left and no
        answer, lost by the rules (0, as the environment scores it; no gold is read), not the
        value of a state the policy might continue from."""
        states: list[State | None] = []
        for q in queries:
            episode, ok = _walk(self.tasks[q.task_id], q.actions)
            lost = q.terminal and not episode.answered and len(episode.state) > 1
            states.append(episode.state if ok and not lost else None)
        known = [s for s in states if s is not None]
        values = iter(self.model().value(known))
        return [Score(next(values) if s is not None else 0.0) for s in states]
