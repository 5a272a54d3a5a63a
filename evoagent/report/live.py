"""One frame of ``evoagent watch``: a campaign's curve, its current generation and throughput, from a reader.

The frame is read from the store's Parquet snapshot whenever it has one (the file's lock
is never taken, so a writer is never blocked, not even while it starts), else from the
file itself, read-only; each refresh opens a reader, reads and closes it. Every value
taken from the store is shown as plain text (no rich markup), control characters escaped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from evoagent.escaping import visible

BAR = 24  # characters of a full bar
SHOWN = 30  # the last generations drawn
WINDOW_S = 60  # throughput: finished items of the last minute (by their own timestamps)


@dataclass(frozen=True)
class Frame:
    """What one refresh read; ``done`` when every planned generation is committed."""

    title: str
    source: str
    generations: list[dict[str, Any]]
    current: dict[str, Any] | None
    throughput: dict[str, Any] | None
    planned: int | None
    done: bool


def open_for_watch(path: str | Path) -> Any:
    """The snapshot when the store has one, else the file read-only (``StoreError`` if neither)."""
    from stores.readonly import FileStore, snapshot_dir
    from stores.snapshot import MANIFEST, SnapshotStore

    if (snapshot_dir(path) / MANIFEST).exists():
        return SnapshotStore(path, threads=1)
    return FileStore(path, threads=1)


def read_frame(store: Any) -> Frame:
    """One frame from an open reader."""
    try:
        c = json.loads(store.get_meta("campaign") or "{}")
    except ValueError:
        c = {}
    c = c if isinstance(c, dict) else {}
    planned = int(c["budget.generations"]) + 1 if isinstance(c.get("budget.generations"), int) else None
    gens = store.query("SELECT generation, status, n_items, success_rate, mean_reward, env_steps FROM generations "
                       "WHERE generation IS NOT NULL ORDER BY generation").to_pylist()
    current = store.query(
        "SELECT generation, count(*) AS items, count(*) FILTER (WHERE status = 'done') AS done, "
        "count(*) FILTER (WHERE status = 'failed') AS failed FROM work_items "
        "WHERE generation = (SELECT max(generation) FROM work_items) GROUP BY generation").to_pylist()
    rate = store.query(
        f"SELECT count(*) AS items, coalesce(sum(env_steps), 0)::DOUBLE AS env_steps, "
        f"epoch(max(finished_at)) - epoch(min(finished_at)) AS span_s FROM work_items "
        f"WHERE finished_at >= (SELECT max(finished_at) FROM work_items) - INTERVAL {WINDOW_S} SECOND").to_pylist()
    committed = sum(g["status"] == "committed" for g in gens)
    published = getattr(store, "published_at", None)
    return Frame(
        title=f"campaign {c.get('name')!r}" if c.get("name") else "no campaign (imported data)",
        source=f"{store.path} ({'the store file' if published is None else 'its snapshot'})",
        generations=gens, current=current[0] if current else None,
        throughput=rate[0] if rate and rate[0]["items"] else None, planned=planned,
        done=planned is not None and committed >= planned)


def _bar(share: float | None) -> Text:
    if share is None:
        return Text("")
    full = max(0, min(BAR, round(share * BAR)))
    return Text("█" * full + "░" * (BAR - full), style="cyan")


def _num(v: Any, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def render_frame(f: Frame) -> Group:
    """The frame as rich renderables: a heading, the current generation, throughput, the curve."""
    lines = [Text(visible(f"{f.title}: {f.source}"), style="bold")]
    if f.current is not None:
        cur = f.current
        of = "" if f.planned is None else f" of 0..{f.planned - 1}"
        share = cur["done"] / cur["items"] if cur["items"] else None
        lines.append(Text(f"generation {cur['generation']}{of}: {cur['done']:,}/{cur['items']:,} items done"
                          + (f", {cur['failed']:,} failed" if cur["failed"] else "")) + Text("  ") + _bar(share))
    if f.throughput is not None:
        span = max(float(f.throughput["span_s"] or 0.0), 1.0)
        lines.append(Text(f"throughput: {f.throughput['items'] / span:,.1f} items/s, "
                          f"{f.throughput['env_steps'] / span:,.0f} env steps/s (last {WINDOW_S} s of finished items)"))
    if f.done:
        lines.append(Text("campaign complete", style="green"))
    curve = Table(title="success (best per task) per generation", title_justify="left", box=None, pad_edge=False)
    for name, justify in (("gen", "right"), ("success", "left"), ("", "right"), ("mean reward", "right"),
                          ("items", "right"), ("env steps", "right"), ("status", "left")):
        curve.add_column(name, justify=justify)  # type: ignore[arg-type]
    for g in f.generations[-SHOWN:]:
        curve.add_row(str(g["generation"]), _bar(g["success_rate"]), _num(g["success_rate"], ".1%"),
                      _num(g["mean_reward"], ".3f"), _num(g["n_items"], ","), _num(g["env_steps"], ","),
                      Text(visible(g["status"] or "")))
    if not f.generations:
        lines.append(Text("no generation planned yet"))
    return Group(*lines, curve) if f.generations else Group(*lines)
