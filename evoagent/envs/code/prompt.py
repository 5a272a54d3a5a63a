"""The prompts of this environment's LLM agent and of its revise reviewer (name and text are part of every call's key)."""
from __future__ import annotations

from evoagent.prompts import Template, tool

CODE_AGENT = Template(
    name="agent/code/v1",
    system=(
        "You write Python functions. Implement the function the problem describes, with the imports it "
        "needs, and run it with the write_program tool: you see which of the visible tests pass, and the "
        "actual value of each failed one. After a failed attempt, first reflect in a few sentences on why "
        "it failed and what to change (plain text), then write the whole improved implementation. When "
        "your last program is right, call submit. Write at most {max_steps} programs."
    ),
    user="{problem}",
    tools=(
        tool("write_program", "Run a whole implementation (the function and its imports) on the visible tests.",
              {"program": {"type": "string", "description": "Python source of the complete function"}},
              ["program"]),
        tool("submit", "Finish: your last program is your answer.", {}, []),
    ),
)

CODE_REFLECT = Template(
    name="operator/revise/code/v1",
    system=("You review a Python implementation that failed its tests. Explain in a few sentences why it "
            "is wrong and what the next implementation must do differently (Reflexion's self-reflection)."),
    user="Problem:\n{problem}\n\nImplementation:\n```python\n{program}\n```\n\nTest feedback:\n{feedback}",
    tools=(tool("write_reflection", "Your self-reflection on the failed implementation.",
                 {"reflection": {"type": "string"}}, ["reflection"]),),
)

__all__ = ["CODE_AGENT", "CODE_REFLECT"]
