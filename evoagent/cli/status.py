"""``evoagent status`` and ``evoagent migrate``: where a campaign stands; upgrading a store's schema."""
from __future__ import annotations

import sys

import click

from evoagent.cli.common import EXAMPLE, not_a_store, one_line_errors


@click.command(epilog=EXAMPLE + "  evoagent status runs/main.duckdb")
@click.argument("store_path")
@one_line_errors
def status(store_path: str) -> None:
    """Where a campaign stands: generation, items done/pending, rewards, budget used."""
    from evoagent.sql_reader import Interrupted, run_status

    not_a_store(store_path, must_exist=False)
    try:
        run_status(store_path)  # in the worker started before the arguments were parsed
    except Interrupted:
        click.echo("interrupted", err=True)
        sys.exit(130)


@click.command(epilog=EXAMPLE + "  evoagent migrate runs/old.duckdb")
@click.argument("store_path")
@one_line_errors
def migrate(store_path: str) -> None:
    """Upgrade a store to this version's schema (forward migrations, one transaction each)."""
    from stores import DuckDBStore

    not_a_store(store_path, must_exist=True)
    DuckDBStore(store_path, upgrade=True).close()
    click.echo(f"{store_path}: schema up to date")
