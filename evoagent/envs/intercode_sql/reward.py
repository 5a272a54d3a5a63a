"""InterCode-SQL's reward, reimplemented so recorded runs and ours are comparable.

Rows are compared as strings (``str(row_tuple)``), as multisets: reward is
|intersection| / |union| (union counts the larger multiplicity of each row),
1.0 when both results are empty. When rows are shared, the reward is scaled by
Kendall's tau-b between the two results' orders of those shared rows (rows
ranked by their string value, as scipy ranks them) and rounded to two
decimals; when tau is undefined (fewer than two shared rows, or all tied) the
plain ratio is kept, unrounded, as InterCode did. An error on either side is 0.
"""
from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Sequence


def _shared_in_order(rows: Sequence[str], shared: Counter) -> list[str]:
    """The items of ``rows`` that belong to ``shared``, first occurrences first."""
    left = shared.copy()
    out: list[str] = []
    for r in rows:
        if left.get(r, 0) > 0:
            left[r] -= 1
            out.append(r)
    return out


def _dense_ranks(values: Sequence[str]) -> list[int]:
    order = {v: i for i, v in enumerate(sorted(set(values)))}
    return [order[v] for v in values]


def _tie_pairs(ranks: Sequence[int]) -> int:
    return sum(c * (c - 1) // 2 for c in Counter(ranks).values())


SMALL = 2048  # up to this length, inversions are counted by binary insertion (C-level, fast when short)


def _count_inversions(seq: list[int]) -> int:
    """Pairs i<j with seq[i] > seq[j] (strictly): by binary insertion when short, else by merge sort."""
    n = len(seq)
    if n < 2:
        return 0
    if n <= SMALL:
        later: list[int] = []  # the values after the current one, sorted
        inv = 0
        for v in reversed(seq):
            inv += bisect_left(later, v)  # later values strictly smaller than v
            insort(later, v)
        return inv
    buf = list(seq)
    tmp = [0] * n
    inv = 0
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid, hi = min(lo + width, n), min(lo + 2 * width, n)
            i, j, k = lo, mid, lo
            while i < mid and j < hi:
                if buf[j] < buf[i]:
                    tmp[k] = buf[j]
                    inv += mid - i
                    j += 1
                else:
                    tmp[k] = buf[i]
                    i += 1
                k += 1
            tmp[k:hi] = buf[i:mid] + buf[j:hi]
        buf, tmp = tmp, buf
        width *= 2
    return inv


def kendall_tau_b(x: Sequence[str], y: Sequence[str]) -> float:
    """Kendall's tau-b of paired values (any sortable type); NaN when undefined."""
    n = len(x)
    if n < 2 or n != len(y):
        return math.nan
    rx, ry = _dense_ranks(x), _dense_ranks(y)
    total = n * (n - 1) // 2
    x_ties, y_ties = _tie_pairs(rx), _tie_pairs(ry)
    if x_ties == total or y_ties == total:
        return math.nan
    joint_ties = _tie_pairs([a * (n + 1) + b for a, b in zip(rx, ry)])
    pairs = sorted(zip(rx, ry))
    discordant = _count_inversions([b for _, b in pairs])
    con_minus_dis = total - x_ties - y_ties + joint_ties - 2 * discordant
    tau = con_minus_dis / math.sqrt(total - x_ties) / math.sqrt(total - y_ties)
    return max(-1.0, min(1.0, tau))


def intercode_reward(agent: Sequence[str] | None, gold: Sequence[str] | None) -> float:
    """Reward of stringified result rows ``agent`` against ``gold``; None means an error."""
    if agent is None or gold is None:
        return 0.0
    if agent == gold:  # the same rows in the same order: a ratio of 1 and, where defined, tau = 1
        return 1.0
    dist_a, dist_g = Counter(agent), Counter(gold)
    shared = dist_a & dist_g
    union = dist_a | dist_g
    if not union:
        return 1.0
    reward = sum(shared.values()) / sum(union.values())
    if shared:
        tau = kendall_tau_b(_shared_in_order(agent, shared), _shared_in_order(gold, shared))
        if not math.isnan(tau):
            reward = round(tau * reward, 2)
    return reward
