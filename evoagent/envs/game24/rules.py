"""The rules of Game of 24 over exact fractions: actions in Tree of Thoughts' format, judged.

A state is the multiset of numbers left, held as a sorted tuple of
``Fraction``. Two kinds of action, one line each, as ToT's prompts write them:

- a step ``a op b = c (left: x y ...)``: ``a`` and ``b`` must be two of the
  numbers left, ``c`` the exact result of ``a op b``, and the ``left`` list the
  numbers left afterwards (as a multiset, any order); one short aside in
  parentheses before or after the list (``(approx.)``) is allowed;
- an answer ``Answer: expr = 24`` (``Answer:`` may be missing from a line
  without letters that ends in ``= 24``, as in some of GPT-4's
  standard-prompting samples): ``expr`` over ``+ - * /`` and parentheses
  must use exactly the puzzle's four numbers, each once, and equal 24.

Printed decimals (ToT's logs write 10/6 as ``1.666`` or ``1.67``) are judged
by one rule: a printed number with ``d`` decimals stands for an exact value
when it is that value truncated or rounded to ``d`` decimals (``|v - x| <
10^-d``). Such a step is valid and counted as ``inexact``; the state keeps the
exact value, never the decimal. A ``c`` that stands for another value
(``15 * 0.666 = 9.99``: the exact result is 10) is an arithmetic error.
Everything here is total: a malformed, over-long or impossible line is a
:class:`Judged` with an error ``kind``, never an exception.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

__all__ = ["ERROR_KINDS", "MAX_LINE_CHARS", "Judged", "State", "judge", "judge_answer", "moves",
           "parse_state", "show", "show_state"]

State = tuple[Fraction, ...]
MAX_LINE_CHARS = 300  # ToT's longest recorded step or answer line is under 100 characters
MAX_NUMBER_CHARS = 24  # digits of one printed number (the 1,362 puzzles' numbers are 1..13)
ERROR_KINDS = ("format", "too_long", "operand", "division_by_zero", "arithmetic", "left",
               "answer_format", "over")

_NUM = r"-?\d+(?:\.\d+)?(?:/\d+)?"
_OPERAND = rf"\(\s*{_NUM}\s*\)|{_NUM}"  # "(-1)", "(5/3)", "5/3", "1.666"
_NOTE = r"(?:\((?!\s*left)[^()]{0,40}\)\s*)?"  # GPT-4's asides, e.g. "(approx.)", before or after the list
_STEP = re.compile(rf"^\s*({_OPERAND})\s*([-+*/×x÷−])\s*({_OPERAND})\s*(=|≈)\s*({_NUM})\s*{_NOTE}"
                   rf"\(\s*left\s*:\s*([^()]*)\)\s*{_NOTE}\.?\s*$", re.IGNORECASE)
_ANSWER = re.compile(r"^\s*answer\s*:\s*(.*)$", re.IGNORECASE | re.DOTALL)
_BARE_ANSWER = re.compile(r"^[^a-zA-Z]*=\s*24\s*$")  # "(7 - 1) * (4 - 2) = 24": an answer without "Answer:"
_OPS = {"+": "+", "-": "-", "−": "-", "*": "*", "×": "*", "x": "*", "X": "*", "/": "/", "÷": "/"}


@dataclass(frozen=True)
class Judged:
    """What one action does to a state: the new state, or why it is refused (``error`` kind)."""

    state: State
    error: str = ""  # one of ERROR_KINDS, "" when the action is valid
    message: str = ""
    inexact: bool = False  # valid, with a printed decimal standing for an exact fraction
    answer: bool = False  # an answer line (valid or not)
    correct: bool = False  # an answer that uses the puzzle's numbers and equals 24

    @property
    def valid(self) -> bool:
        return not self.error


@lru_cache(maxsize=4096)
def parse_state(text: str) -> State:
    """``"4 5 6 10"`` -> the sorted state; raises ValueError on anything else."""
    parts = text.split()
    if not 1 <= len(parts) <= 8:
        raise ValueError(f"expected 1..8 numbers, got {text[:40]!r}")
    return tuple(sorted(_number(p) for p in parts))


def show(x: Fraction) -> str:
    """An exact number as an action writes it: ``24``, ``-1``, ``5/3``."""
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def show_state(state: Sequence[Fraction]) -> str:
    return " ".join(show(x) for x in state)


@lru_cache(maxsize=65536)  # recorded logs repeat the same few numbers; Fraction(str) is slow
def _number(text: str) -> Fraction:
    text = text.strip().strip("()").strip()
    if len(text) > MAX_NUMBER_CHARS or not re.fullmatch(_NUM, text):
        raise ValueError(f"not a number: {text[:MAX_NUMBER_CHARS]!r}")
    if "/" in text:
        num, den = text.split("/")
        if Fraction(den) == 0:
            raise ValueError("zero denominator")
        return Fraction(num) / Fraction(den)
    return Fraction(text)


def _decimals(text: str) -> int | None:
    """Decimals printed in ``text`` (None: an integer or fraction, which must be exact)."""
    text = text.strip().strip("()").strip()
    return len(text.split(".", 1)[1]) if "." in text and "/" not in text else None


@lru_cache(maxsize=65536)
def stands_for(text: str, value: Fraction) -> tuple[bool, bool]:
    """(does the printed ``text`` stand for ``value``, only as a rounded or truncated decimal)."""
    try:
        printed = _number(text)
    except ValueError:
        return False, False
    if printed == value:
        return True, False
    d = _decimals(text)
    return (d is not None and abs(printed - value) < Fraction(1, 10**d)), True


def _take(pool: list[Fraction], text: str) -> tuple[Fraction, bool] | None:
    """Remove from ``pool`` the number ``text`` stands for (an exact match first)."""
    found = None
    for i, v in enumerate(pool):
        ok, inexact = stands_for(text, v)
        if ok and not inexact:
            return pool.pop(i), False
        if ok and found is None:
            found = i
    return (pool.pop(found), True) if found is not None else None


def _apply(a: Fraction, op: str, b: Fraction) -> Fraction | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return None if b == 0 else a / b


def judge(state: State, line: str, puzzle: State) -> Judged:
    """The outcome of one action line on ``state`` (``puzzle``: the start, for answers)."""
    if not isinstance(line, str):
        return Judged(state, "format", "an action is one line of text")
    text = line.strip()
    if len(text) > MAX_LINE_CHARS:
        return Judged(state, "too_long", f"an action is at most {MAX_LINE_CHARS} characters")
    return _judge(tuple(state), text, tuple(puzzle))


@lru_cache(maxsize=50_000)  # the same line on the same state recurs (ToT's prefixes, rollouts)
def _judge(state: State, text: str, puzzle: State) -> Judged:
    if "\n" in text:
        return Judged(state, "format", "one step per action: a single line")
    m = _STEP.match(text)
    if m is None:
        answer = _ANSWER.match(text)
        if answer is not None or _BARE_ANSWER.match(text):
            return judge_answer(state, answer.group(1) if answer else text, puzzle)
        return Judged(state, "format", "expected 'a op b = c (left: ...)' or 'Answer: expression = 24'")
    a_text, op, b_text, _, c_text, left_text = m.groups()
    pool = list(state)
    a = _take(pool, a_text)
    b = _take(pool, b_text) if a is not None else None
    if a is None or b is None:
        return Judged(state, "operand", f"{(b_text if a else a_text).strip()} is not among the numbers left "
                      f"({show_state(state)})")
    result = _apply(a[0], _OPS[op], b[0])
    if result is None:
        return Judged(state, "division_by_zero", "division by zero")
    ok, c_inexact = stands_for(c_text, result)
    if not ok:
        return Judged(state, "arithmetic", f"{a_text.strip()} {op} {b_text.strip()} is {show(result)}, not {c_text}")
    after = tuple(sorted([*pool, result]))
    printed = left_text.replace(",", " ").split()
    rest, left_inexact = list(after), False
    for p in printed:
        took = _take(rest, p) if len(p) <= MAX_NUMBER_CHARS else None
        if took is None:
            break
        left_inexact |= took[1]
    else:
        if not rest:
            return Judged(after, inexact=a[1] or b[1] or c_inexact or left_inexact or m.group(4) == "≈")
    return Judged(state, "left", f"left: {' '.join(printed)[:80]} is wrong; the numbers left are {show_state(after)}")


# -- answers: a tiny recursive-descent parser over + - * / and parentheses (never eval) ----------
_TOKEN = re.compile(r"\s*(?:(\d+)|(.))")


def _tokens(text: str) -> list[str] | None:
    out = []
    for m in _TOKEN.finditer(text):
        if m.group(1):
            if len(m.group(1)) > MAX_NUMBER_CHARS:
                return None
            out.append(m.group(1))
        elif m.group(2).strip():
            out.append(_OPS.get(m.group(2), m.group(2)))
    return out


class _Expr:
    """Evaluates a token list exactly; raises ValueError (bad form) or ZeroDivisionError."""

    def __init__(self, tokens: list[str]):
        self.tokens, self.i, self.numbers = tokens, 0, []  # numbers: the literals used, in order

    def peek(self) -> str:
        return self.tokens[self.i] if self.i < len(self.tokens) else ""

    def take(self) -> str:
        tok = self.peek()
        self.i += 1
        return tok

    def expr(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take() == "+" else value - self.term()
        return value

    def term(self) -> Fraction:
        value = self.atom()
        while self.peek() in ("*", "/"):
            if self.take() == "*":
                value *= self.atom()
            else:
                d = self.atom()
                if d == 0:
                    raise ZeroDivisionError
                value /= d
        return value

    def atom(self) -> Fraction:
        tok = self.take()
        if tok == "(":
            value = self.expr()
            if self.take() != ")":
                raise ValueError("unbalanced parentheses")
            return value
        if tok.isdigit():
            self.numbers.append(Fraction(tok))
            return Fraction(tok)
        raise ValueError(f"unexpected {tok[:10]!r}" if tok else "the expression ends too early")


def judge_answer(state: State, text: str, puzzle: State) -> Judged:
    """An answer ``expr [= n]``: correct iff ``expr`` uses exactly ``puzzle``'s numbers and equals 24."""
    expression = text.split("=", 1)[0]
    tokens = _tokens(expression)
    if not tokens or tokens.count("(") > 40:
        return Judged(state, "answer_format", "the answer is not an expression over + - * / ( )", answer=True)
    parser = _Expr(tokens)
    try:
        value = parser.expr()
        if parser.i != len(tokens):
            raise ValueError(f"unexpected {parser.peek()[:10]!r}")
    except ZeroDivisionError:
        return Judged(state, "division_by_zero", "the answer divides by zero", answer=True)
    except ValueError as exc:
        return Judged(state, "answer_format", f"the answer is not an expression: {exc}", answer=True)
    used = tuple(sorted(parser.numbers))
    if used != puzzle:
        return Judged(state, message=f"the answer uses {show_state(used)}, not the puzzle's "
                      f"{show_state(puzzle)}", answer=True)
    return Judged(state, message=f"the answer equals {show(value)}", answer=True, correct=value == 24)


def moves(state: State) -> list[str]:
    """Every legal step from ``state``, in ToT's format with exact numbers (no repeats)."""
    out: dict[str, None] = {}
    n = len(state)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            a, b = state[i], state[j]
            rest = [state[k] for k in range(n) if k not in (i, j)]
            for op in ("+", "-", "*", "/"):
                if (op in "+*" and i > j) or (op == "/" and b == 0):
                    continue
                result = _apply(a, op, b)
                assert result is not None
                line = (f"{_operand(a)} {op} {_operand(b)} = {show(result)} "
                        f"(left: {show_state(sorted([*rest, result]))})")
                out[line] = None
    return list(out)


def _operand(x: Fraction) -> str:
    return show(x) if x.denominator == 1 and x >= 0 else f"({show(x)})"
