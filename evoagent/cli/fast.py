"""``evoagent sql STORE QUERY`` and ``evoagent status STORE`` typed plainly, answered without loading click.

These two commands are meant to answer at DuckDB's own speed (issue 22), and click's import
alone is about a sixth of a bare DuckDB query's start. When the console script is called with
exactly ``sql STORE QUERY`` or ``status STORE`` (no option, no argument starting with ``-``),
``evoagent/cli/__init__.py`` hands the call here before it imports click: the same calls as
the click commands (:func:`evoagent.sql_reader.run_sql` with the defaults, ``run_status``),
the same one-line errors and exit statuses. Anything else (an option, ``--help``, a mistake
in the arguments) goes through click. Light module: standard library only until it answers.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path


def is_console_script(argv: list[str]) -> bool:
    """Whether this process is the ``evoagent`` command (not ``python -c``/``-m`` or a program that
    imports the CLI): only then may the CLI fork its worker and take over Ctrl-C at import."""
    return os.path.basename(argv[0]) == "evoagent"


def applies(argv: list[str]) -> bool:
    """The console script, called plainly."""
    if not is_console_script(argv) or len(argv) < 2:
        return False
    wanted = {"sql": 4, "status": 3}.get(argv[1])
    return len(argv) == wanted and not any(a.startswith("-") for a in argv[2:])


def answer(argv: list[str]) -> int:
    """Run the command; its exit status (0, 2 for a user mistake, 130 for Ctrl-C)."""
    from evoagent.escaping import install
    from evoagent.sql_reader import DEFAULT_TIMEOUT_S, run_sql, run_status

    install()  # the one escaping rule, as the click commands have it
    if argv[1] == "sql":
        return answered("sql", lambda: run_sql(argv[2], argv[3], "table", None, DEFAULT_TIMEOUT_S))

    def status() -> None:
        not_a_store(argv[2], must_exist=False)
        run_status(argv[2])
    return answered("status", status)


def error_line(exc: Exception) -> str:
    """The one line a user mistake (``UserError``, an unreadable or unwritable path) prints, exit status 2:
    here and in every click command (``evoagent.cli.common.one_line_errors``)."""
    if isinstance(exc, OSError):
        return f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
    return f"error: {exc}"


def answered(command: str, call: Callable[[], None]) -> int:
    """Run ``evoagent sql`` or ``status``'s call (plain or through click): its exit status, 0; 2 after a
    one-line error; 130 after Ctrl-C stopped it, saying so."""
    from evoagent.errors import UserError
    from evoagent.sql_reader import Interrupted

    try:
        call()
    except (UserError, OSError) as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    except Interrupted:
        print("interrupted: the query was stopped" if command == "sql" else "interrupted", file=sys.stderr)
        return 130
    return 0


def not_a_store(path: str, *, must_exist: bool) -> None:
    """One line instead of a DuckDB error or a wrong hint when PATH is not a store file (e.g. README.md)."""
    from evoagent.errors import UserError

    p = Path(path)
    if not p.exists():
        if must_exist:
            raise UserError(f"no store at {path}")
        return
    if p.is_dir():
        raise UserError(f"{path} is a folder, not a store file")
    with p.open("rb") as fh:
        if fh.read(12)[8:12] != b"DUCK":
            raise UserError(f"{path} is not an evoagent store (not a DuckDB file)")
