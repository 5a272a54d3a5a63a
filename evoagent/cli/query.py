"""``evoagent sql`` and ``evoagent export``: read a store (its snapshot while a campaign writes) with SQL.

Only DuckDB and Arrow load on these paths (no pandas, no polars, no LLM SDK)."""
from __future__ import annotations

import sys

import click

from evoagent.cli.common import EXAMPLE, one_line_errors
from evoagent.cli.fast import answered
from evoagent.errors import UserError
from evoagent.sql_reader import DEFAULT_TIMEOUT_S


@click.command(epilog=EXAMPLE + "  evoagent sql runs/main.duckdb \"SELECT generation, success_rate FROM generations\"\n"
              "  evoagent sql runs/main.duckdb \"SELECT * FROM trajectories\" --format parquet --out t.parquet")
@click.argument("store_path")
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table")
@click.option("--out", type=click.Path(dir_okay=False), help="Write to this file (required for parquet).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=DEFAULT_TIMEOUT_S, show_default=True,
              help="Stop the query (and its output) after this many seconds; 0: no limit.")
@one_line_errors
def sql(store_path: str, query: str, fmt: str, out: str | None, timeout_s: float) -> None:
    """Run one read-only SQL query over a store's views, even while a campaign writes to it.

    Reads the store file when no campaign holds it, else its latest Parquet snapshot; never
    waits, and its connection can write no file (--out is written by evoagent itself). The
    query runs in a worker process capped at 1.5 GiB; a table stops at 1,000 rows (use --out
    for all); Ctrl-C stops it at once."""
    from evoagent.sql_reader import run_sql

    if fmt == "parquet" and not out:
        raise UserError("--format parquet needs --out FILE")
    code = answered("sql", lambda: run_sql(store_path, query, fmt, out, timeout_s))
    if code:
        sys.exit(code)


@click.command(epilog=EXAMPLE + "  evoagent export runs/main.duckdb --out exports/\n"
              "  evoagent export runs/main.duckdb --table trajectories --table steps --out exports/\n"
              "  evoagent export runs/main.duckdb --format sft --out training/ --jsonl")
@click.argument("store_path")
@click.option("--table", "tables", multiple=True, help="View to export (repeatable; default: all views).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the Parquet files.")
@click.option("--format", "fmt", type=click.Choice(["table", "sft", "dpo", "prm"]), default="table",
              show_default=True, help="table: the views; sft, dpo, prm: training data for TRL (DIR/<format>.parquet).")
@click.option("--jsonl", is_flag=True, help="sft/dpo/prm: also write DIR/<format>.jsonl.")
@click.option("--reward-source", default=None,
              help="dpo/prm: the reward source to pair or label by (default: the store's first step-level one).")
@click.option("--threshold", type=float, default=None,
              help="dpo: the least reward margin of a pair (default: any); prm: a step is good at >= this (default 0.5).")
@one_line_errors
def export(store_path: str, tables: tuple[str, ...], out: str, fmt: str, jsonl: bool,
           reward_source: str | None, threshold: float | None) -> None:
    """Export views as Parquet (partitioned by campaign/generation where set), readable by Polars/PyArrow;
    or, with --format, training data for TRL (SFT conversations, step-level DPO pairs, PRM step labels)."""
    from stores import VIEWS, open_reader
    from stores.readonly import refuse_store_paths

    if fmt != "table":
        if tables:
            raise UserError(f"--table exports views; --format {fmt} exports training data: give one of them")
        from evoagent.training_data import export_training

        written = export_training(store_path, fmt, out, jsonl=jsonl, reward_source=reward_source,
                                  threshold=threshold)
        for path in written.paths:
            click.echo(path)
        click.echo(written.summary(fmt))
        return
    if jsonl or reward_source is not None or threshold is not None:
        raise UserError("--jsonl, --reward-source and --threshold apply to --format sft, dpo and prm")
    names = list(tables) or list(VIEWS)
    bad = [t for t in names if t not in VIEWS]
    if bad:
        raise UserError(f"unknown view {bad[0]!r} (have {', '.join(VIEWS)})")
    refuse_store_paths(store_path, out, replaced=False)
    store = open_reader(store_path)
    try:
        for name in names:
            click.echo(store.export(name, out))
    finally:
        store.close()
