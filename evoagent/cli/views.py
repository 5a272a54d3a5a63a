"""The ``report``, ``show`` and ``lineage`` commands: seeing a campaign, from its snapshot, while it runs or after.

Like every reader they open the store read-only (its latest snapshot while a campaign writes to it).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from evoagent.cli.common import EXAMPLE, one_line_errors
from evoagent.errors import UserError

if TYPE_CHECKING:  # the store modules load duckdb, pyarrow and polars: only when a command runs
    from stores.base import Store


@contextmanager
def _reader(store_path: str) -> Iterator[Store]:
    from stores import open_reader

    store = open_reader(store_path)
    try:
        yield store
    finally:
        store.close()


def _echo_lines(lines: list[str]) -> None:
    click.echo("\n".join(lines))


@click.command(epilog=EXAMPLE + "  evoagent report runs/main.duckdb -o report.html\n"
              "  evoagent report runs/main.duckdb -o report.html --every 30")
@click.argument("store_path")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="The HTML file to write.")
@click.option("--every", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
              help="Rewrite the report every SECONDS while the campaign runs (the open page reloads itself) "
                   "until every planned generation is committed, or Ctrl-C.")
@one_line_errors
def report(store_path: str, out: str, every: float | None) -> None:
    """Write one self-contained HTML report (plots, best trajectories, transcripts, lineage); works offline.

    With --every, a page for a browser to keep open during a campaign: rewritten (atomically)
    from the store's snapshot, never blocking the campaign, with the time it was written."""
    import time

    from stores.readonly import refuse_store_paths

    refuse_store_paths(store_path, out)
    folder = Path(out).resolve().parent
    if not folder.is_dir():
        raise UserError(f"cannot write {out}: no folder {folder}")
    if every is None:
        _write_report(store_path, out, None)
        return
    try:
        while not _write_report(store_path, out, every):
            time.sleep(every)
    except KeyboardInterrupt:
        click.echo(f"stopped: {out} is the last report written, whole", err=True)


def _write_report(store_path: str, out: str, every: float | None) -> bool:
    """Write the report once; True when nothing more will come (the campaign is complete, or no --every)."""
    from evoagent.report.live import read_frame
    from evoagent.report.page import waiting_page, write_page, write_report

    with _reader(store_path) as store:
        if not store.scalar("SELECT count(*) FROM trajectories"):
            if every is None:
                raise UserError(f"{store_path} has no trajectories yet: nothing to report")
            write_page(waiting_page(store_path, every), out)
            click.echo(f"{out}: waiting for the first trajectories (rewritten every {every:g} s)")
            return False
        frame = read_frame(store) if every is not None else None
        last = frame is None or frame.done or frame.planned is None  # no campaign (imported runs): once
        got = write_report(store, out, None if last else every)
    click.echo(f"{got['path']}: {got['bytes'] / 1e6:.1f} MB, {got['tasks']} tasks, {got['trajectories']} "
               f"trajectories ({got['transcripts']} with transcripts), panels: {', '.join(got['panels'])}"
               + ("" if last else f"; rewritten every {every:g} s"))
    return last


def _view(fn: Callable[..., list[str]]) -> Callable[..., None]:
    def run(store_path: str, traj_id: str, **kwargs: Any) -> None:
        with _reader(store_path) as store:
            _echo_lines(fn(store, traj_id, **kwargs))
    return run


@click.command(epilog=EXAMPLE + "  evoagent show runs/main.duckdb 4f51c84c2b95d58666eb7f527221ed58\n"
              "  evoagent show runs/main.duckdb 4f51c8 --full")
@click.argument("store_path")
@click.argument("traj_id")
@click.option("--full", is_flag=True, help="Print long thoughts, actions and observations whole.")
@one_line_errors
def show(store_path: str, traj_id: str, full: bool) -> None:
    """One trajectory's transcript (thought, action, observation, rewards per step), its parents and rewards.

    TRAJ_ID may be a unique prefix of the id."""
    from evoagent.report.terminal import show as view

    _view(view)(store_path, traj_id, full=full)


@click.command(epilog=EXAMPLE + "  evoagent lineage runs/main.duckdb 4f51c84c2b95d58666eb7f527221ed58 --depth 3")
@click.argument("store_path")
@click.argument("traj_id")
@click.option("--depth", default=10, show_default=True, type=click.IntRange(1, 200),
              help="Generations of parents to walk up.")
@one_line_errors
def lineage(store_path: str, traj_id: str, depth: int) -> None:
    """The ancestry tree of one trajectory: operators on the edges, rewards on the nodes.

    TRAJ_ID may be a unique prefix of the id."""
    from evoagent.report.terminal import lineage as view

    _view(view)(store_path, traj_id, depth=depth)
