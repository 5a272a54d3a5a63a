"""Exact arithmetic on untrusted text: + - * / and parentheses over integers, as fractions.

The agent's ``calc:`` expressions are parsed with ``ast`` (never ``eval``), at most
``MAX_CHARS`` characters, and every intermediate value is bounded, so no text can
run code, exhaust memory or take long.
"""
from __future__ import annotations

import ast
from fractions import Fraction

MAX_CHARS = 200
MAX_VALUE = 10**12
_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b}


class NotArithmetic(ValueError):
    """Not an expression this calculator takes (the message says why)."""


def evaluate(text: str) -> Fraction:
    """The exact value of ``text``; ``NotArithmetic`` for anything else."""
    if len(text) > MAX_CHARS:
        raise NotArithmetic(f"expression longer than {MAX_CHARS} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise NotArithmetic("not an arithmetic expression") from None
    return _value(tree.body)


def _value(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        value = Fraction(node.value)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _value(node.operand)
        value = -inner if isinstance(node.op, ast.USub) else inner
    elif isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise NotArithmetic("division by zero")
        value = _OPS[type(node.op)](left, right)
    else:
        raise NotArithmetic("only whole numbers, + - * / and parentheses")
    if abs(value.numerator) > MAX_VALUE or value.denominator > MAX_VALUE:
        raise NotArithmetic(f"a value beyond {MAX_VALUE:,}")
    return value


def shown(value: Fraction) -> str:
    """A value as the environment prints it: ``36``, ``7/2``."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def numbers(text: str) -> list[int]:
    """The whole numbers written in a text, in order."""
    import re

    return [int(n) for n in re.findall(r"\d+", text)[:50]]


def worked(question: str, actions: list[str] | tuple[str, ...]) -> tuple[list[Fraction], list[Fraction], int]:
    """Replay the ``calc: A op B`` steps of ``actions`` on the question's numbers.

    Returns (numbers still open, results in order, how many of the question's
    numbers were used). A step whose operands are not open numbers, or that
    does not parse, changes nothing (as in the environment, it is an error or a
    calculation outside the problem).
    """
    given = [Fraction(n) for n in numbers(question)]
    pool, results, used = list(given), [], 0
    for action in actions:
        head, _, body = action.partition(":")
        parts = body.split()
        if head.strip().lower() != "calc" or len(parts) != 3 or len(body) > MAX_CHARS:
            continue
        try:
            a, b, value = evaluate(parts[0]), evaluate(parts[2]), evaluate(body)
        except NotArithmetic:
            continue
        if a in pool and b in pool and (a != b or pool.count(a) > 1):
            for x in (a, b):
                used += x in given and pool.count(x) <= given.count(x)
                pool.remove(x)
            pool.append(value)
            results.append(value)
    return pool, results, used
