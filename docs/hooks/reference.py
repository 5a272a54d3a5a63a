"""MkDocs hook: the reference pages' tables, generated from the code at build time.

A page holds a marker line ``<!-- generated: NAME -->`` where the table goes:

- ``cli``: every command and group of ``evoagent`` (click's own help text, usage and options);
- ``keys``: every campaign key with its type, default and check (``evoagent.campaign.spec()``:
  the base keys plus those each registered part declares);
- ``views``: every SQL view with its columns and DuckDB types (``stores.schema``, built in an
  in-memory DuckDB).

So the reference cannot drift from the code: change a command or a key, and the next
``mkdocs build`` shows it.
"""
from __future__ import annotations

import re
from typing import Any

_MARKER = re.compile(r"^<!-- generated: (\w+) -->$", re.M)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _cli() -> str:
    import click

    from evoagent.cli import main

    out: list[str] = []

    def walk(cmd: click.Command, path: list[str], parent: click.Context | None) -> None:
        ctx = click.Context(cmd, info_name=path[-1], parent=parent, terminal_width=100, max_content_width=100)
        if len(path) > 1:
            out.append(f"{'#' * min(len(path), 4)} `{' '.join(path)}`\n")
            out.append("```text\n" + cmd.get_help(ctx).replace("```", "'''") + "\n```\n")
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, [*path, name], ctx)

    walk(main, ["evoagent"], None)
    return "\n".join(out)


def _type_name(types: Any) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in types)


def _keys() -> str:
    from evoagent import campaign

    rows = ["| key | type | default | allowed |", "|---|---|---|---|"]
    for path, (types, default, _check, meaning) in sorted(campaign.spec().items()):
        shown = "required" if default is campaign.REQUIRED else f"`{default!r}`"
        rows.append(f"| `{path}` | {_type_name(types)} | {_cell(shown)} | {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


def _views() -> str:
    import duckdb

    from stores.schema import RAW_TABLES, VIEWS, create_views

    con = duckdb.connect(":memory:")
    con.execute("CREATE SCHEMA raw")
    for name, cols in RAW_TABLES.items():
        con.execute(f"CREATE TABLE raw.{name} ({cols})")
    create_views(con)
    out = []
    for view in VIEWS:
        cols = con.execute(f"DESCRIBE {view}").fetchall()
        out.append(f"## `{view}`\n\n| column | type |\n|---|---|")
        out += [f"| `{c[0]}` | `{_cell(c[1])}` |" for c in cols]
        out.append("")
    con.close()
    return "\n".join(out)


_MAKERS = {"cli": _cli, "keys": _keys, "views": _views}


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    def fill(m: re.Match[str]) -> str:
        if m.group(1) not in _MAKERS:
            raise ValueError(f"{page.file.src_path}: unknown generated block {m.group(1)!r}")
        return _MAKERS[m.group(1)]()

    return _MARKER.sub(fill, markdown)
