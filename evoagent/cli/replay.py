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


def _replay_code(kind: str, file: str | None, bundled: str | None) -> None:
    from evoagent.envs.code.data import BUNDLED, DATA
    from evoagent.envs.code.recorded import replay_file

    if bundled:
        names = [(name, DATA / rel) for rel, name in BUNDLED.items() if rel.startswith(kind + "/")]
        matches = [path for name, path in names if name == bundled]
        if not matches:
            raise UserError(f"no bundled {kind} recording {bundled!r} "
                            f"(have {', '.join(sorted({name for name, _ in names}))})")
        for path in matches:  # a source name may cover a HumanEval and an MBPP file
            click.echo(replay_file(path, kind).render())
        return
    if not file:
        raise UserError("give FILE or --bundled NAME")
    click.echo(replay_file(file, kind).render())


_REPLAY_HELP = ("Re-executes each row's final program against the row's hidden tests (recorded: is_solved) and, "
                "for LATS, the first program against the agent's own tests in its feedback; the last line is "
                "`agreement: N/M executed programs (P%)`, disagreements are listed by task.")


@replay.command(name="lats", epilog=EXAMPLE + "  evoagent replay lats --bundled lats-mcts-gpt-4")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--bundled", "bundled", help="Source name of a shipped LATS log instead of FILE.")
@one_line_errors
def replay_lats(file: str | None, bundled: str | None) -> None:
    """Re-execute a LATS log's programs in the code sandbox."""
    _replay_code("lats", file, bundled)


replay_lats.help = (replay_lats.help or "") + "\n\n" + _REPLAY_HELP


@replay.command(name="reflexion", epilog=EXAMPLE + "  evoagent replay reflexion --bundled reflexion-gpt-4")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--bundled", "bundled", help="Source name of a shipped Reflexion log instead of FILE.")
@one_line_errors
def replay_reflexion(file: str | None, bundled: str | None) -> None:
    """Re-execute a Reflexion log's final programs in the code sandbox."""
    _replay_code("reflexion", file, bundled)


replay_reflexion.help = (replay_reflexion.help or "") + "\n\n" + _REPLAY_HELP
