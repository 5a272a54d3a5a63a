"""``evoagent status`` and ``evoagent migrate``: where a campaign stands; upgrading a store's schema."""
from __future__ import annotations

import sys

import click

from evoagent.cli.common import EXAMPLE, not_a_store, one_line_errors
from evoagent.cli.fast import answered


@click.command(epilog=EXAMPLE + "  evoagent status runs/main.duckdb")
@click.argument("store_path")
@one_line_errors
def status(store_path: str) -> None:
    """Where a campaign stands: generation, items done/pending, rewards, budget used."""
    from evoagent.sql_reader import run_status

    not_a_store(store_path, must_exist=False)
    code = answered("status", lambda: run_status(store_path))  # in the worker forked before click loaded
    if code:
        sys.exit(code)


@click.command(epilog=EXAMPLE + "  evoagent migrate runs/old.duckdb")
@click.argument("store_path")
@one_line_errors
def migrate(store_path: str) -> None:
    """Upgrade a store to this version's schema (forward migrations, one transaction each)."""
    from stores import DuckDBStore

    not_a_store(store_path, must_exist=True)
    DuckDBStore(store_path, upgrade=True).close()
    click.echo(f"{store_path}: schema up to date")
