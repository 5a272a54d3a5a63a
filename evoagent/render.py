"""Terminal output for the CLI: result tables, status and campaign summaries (progress: ``progress.py``)."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

import duckdb

from evoagent.boxtable import TABLE_DRAWN_CHARS, draw_table
from evoagent.errors import UserError
from evoagent.escaping import raw, visible
from stores.readonly import ReadOnlyStore, parquet_safe, query_error, sql_name, write_parquet_file

if TYPE_CHECKING:  # rich loads for a campaign's summary, Arrow for csv/json/parquet: not for a table or status
    from rich.console import Console


def _console() -> Console:
    from evoagent.escaping import safe_console

    return safe_console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)


_NONFINITE = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)')
_NESTED = {"list", "struct", "map", "union", "array"}
_CSV_NATIVE = {"boolean", "tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint",
               "uinteger", "ubigint", "float", "double", "decimal", "varchar"}
_BATCH_ROWS = 65_536


def _as_text(rel: duckdb.DuckDBPyRelation, for_csv: bool) -> duckdb.DuckDBPyRelation:
    """Columns as DuckDB's own text for their values, whatever the type (intervals, blobs,
    infinite dates, nanosecond timestamps, time zones...). For CSV, numbers, booleans and
    strings stay as they are (the CSV writer prints them exactly) and nested values are JSON."""
    exprs = []
    for i, (name, typ) in enumerate(zip(rel.columns, rel.types)):
        value = f"#{i + 1}"
        if not (for_csv and typ.id in _CSV_NATIVE):
            value = f"CAST({'to_json(' + value + ')' if for_csv and typ.id in _NESTED else value} AS VARCHAR)"
        exprs.append(f"{value} AS {sql_name(name)}")
    return rel.project(", ".join(exprs)) if exprs else rel


def _json_lines(rel: duckdb.DuckDBPyRelation) -> Iterator[str]:
    """One JSON object per row, each value as DuckDB writes it in JSON (exact numbers, nested
    values as arrays/objects); NaN and infinities, which JSON lacks, as strings."""
    names = [json.dumps(n) for n in rel.columns]
    values = rel.project(", ".join(f"CAST(to_json(#{i + 1}) AS VARCHAR)" for i in range(len(names))))
    for batch in values.to_arrow_reader(_BATCH_ROWS):
        for row in zip(*(c.to_pylist() for c in batch.columns)):
            yield "{" + ", ".join(f"{n}: {_finite(v)}" for n, v in zip(names, row)) + "}\n"


def _finite(fragment: str | None) -> str:
    if fragment is None:
        return "null"
    if "NaN" not in fragment and "Infinity" not in fragment:
        return fragment
    return _NONFINITE.sub(lambda m: f'"{m.group(1)}"' if m.group(1) else m.group(0), fragment)


TABLE_ROWS = 1_000  # a table on the terminal stops after this many rows...
TABLE_CHARS = 1_000_000  # ...or this many characters of cell text (or as boxtable's drawn-text caps say)
CELL_CHARS = 10_000  # a longer cell is cut, saying how much is left out...
RUN_CHARS = 100_000_000  # ...and shorter with many columns: the rows run hold at most this many characters
_TABLE_BATCH = 1_024


def cell_cut(n_columns: int) -> int:
    """Characters a cell keeps in a table of ``n_columns``: CELL_CHARS, less where the TABLE_ROWS + 1
    rows DuckDB runs (and holds) would pass RUN_CHARS (at 200 columns, 499)."""
    return max(1, min(CELL_CHARS, RUN_CHARS // ((TABLE_ROWS + 1) * max(n_columns, 1))))


def _table(rel: duckdb.DuckDBPyRelation, fh: IO[str], width: int | None) -> list[str]:
    """The result as a table: at most TABLE_ROWS + 1 rows are run, each cell cut by DuckDB to
    :func:`cell_cut` (with its length beside it), fetched as Python tuples (no Arrow) in batches
    of about TABLE_CHARS at most, stopped at the row and character budget, and drawn a line at
    a time under boxtable's caps on drawn text."""
    n = len(rel.columns)
    keep = cell_cut(n)
    cut_exprs = []
    for i in range(n):
        text = f"CAST(#{i + 1} AS VARCHAR)"
        cut_exprs += [f"left({text}, {keep})", f"length({text})"]
    rows: list[list[str]] = []
    chars = 0
    more = cut = False
    limited = rel.project(", ".join(cut_exprs)).limit(TABLE_ROWS + 1) if n else rel.limit(0)
    for row in limited.iter_rows(max(1, min(_TABLE_BATCH, TABLE_CHARS // (max(n, 1) * keep)))):
        if len(rows) >= TABLE_ROWS or chars >= TABLE_CHARS:
            more = True
            break
        cells = []
        for value, length in zip(row[0::2], row[1::2]):
            if value is None:
                cells.append("NULL")
                continue
            if length > keep:
                cut = True
                value += f" … [{length - keep:,} more characters]"
            chars += min(length, keep)
            cells.append(value)
        rows.append(cells)
    drawn = draw_table(fh, rel.columns, rows, width=width or _terminal_width())
    if drawn.rows < len(rows):
        more = True
    cuts = ([f"longer than {keep:,} characters"] if cut else []) + ([f"taller than {drawn.lines:,} lines"]
                                                                     if drawn.cut else [])
    notes = [f"cells {' or '.join(cuts)} are cut; --format csv or json shows them whole"] if cuts else []
    if more:
        notes.append(f"table stopped at {drawn.rows:,} rows (a table shows at most {TABLE_ROWS:,} rows, "
                     f"{TABLE_CHARS:,} characters of cells or {TABLE_DRAWN_CHARS:,} drawn); the query returns "
                     "more: write all of it with --format csv|json|parquet --out FILE")
    return notes


def _terminal_width() -> int:
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else 160


def _render(rel: duckdb.DuckDBPyRelation, fmt: str, fh: IO[str], width: int | None) -> list[str]:
    if fmt == "table":
        return _table(rel, fh, width)
    if fmt == "csv":
        import pyarrow.csv as pacsv

        reader = _as_text(rel, for_csv=True).to_arrow_reader(_BATCH_ROWS)
        header = True
        for batch in reader:
            buf = io.BytesIO()
            pacsv.write_csv(batch, buf, pacsv.WriteOptions(include_header=header))
            fh.write(buf.getvalue().decode())
            header = False
        if header:  # no rows: the header alone
            buf = io.BytesIO()
            pacsv.write_csv(reader.schema.empty_table(), buf)
            fh.write(buf.getvalue().decode())
    else:
        for line in _json_lines(rel):
            fh.write(line)
    return []


def write_result(rel: duckdb.DuckDBPyRelation, fmt: str, out: str | None, *, stream: IO[str] | None = None,
                 width: int | None = None) -> list[str]:
    """Print to ``stream`` (default stdout), or write to ``out`` (whole or not at all), one query
    result in the asked format; returns notes for the user (e.g. where a table stopped).

    Values are rendered by DuckDB from its own types, so every value comes out as DuckDB
    would print it, whatever its type; Parquet keeps types except those Parquet lacks.
    A table stops at :data:`TABLE_ROWS` rows or :data:`TABLE_CHARS` characters; CSV and JSON
    stream whole in batches (bounded memory). Into stdout they are escaped on a terminal and
    byte-exact otherwise."""
    if fmt == "parquet" and not out:
        raise UserError("--format parquet needs --out FILE")
    try:
        if not out:
            if stream is None:
                tty = sys.stdout.isatty()
                stream, width = (sys.stdout if tty else raw(sys.stdout)), (width or (None if tty else 160))
            return _render(rel, fmt, stream, width)
        tmp = f"{out}.partial-{os.getpid()}"
        try:
            if fmt == "parquet":
                write_parquet_file(parquet_safe(rel).to_arrow_reader(_BATCH_ROWS), tmp)
                notes: list[str] = []
            else:
                with open(tmp, "w", encoding="utf-8", newline="") as fh:
                    notes = _render(rel, fmt, fh, 160)
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return notes
    except duckdb.Error as exc:
        raise query_error(exc) from None


def _rows(store: ReadOnlyStore, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """A query's rows as dicts of Python values (no Arrow: status loads DuckDB alone)."""
    rel = store.relation(sql, params)
    return [dict(zip(rel.columns, row)) for row in store.fetch(rel, "fetchall")]


def _spent(store: ReadOnlyStore) -> tuple[float, int]:
    from evoagent.llm.ledger import spent  # loads the LLM package's registry: only when calls are stored

    return spent(store)


def print_status(store: ReadOnlyStore, out: IO[str] | None = None, width: int | None = None) -> None:
    """Generation, items done/pending, rewards and budget used, from a snapshot (to ``out``, default stdout)."""
    c = json.loads(store.get_meta("campaign") or "{}")
    out = out or sys.stdout

    def say(text: str) -> None:  # names and paths are the user's text, printed as text; one line each
        out.write(visible(text) + "\n")

    if not c:
        say(f"{store.path}: no campaign (imported data only)")
    mu = int(c.get("mu") or 0)
    per_gen = _rows(store,  # one pass over work_items (a join) for every count status shows
        "SELECT generation, count(DISTINCT task_id) FILTER (WHERE generation = 0) AS tasks, "
        "coalesce(sum(env_steps), 0) AS steps, count(*) FILTER (WHERE status = 'done') AS done, "
        "count(*) FILTER (WHERE status = 'failed') AS failed, count(*) FILTER (WHERE status = 'pending') AS pending "
        "FROM work_items GROUP BY generation ORDER BY generation")
    n_tasks = per_gen[0]["tasks"] if per_gen else 0
    steps = sum(r["steps"] for r in per_gen)
    items = per_gen[-1:]
    gens = _rows(store,
        "WITH per AS (SELECT generation, task_id, count(*) AS n FROM population GROUP BY ALL), "
        "sizes AS (SELECT generation, sum(n)::BIGINT AS members, "
        "(count(*) FILTER (WHERE n < ?) + ? - count(*))::BIGINT AS tasks_below_mu FROM per GROUP BY generation) "
        "SELECT g.generation, g.status, g.n_items, s.members, s.tasks_below_mu, g.best_reward, g.mean_reward, "
        "g.success_rate, g.env_steps, g.committed_at, g.partial FROM generations g LEFT JOIN sizes s USING (generation) "
        "ORDER BY g.generation", [mu, n_tasks]
    )
    committed = [r["generation"] for r in gens if r["status"] == "committed"]
    calls = _rows(store, "SELECT count(*) AS stored, count(*) FILTER (WHERE status = 'ok') AS n, "
                  "count(*) FILTER (WHERE status = 'ok' AND batch_id IS NOT NULL) AS batched FROM llm_calls")[0]
    usd, tokens = _spent(store) if calls["stored"] else (0.0, 0)  # no call stored, nothing paid
    if c:
        say(f"campaign {c.get('name')!r}: {store.path}")
        planned = int(c.get("budget.generations") or 0) + 1  # generation 0 plus budget.generations
        done, last = len(committed), max(committed, default=None)
        say(f"generations committed: {done} of {planned}"
            + ("" if last is None else f" (generation 0 to {last}; the campaign runs 0 to {planned - 1})"))
        if last is not None:
            row = next(r for r in gens if r["generation"] == last)
            per_task = f"strategy.{c.get('strategy.kind')}.n"
            if per_task in c:  # a strategy that runs its own n items per task keeps distinct results, no mu
                say(f"population of generation {last}: {row['members'] or 0:,} distinct members for "
                    f"{n_tasks:,} tasks ({per_task} = {c.get(per_task)})")
            else:
                say(f"population of generation {last}: {row['members'] or 0:,} members for {n_tasks:,} tasks "
                    f"(mu = {mu}); " + (f"{row['tasks_below_mu']:,} tasks below mu after the bounded fill-up"
                                        if row["tasks_below_mu"] else "every task at mu"))
            if row["partial"]:
                say(f"generation {last} was cut short by a budget and committed with the items that finished; "
                    "resume finishes it (finished items are not run again)")
    if items:
        i = items[0]
        say(f"generation {i['generation']}: {i['done']} items done, {i['failed']} failed, {i['pending']} pending")
    say(f"budget used: {steps:,} env steps" + (f" of {c['budget.env_steps']:,}" if c.get("budget.env_steps") else "")
        + f", ${usd:.4f}" + (f" of ${c['budget.usd']}" if c.get("budget.usd") else ""))
    if calls["n"]:
        say(f"LLM: {calls['n']} calls ({calls['batched']} batched), {tokens} tokens, ${usd:.4f}")
        done = len(committed)
        total = (c.get("budget.generations") or 0) + 1
        if done and total > done:
            say(f"projection: ${usd / done * total:.4f} for all {total} generations "
                f"at this run's ${usd / done:.4f} per generation")
    if gens:
        cells = [["" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()]
                 for r in gens]
        draw_table(out, list(gens[0]), cells, width=width or _terminal_width(), title="generations")


def print_outcome(outcome: Any, store_path: str) -> None:
    """The per-generation curve and the summary a campaign ends with."""
    from rich.table import Table

    con = _console()
    book = outcome.logbook
    if not len(book):
        con.print(f"{outcome.status}: no generation committed yet.", markup=False, highlight=False)
        return
    curve = Table(title="per generation")
    for col in ("gen", "items", "success", "of bound", "members solved", "mean reward", "env steps",
                "tasks < mu"):
        curve.add_column(col, justify="right")
    for r in book:  # a generation a budget cut short: committed with the items that finished
        gen = f"{r['gen']} (cut: {r['items_finished']} of {r['items_planned']} items)" if r.get("partial") \
            else str(r["gen"])
        curve.add_row(gen, str(r["nevals"]), f"{100 * r['success_rate']:.1f}%",
                      f"{100 * r['of_bound']:.1f}%" if r.get("of_bound") is not None else "-",
                      f"{100 * r.get('members_solved', 0):.1f}%", f"{r['avg']:.3f}", str(r["env_steps"]),
                      str(r["tasks_below_mu"]) if "tasks_below_mu" in r else "-")
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
    total = outcome.env_steps_total if outcome.env_steps_total is not None else last["env_steps"]
    con.print(f"{outcome.status}: {outcome.env_steps:,} environment executions this run in "
              f"{outcome.seconds:.1f}s, {total:,} in the store. Store: {store_path}",
              markup=False, highlight=False, soft_wrap=True)
