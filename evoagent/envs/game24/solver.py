"""Exact solvability of a Game of 24 state: can its numbers still make 24?

A memoized search over fractions: a state of one number is solved iff it is
24; a larger one is solvable iff some pair combined with ``+ - * /`` (both
orders for ``-`` and ``/``, no division by zero) leaves a solvable state. This
is the ``oracle`` of the game24 environment (its per-step reward) and the
label its reward models are judged against (ROC-AUC).
"""
from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from functools import lru_cache

from evoagent.envs.game24.rules import State

__all__ = ["TARGET", "next_states", "solvable", "successors"]

TARGET = Fraction(24)


def _results(a: Fraction, b: Fraction) -> set[Fraction]:
    out = {a + b, a - b, b - a, a * b}
    if b:
        out.add(a / b)
    if a:
        out.add(b / a)
    return out


def successors(state: State) -> Iterator[State]:
    """Each state one legal move away (any pair, ``+ - * /`` in both orders), sorted; may repeat."""
    n = len(state)
    for i in range(n):
        for j in range(i + 1, n):
            rest = state[:i] + state[i + 1:j] + state[j + 1:]
            for r in _results(state[i], state[j]):
                yield tuple(sorted((*rest, r)))


def next_states(state: State) -> set[State]:
    """Every multiset one legal move away."""
    return set(successors(state))


@lru_cache(maxsize=200_000)
def _solvable(state: State) -> bool:
    if len(state) == 1:
        return state[0] == TARGET
    return any(_solvable(s) for s in successors(state))


def solvable(state: State) -> bool:
    """Whether ``state`` (any order; at most 6 numbers) can still reach exactly 24."""
    if not state or len(state) > 6:
        return False
    return _solvable(tuple(sorted(state)))
