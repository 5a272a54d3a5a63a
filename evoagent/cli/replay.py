"""``evoagent replay``: re-execute recorded runs in our environment and compare rewards."""
from __future__ import annotations

import click

from evoagent.cli.common import EXAMPLE, OneLineGroup, one_line_errors
from evoagent.errors import UserError


@click.group(cls=OneLineGroup, epilog=EXAMPLE + "  evoagent replay intercode --bundled gpt-4")
def replay() -> None:
    """Re-execute recorded runs in our environment and compare rewards."""


@replay.command(name="intercode", epilog=EXAMPLE + "  evoagent replay intercode gpt-4_multiturn_10.json\n"
                "  evoagent replay intercode --bundled gpt-4")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--bundled", "bundled", help="Name of a shipped recording instead of FILE (gpt-4, gpt-3.5, human).")
@one_line_errors
def replay_intercode(file: str | None, bundled: str | None) -> None:
    """Replay every executed recorded action; the last line is `agreement: A/N executed actions (P%)`.

    Actions the recorder never executed (format retries, `blocked`) are skipped and counted."""
    from evoagent.envs.intercode_sql.data import bundled_runs
    from evoagent.envs.intercode_sql.replay import replay_file

    if bundled:
        runs = bundled_runs()
        if bundled not in runs:
            raise UserError(f"no bundled recording {bundled!r} (have {', '.join(sorted(runs))})")
        file = str(runs[bundled])
    if not file:
        raise UserError("give FILE or --bundled NAME")
    click.echo(replay_file(file).render())
