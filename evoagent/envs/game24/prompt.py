"""The prompt of this environment's LLM agent (its name and text are part of every call's key)."""
from __future__ import annotations

from evoagent.prompts import Template, tool


GAME24 = Template(
    name="agent/game24/v1",
    system=(
        "You play the Game of 24: combine the given numbers with + - * / (each number used exactly "
        "once) to obtain 24. Work one step at a time with the step tool, in the form "
        "'a op b = c (left: numbers left)', e.g. '4 * 5 = 20 (left: 6 10 20)'; exact fractions such as "
        "5/3 are fine. Each step's result tells you the numbers left, or the error. When one number "
        "is left the game is over; you may instead give a whole expression with the answer tool."
    ),
    user="Input: {numbers}",
    tools=(
        tool("step", "Combine two of the numbers left.",
             {"line": {"type": "string", "description": "one step: a op b = c (left: ...)"}}, ["line"]),
        tool("answer", "Finish with an expression over the four input numbers that equals 24.",
             {"expression": {"type": "string", "description": "e.g. (10 - 4) * (6 - 5) * 4 = 24"}},
             ["expression"]),
    ),
)

__all__ = ["GAME24"]
