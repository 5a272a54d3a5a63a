"""The ``evoagent`` command: each command opens a store, makes one library call, prints.

User mistakes (missing file, bad format, bad SQL, bad campaign key) are one
line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from evoagent.errors import UserError

EXAMPLE = "\b\nExample:\n"


def _one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:  # e.g. an --out path that cannot be written
            click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
            sys.exit(2)
    return wrapper


class _OneLineUsage(click.ClickException):
    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class OneLineGroup(click.Group):
    """Usage mistakes (a missing option, a path that is not there) are one line and exit 2 too,
    not click's usage block: every subcommand is parsed inside this group's calls."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        from evoagent.escaping import install

        install()  # everything printed from here on goes through the one escaping rule
        return super().main(*args, **kwargs)

    @staticmethod
    def _one_line(exc: click.UsageError) -> click.ClickException:
        where = exc.ctx.command_path if exc.ctx is not None else "evoagent"
        return _OneLineUsage(f"{' '.join(exc.format_message().split())} (see: {where} --help)")

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise self._one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise self._one_line(exc) from None


def _not_a_store(path: str, *, must_exist: bool) -> None:
    """One line instead of a DuckDB error or a wrong hint when PATH is not a store file (e.g. README.md)."""
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


@click.group(cls=OneLineGroup, epilog=EXAMPLE + "  evoagent run experiments/intercode_sql.toml --store runs/main.duckdb\n"
             "  evoagent status runs/main.duckdb\n"
             "  evoagent sql runs/main.duckdb \"SELECT generation, success_rate FROM generations\"")
@click.version_option(package_name="evoagent")
def main() -> None:
    """Evolve populations of LLM-agent trajectories; the population is a DuckDB store you query with SQL."""


# -- data in ---------------------------------------------------------------
@main.group(name="import", epilog=EXAMPLE + "  evoagent import intercode --bundled --store runs/recorded.duckdb")
def import_() -> None:
    """Import recorded agent runs into a store."""


@import_.command(name="intercode", epilog=EXAMPLE + "  evoagent import intercode --bundled --store runs/recorded.duckdb\n"
                 "  evoagent import intercode my_model_multiturn_10.json --store runs/recorded.duckdb")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--store", "store_path", required=True, help="Store file (created if missing).")
@click.option("--bundled", is_flag=True, help="Also import the recorded GPT-4, GPT-3.5 and human runs shipped with evoagent.")
@_one_line_errors
def import_intercode(files: tuple[str, ...], store_path: str, bundled: bool) -> None:
    """Import InterCode-SQL trajectory files (InterCode's JSON, optionally gzipped).

    All files are checked before anything is written, then their trajectories are written in one
    transaction: one bad file stops the import with nothing written (no store is created)."""
    from evoagent.envs.intercode_sql.data import bundled_runs, load_recorded, load_tasks
    from stores import DuckDBStore, TrajectoryBatch

    paths = [Path(f) for f in files] + (sorted(bundled_runs().values()) if bundled else [])
    if not paths:
        raise UserError("give one or more FILES, or --bundled")
    _not_a_store(store_path, must_exist=False)
    tasks = load_tasks()
    loaded = [(p, load_recorded(p, tasks)) for p in paths]
    batch = TrajectoryBatch.from_trajectories([t for _, ts in loaded for t in ts], campaign="import",
                                              reward_source="recorded")
    with DuckDBStore(store_path) as store:
        store.add_tasks(tasks)
        n = store.write(batch)
    for p, trajs in loaded:
        blocked = sum(s.observation is None for t in trajs for s in t.steps)
        click.echo(f"{p.name}: {len(trajs)} trajectories, {sum(t.n_steps for t in trajs)} steps"
                   + (f" ({blocked} never executed: 'blocked', stored with no observation)" if blocked else ""))
    click.echo(f"{store_path}: {n} new trajectories")


@import_.command(name="game24", epilog=EXAMPLE + "  evoagent import game24 --bundled --store runs/game24_logs.duckdb")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--store", "store_path", required=True, help="Store file (created if missing).")
@click.option("--bundled", is_flag=True, help="Also import GPT-4's Tree of Thoughts, CoT and standard runs shipped with evoagent.")
@_one_line_errors
def import_game24(files: tuple[str, ...], store_path: str, bundled: bool) -> None:
    """Import Tree of Thoughts' Game of 24 logs (JSON, optionally gzipped): each final answer a trajectory.

    Every action is judged by the game24 environment (errors are steps with valid = false); the
    outcome is the log's own verdict. All files are checked before one transaction writes them."""
    from evoagent.envs.game24.data import bundled_logs
    from evoagent.envs.game24.recorded import import_logs

    paths = [Path(f) for f in files] + (sorted(bundled_logs().values()) if bundled else [])
    if not paths:
        raise UserError("give one or more FILES, or --bundled")
    _not_a_store(store_path, must_exist=False)
    for rec, n in import_logs(paths, store_path):
        click.echo(f"{rec.source}: {n} answers")
    click.echo(f"{store_path}: imported")


@main.group(epilog=EXAMPLE + "  evoagent replay intercode --bundled gpt-4")
def replay() -> None:
    """Re-execute recorded runs in our environment and compare rewards."""


@replay.command(name="intercode", epilog=EXAMPLE + "  evoagent replay intercode gpt-4_multiturn_10.json\n"
                "  evoagent replay intercode --bundled gpt-4")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--bundled", "bundled", help="Name of a shipped recording instead of FILE (gpt-4, gpt-3.5, human).")
@_one_line_errors
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


# -- reading -----------------------------------------------------------------
@main.command(epilog=EXAMPLE + "  evoagent sql runs/main.duckdb \"SELECT generation, success_rate FROM generations\"\n"
              "  evoagent sql runs/main.duckdb \"SELECT * FROM trajectories\" --format parquet --out t.parquet")
@click.argument("store_path")
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table")
@click.option("--out", type=click.Path(dir_okay=False), help="Write to this file (required for parquet).")
@_one_line_errors
def sql(store_path: str, query: str, fmt: str, out: str | None) -> None:
    """Run one read-only SQL query over a store's views, even while a campaign writes to it.

    Reads the store file when no campaign holds it, else its latest Parquet snapshot; never
    waits, and its connection can write no file (--out is written by evoagent itself)."""
    from evoagent.render import write_result
    from stores import open_reader
    from stores.readonly import refuse_store_paths

    if fmt == "parquet" and not out:
        raise UserError("--format parquet needs --out FILE")
    if out:
        refuse_store_paths(store_path, out)
    store = open_reader(store_path)
    try:
        write_result(store.relation(query), fmt, out)
    finally:
        store.close()


@main.command(epilog=EXAMPLE + "  evoagent export runs/main.duckdb --out exports/\n"
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
@_one_line_errors
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


@main.command(epilog=EXAMPLE + "  evoagent status runs/main.duckdb")
@click.argument("store_path")
@_one_line_errors
def status(store_path: str) -> None:
    """Where a campaign stands: generation, items done/pending, rewards, budget used."""
    from evoagent.render import print_status
    from stores import open_reader

    _not_a_store(store_path, must_exist=False)
    store = open_reader(store_path)
    try:
        print_status(store)
    finally:
        store.close()


@main.command(epilog=EXAMPLE + "  evoagent migrate runs/old.duckdb")
@click.argument("store_path")
@_one_line_errors
def migrate(store_path: str) -> None:
    """Upgrade a store to this version's schema (forward migrations, one transaction each)."""
    from stores import DuckDBStore

    _not_a_store(store_path, must_exist=True)
    DuckDBStore(store_path, upgrade=True).close()
    click.echo(f"{store_path}: schema up to date")


# -- campaigns -----------------------------------------------------------------
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


@main.command(epilog=EXAMPLE + "  evoagent run experiments/intercode_sql.toml --store runs/main.duckdb\n"
              "  evoagent run experiments/intercode_sql.toml --store runs/x.duckdb --set mu=6 --set budget.generations=3")
@click.argument("campaign_file", type=click.Path(dir_okay=False))
@click.option("--store", "store_path", required=True, help="Store file for this campaign (new or empty).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a campaign key (repeatable).")
@_one_line_errors
def run(campaign_file: str, store_path: str, overrides: tuple[str, ...]) -> None:
    """Run a campaign file (validated before any work); Ctrl-C stops cleanly."""
    from evoagent import campaign, launch

    c = campaign.load(campaign_file, overrides)
    _run_campaign(launch.start, store_path, c, store_path)


@main.command(epilog=EXAMPLE + "  evoagent resume runs/main.duckdb\n"
              "  evoagent resume runs/main.duckdb --set budget.generations=10")
@click.argument("store_path")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Change a key that does not affect results: budget.*, concurrency, policy.base_url, "
                   "policy.batch, policy rate limits and retries (repeatable).")
@_one_line_errors
def resume(store_path: str, overrides: tuple[str, ...]) -> None:
    """Continue the campaign stored at STORE_PATH, whenever it was interrupted."""
    from evoagent import launch

    _not_a_store(store_path, must_exist=True)
    _run_campaign(launch.resume, store_path, store_path, overrides)


from evoagent import cli_views  # noqa: E402,F401 - registers report, show and lineage on `main`
from evoagent import cli_rm  # noqa: E402,F401 - registers the rm group (train, eval) on `main`

if __name__ == "__main__":  # pragma: no cover
    main()
