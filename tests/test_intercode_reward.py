"""InterCode's reward formula and the dump parser's value tokenizer."""
from __future__ import annotations

import math

import pytest

from evoagent.envs.intercode_sql.build import parse_values, split_statements
from evoagent.envs.intercode_sql.reward import intercode_reward, kendall_tau_b


def test_empty_empty_is_one():
    assert intercode_reward([], []) == 1.0


def test_error_is_zero():
    assert intercode_reward(None, ["(1,)"]) == 0.0
    assert intercode_reward(["(1,)"], None) == 0.0


def test_identical_and_reversed_order():
    rows = ["(1,)", "(2,)", "(3,)"]
    assert intercode_reward(rows, rows) == 1.0
    assert intercode_reward(rows[::-1], rows) == -1.0


def test_duplicates_count_as_multiset():
    # intersection 1, union 2 ("(1,)" twice on one side); single shared row -> tau undefined
    assert intercode_reward(["(1,)", "(1,)"], ["(1,)"]) == 0.5
    assert abs(intercode_reward(["(1,)"], ["(1,)", "(2,)", "(3,)"]) - 1 / 3) < 1e-12


def test_partial_overlap_is_rounded():
    assert intercode_reward(["(1,)", "(2,)", "(4,)"], ["(1,)", "(2,)", "(3,)"]) == 0.5
    assert intercode_reward(["(1,)", "(2,)"], ["(1,)", "(2,)", "(3,)"]) == 0.67
    assert intercode_reward(["(2,)", "(1,)", "(3,)"], ["(1,)", "(2,)", "(3,)"]) == 0.33


def test_tau_b_with_ties_and_undefined():
    assert math.isnan(kendall_tau_b(["a"], ["a"]))
    assert math.isnan(kendall_tau_b(["a", "a"], ["a", "b"]))
    # tau-b with ties: (C - D) / sqrt((n0 - n1)(n0 - n2)) = (3 - 1) / sqrt(5 * 5)
    assert kendall_tau_b(["a", "b", "b", "c"], ["a", "c", "b", "b"]) == pytest.approx(0.4)


def test_dump_tokenizer_escapes():
    rows = parse_values(r"(1,'O\'Reilly','a\\b','x\ny',NULL,-2.5,'it''s'),(2,'',0x1F,3e2,'',NULL,'')")
    assert rows[0] == [1, "O'Reilly", "a\\b", "x\ny", None, -2.5, "it's"]
    assert rows[1][:4] == [2, "", 31, 300.0]
    assert split_statements("INSERT INTO `t` VALUES ('a;b');\n-- c;\nUSE `x`;") == \
        ["INSERT INTO `t` VALUES ('a;b')", "USE `x`"]


def test_both_inversion_counts_agree_with_the_definition() -> None:
    import random

    from evoagent.envs.intercode_sql import reward

    rng = random.Random(3)
    for n in (2, 3, 7, 60):
        for _ in range(30):
            seq = [rng.randrange(n // 2 + 1) for _ in range(n)]
            brute = sum(seq[i] > seq[j] for i in range(n) for j in range(i + 1, n))
            assert reward._count_inversions(seq) == brute  # binary insertion (short)
    long = [rng.randrange(300) for _ in range(reward.SMALL + 500)]  # merge sort (long)
    assert reward._count_inversions(long) == reward._count_inversions(long[:reward.SMALL]) + sum(
        a > b for i, a in enumerate(long) for b in long[max(i + 1, reward.SMALL):])
