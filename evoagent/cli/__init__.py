"""The ``evoagent`` command: each command opens a store, makes one library call, prints.

Commands live one group per module in this package and are listed in ``COMMANDS``
as ``"module:attr"``; a module is imported only when its command runs (or its help
is shown), and imports what it needs inside the command, so ``evoagent --help``
loads click and nothing heavy. To add a command: write ``evoagent/cli/NAME.py``
with a click command and add one line to ``COMMANDS``.

User mistakes (missing file, bad format, bad SQL, bad campaign key) are one
line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import sys

if len(sys.argv) > 1 and sys.argv[1] in ("sql", "status"):  # before click loads: see sql_reader.prefork
    from evoagent.cli.fast import answer, applies, is_console_script
    from evoagent.sql_reader import prefork

    if is_console_script(sys.argv):  # never in a program that merely imports the CLI (tests, notebooks)
        prefork(sys.argv)
    if applies(sys.argv):  # `evoagent sql STORE QUERY`, `evoagent status STORE`: no click at all
        sys.exit(answer(sys.argv))

import click  # noqa: E402

from evoagent.cli.common import EXAMPLE, LazyGroup  # noqa: E402

COMMANDS: dict[str, str] = {
    "import": "evoagent.cli.imports:import_",
    "replay": "evoagent.cli.replay:replay",
    "sql": "evoagent.cli.query:sql",
    "export": "evoagent.cli.query:export",
    "status": "evoagent.cli.status:status",
    "migrate": "evoagent.cli.status:migrate",
    "run": "evoagent.cli.campaigns:run",
    "resume": "evoagent.cli.campaigns:resume",
    "report": "evoagent.cli.views:report",
    "show": "evoagent.cli.views:show",
    "lineage": "evoagent.cli.views:lineage",
    "rm": "evoagent.cli.rm:rm",
    "watch": "evoagent.cli.watch:watch",
    "bench": "evoagent.cli.bench:bench",
    "parts": "evoagent.cli.parts:parts",
}


@click.group(cls=LazyGroup, lazy=COMMANDS,
             epilog=EXAMPLE + "  evoagent run experiments/intercode_sql.toml --store runs/main.duckdb\n"
             "  evoagent status runs/main.duckdb\n"
             "  evoagent sql runs/main.duckdb \"SELECT generation, success_rate FROM generations\"")
@click.version_option(package_name="evoagent")
def main() -> None:
    """Evolve populations of LLM-agent trajectories; the population is a DuckDB store you query with SQL."""


__all__ = ["COMMANDS", "main"]
