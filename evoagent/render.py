"""Terminal output for the CLI: result tables, status, progress and campaign summaries."""
from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from evoagent.errors import UserError
from stores.base import Store


def _console() -> Console:
    return Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def rich_table(table: pa.Table, title: str | None = None) -> Table:
    t = Table(title=title)
    for name in table.column_names:
        t.add_column(name, overflow="fold")
    for row in table.to_pylist():
        t.add_row(*("" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row.values()))
    return t


def write_result(table: pa.Table, fmt: str, out: str | None) -> None:
    """Print or write a query result in the asked format."""
    if fmt == "parquet":
        if not out:
            raise UserError("--format parquet needs --out FILE")
        pq.write_table(table, out)
        return
    if fmt == "table":
        text = None
        _console().print(rich_table(table))
    elif fmt == "csv":
        buf = io.BytesIO()
        pacsv.write_csv(table, buf)
        text = buf.getvalue().decode()
    else:
        text = "\n".join(json.dumps(r, default=str) for r in table.to_pylist()) + "\n"
    if text is not None:
        if out:
            with open(out, "w") as fh:
                fh.write(text)
        else:
            sys.stdout.write(text)


def print_status(store: Store) -> None:
    """Generation, items done/pending, rewards and budget used, from a snapshot."""
    from evoagent.llm.ledger import spent

    c = json.loads(store.get_meta("campaign") or "{}")
    con = _console()
    if not c:
        con.print(f"{store.path}: no campaign (imported data only)")
    gens = store.query(
        "SELECT generation, status, n_items, best_reward, mean_reward, success_rate, env_steps, "
        "committed_at FROM generations ORDER BY generation"
    )
    items = store.query(
        "SELECT generation, count(*) FILTER (WHERE status = 'done') AS done, "
        "count(*) FILTER (WHERE status = 'failed') AS failed, "
        "count(*) FILTER (WHERE status = 'pending') AS pending FROM work_items "
        "GROUP BY generation ORDER BY generation DESC LIMIT 1"
    ).to_pylist()
    steps = store.scalar("SELECT coalesce(sum(env_steps), 0) FROM work_items") or 0
    usd, tokens = spent(store)
    calls = store.query("SELECT count(*) AS n, count(*) FILTER (WHERE batch_id IS NOT NULL) AS batched "
                        "FROM llm_calls WHERE status = 'ok'").to_pylist()[0]
    if c:
        con.print(f"campaign {c.get('name')!r}: {store.path}")
        limit = c.get("budget.generations")
        last = store.last_committed_generation()
        con.print(f"generations committed: {'none' if last is None else last} of {limit}")
    if items:
        i = items[0]
        con.print(f"generation {i['generation']}: {i['done']} items done, {i['failed']} failed, {i['pending']} pending")
    con.print(f"budget used: {steps} env steps" + (f" of {c['budget.env_steps']}" if c.get("budget.env_steps") else "")
              + f", ${usd:.4f}" + (f" of ${c['budget.usd']}" if c.get("budget.usd") else ""))
    if calls["n"]:
        con.print(f"LLM: {calls['n']} calls ({calls['batched']} batched), {tokens} tokens, ${usd:.4f}")
        done = store.scalar("SELECT count(DISTINCT generation) FROM generations WHERE status = 'committed'") or 0
        total = (c.get("budget.generations") or 0) + 1
        if done and total > done:
            con.print(f"projection: ${usd / done * total:.4f} for all {total} generations "
                      f"at this run's ${usd / done:.4f} per generation")
    if gens.num_rows:
        con.print(rich_table(gens, title="generations"))


@contextlib.contextmanager
def progress_printer() -> Iterator[Callable[[dict[str, Any]], None]]:
    """A rich progress bar fed by the engine's ``on_progress`` callback."""
    progress = Progress(
        TextColumn("gen {task.fields[gen]}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("items"), TimeElapsedColumn(), TimeRemainingColumn(), transient=True,
        console=Console(stderr=True),
    )
    bars: dict[int, Any] = {}

    def update(info: dict[str, Any]) -> None:
        g = info["generation"]
        if g not in bars:
            for old in bars.values():
                progress.remove_task(old)
            bars.clear()
            bars[g] = progress.add_task("", total=info["total"], gen=g)
        progress.update(bars[g], completed=info["done"], total=info["total"])

    with progress:
        yield update


def print_outcome(outcome: Any, store_path: str) -> None:
    """The per-generation curve and the summary a campaign ends with."""
    con = _console()
    book = outcome.logbook
    if not len(book):
        con.print(f"{outcome.status}; nothing committed yet. Resume with: evoagent resume {store_path}")
        return
    curve = Table(title="per generation")
    for col in ("gen", "items", "success", "of bound", "members solved", "mean reward", "env steps"):
        curve.add_column(col, justify="right")
    for r in book:
        curve.add_row(str(r["gen"]), str(r["nevals"]), f"{100 * r['success_rate']:.1f}%",
                      f"{100 * r['of_bound']:.1f}%" if r.get("of_bound") is not None else "-",
                      f"{100 * r.get('members_solved', 0):.1f}%", f"{r['avg']:.3f}", str(r["env_steps"]))
    con.print(curve)
    first, last = book[0], book[-1]
    summary = Table(title="campaign")
    for col in ("", "generation 0", f"generation {last['gen']}"):
        summary.add_column(col, justify="right")
    summary.add_row("success rate", f"{100 * first['success_rate']:.1f}%", f"{100 * last['success_rate']:.1f}%")
    if last.get("bound") is not None:
        summary.add_row("upper bound (replay pool)", f"{100 * last['bound']:.1f}%", f"{100 * last['bound']:.1f}%")
    summary.add_row("members solved", f"{100 * first.get('members_solved', 0):.1f}%",
                    f"{100 * last.get('members_solved', 0):.1f}%")
    summary.add_row("mean reward", f"{first['avg']:.3f}", f"{last['avg']:.3f}")
    con.print(summary)
    con.print(f"{outcome.status}: {last['env_steps']} environment executions in total, "
              f"{outcome.env_steps} this run, {outcome.seconds:.1f}s. Store: {store_path}")
