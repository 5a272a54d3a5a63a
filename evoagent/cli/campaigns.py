"""``evoagent run`` and ``evoagent resume``: campaigns, with a progress bar and a clean Ctrl-C."""
from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from evoagent.cli.common import EXAMPLE, not_a_store, one_line_errors


def _run_campaign(call: Callable[..., Any], store_path: str, *args: Any) -> None:
    """Run with a progress bar; the first Ctrl-C stops after the items in flight, a second aborts."""
    from evoagent.progress import progress_printer
    from evoagent.render import print_outcome

    stop = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        newline = "\n" if sys.stderr.isatty() else ""  # ends the terminal's ^C echo; no blank line in logs
        click.echo(f"{newline}stopping after the items in flight (Ctrl-C again to abort)...", err=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    resume_hint = f"Resume with: evoagent resume {store_path}"
    try:
        with progress_printer() as on_progress:
            outcome = call(*args, on_progress=on_progress, stop=stop)
    except KeyboardInterrupt:
        click.echo(f"aborted; committed work is safe. {resume_hint}", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # do not wait for items still running (e.g. on a Message Batch)
    finally:
        signal.signal(signal.SIGINT, previous)
    print_outcome(outcome, store_path)
    if outcome.status == "stopped: interrupted":
        click.echo(f"interrupted; finished work is committed. {resume_hint}", err=True)
        sys.exit(130)
    if outcome.status.startswith("stopped: budget."):
        key = outcome.status.split(": ", 1)[1]
        click.echo(f"{key} reached; go on with: evoagent resume {store_path} --set {key}=MORE", err=True)


@click.command(epilog=EXAMPLE + "  evoagent run experiments/intercode_sql.toml --store runs/main.duckdb\n"
              "  evoagent run experiments/intercode_sql.toml --store runs/x.duckdb --set mu=6 --set budget.generations=3")
@click.argument("campaign_file", type=click.Path(dir_okay=False))
@click.option("--store", "store_path", required=True, help="Store file for this campaign (new or empty).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a campaign key (repeatable).")
@one_line_errors
def run(campaign_file: str, store_path: str, overrides: tuple[str, ...]) -> None:
    """Run a campaign file (validated before any work); Ctrl-C stops cleanly."""
    from evoagent import campaign

    c = campaign.load(campaign_file, overrides)  # every key problem at once, before the engine loads
    from evoagent import launch

    _run_campaign(launch.start, store_path, c, store_path)


@click.command(epilog=EXAMPLE + "  evoagent resume runs/main.duckdb\n"
              "  evoagent resume runs/main.duckdb --set budget.generations=10")
@click.argument("store_path")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Change a key that does not affect results: budget.*, concurrency, policy.base_url, "
                   "policy.batch, policy rate limits and retries (repeatable).")
@one_line_errors
def resume(store_path: str, overrides: tuple[str, ...]) -> None:
    """Continue the campaign stored at STORE_PATH, whenever it was interrupted."""
    from evoagent import launch

    not_a_store(store_path, must_exist=True)
    _run_campaign(launch.resume, store_path, store_path, overrides)
