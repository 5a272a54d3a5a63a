"""``evoagent watch``: a campaign's curve and throughput redrawn in the terminal as generations commit."""
from __future__ import annotations

import sys
import time

import click

from evoagent.cli.common import EXAMPLE, not_a_store, one_line_errors


@click.command(epilog=EXAMPLE + "  evoagent watch runs/main.duckdb\n  evoagent watch runs/main.duckdb --once")
@click.argument("store_path")
@click.option("--every", default=2.0, show_default=True, type=click.FloatRange(0.2, 3600),
              help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@one_line_errors
def watch(store_path: str, every: float, once: bool) -> None:
    """Redraw a campaign's curve, its current generation and throughput until it completes (or Ctrl-C;
    a store of imported runs, with no campaign, is shown once).

    Reads the store's Parquet snapshot (the file only when it has none), so the campaign
    writing it is never blocked or slowed by the lock; a store that is not one, or whose
    snapshot is of another schema version (being migrated), is one line and exit status 2."""
    from rich.live import Live

    from evoagent.escaping import safe_console
    from evoagent.report.live import open_for_watch, read_frame, render_frame
    from stores.readonly import WriterActive

    not_a_store(store_path, must_exist=True)

    def frame() -> object | None:
        try:
            store = open_for_watch(store_path)
        except WriterActive:  # a writer is starting and has not published its first snapshot yet
            return None
        try:
            return read_frame(store)
        finally:
            store.close()

    console = safe_console()
    first = frame()
    if once:
        console.print(render_frame(first) if first is not None else "no snapshot yet")
        return
    if not sys.stdout.isatty():  # a log: one frame whenever it changes
        shown = None
        current = first
        while True:
            if current is not None and current != shown:
                console.print(render_frame(current))
                shown = current
            if current is not None and (current.done or current.planned is None):  # nothing more will come
                return
            time.sleep(every)
            current = frame()
    try:
        with Live(render_frame(first) if first else "waiting for the first snapshot...", console=console,
                  auto_refresh=False) as live:
            current = first
            while current is None or not (current.done or current.planned is None):
                time.sleep(every)
                current = frame()
                if current is not None:
                    live.update(render_frame(current), refresh=True)
    except KeyboardInterrupt:
        pass
