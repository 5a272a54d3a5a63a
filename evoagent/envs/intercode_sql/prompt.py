"""The prompt of this environment's LLM agent (its name and text are part of every call's key)."""
from __future__ import annotations

from evoagent.prompts import Template, tool


AGENT = Template(
    name="agent/intercode_sql/v1",
    system=(
        "You answer questions about a MySQL database by running SQL against it. "
        "Run one statement at a time with the execute_sql tool and read its result; explore "
        "the schema first when unsure (SHOW TABLES, DESCRIBE t). The answer is the result of "
        "your last query: when it answers the question, call the submit tool. Take at most "
        "{max_steps} steps."
    ),
    user="Database: {db}\nTables:\n{schema}\n\nQuestion: {question}",
    tools=(
        tool("execute_sql", "Run one MySQL statement and see its result rows or error.",
             {"query": {"type": "string", "description": "one SQL statement"}}, ["query"]),
        tool("submit", "Finish: your last query's result is your answer.", {}, []),
    ),
)

__all__ = ["AGENT"]
