"""``evoagent replay``: re-execute recorded runs in our environment and compare rewards.

Its subcommands are the environments' replayers (``Environment.replayers``).
"""
from __future__ import annotations

from typing import Any

import click

from evoagent.cli.common import EXAMPLE, one_line_errors
from evoagent.cli.imports import EnvCommands, _epilog


def _replay_command(rep: Any) -> click.Command:
    @one_line_errors
    def run(file: str | None, bundled: str | None) -> None:
        for text in rep.run(file, bundled):
            click.echo(text)

    return click.Command(rep.name, callback=run, help=rep.help, epilog=_epilog(rep.examples), params=[
        click.Argument(["file"], required=False, type=click.Path(dir_okay=False)),
        click.Option(["--bundled", "bundled"], help=rep.bundled_help)])


class _Replayers(EnvCommands):
    attr = "replayers"
    make = staticmethod(_replay_command)


@click.group(cls=_Replayers, epilog=EXAMPLE + "  evoagent replay intercode --bundled gpt-4")
def replay() -> None:
    """Re-execute recorded runs in our environment and compare rewards."""
