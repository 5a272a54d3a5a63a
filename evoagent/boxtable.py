"""A result table drawn with box characters, in plain Python: what ``evoagent sql`` and ``status`` print.

rich draws the same tables, but importing it costs about a third of a bare DuckDB query's
start-up, and these two commands are meant to answer at DuckDB's speed (issue 22). The
look follows rich's default (a heavy header, light rows); columns wider than the terminal
share its width, widest first, and their cells wrap at spaces or, for a long word, fold.
Every piece of text passes :func:`evoagent.escaping.visible` and a tab is shown as ``\\t``:
no control character reaches the terminal, and every line of the box is as wide as the next.

The table is written a line at a time, and what it draws is capped: a row at
:data:`ROW_DRAWN_CHARS` characters (a taller cell is cut, its last line ending in ``…``),
the table at :data:`TABLE_DRAWN_CHARS` (it stops after the row that passes them). Narrow
columns multiply the drawn text (a 10,000-character cell one column wide is 10,000 lines of
the whole table's width): the caps keep memory and output bounded whatever the cells hold.
Light module: the standard library only.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import IO

from evoagent.escaping import visible

ROW_DRAWN_CHARS = 200_000  # characters one row may draw (its height times the table's width)
TABLE_DRAWN_CHARS = 4_000_000  # characters the whole table may draw before it stops at a row
ELLIPSIS = "…"


_ASCII = re.compile(r"[\x00-\x7f]+")


@functools.lru_cache(maxsize=4096)
def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cell_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide East Asian characters 2, combining marks 0."""
    if text.isascii():
        return len(text)
    rest = _ASCII.sub("", text)  # the ASCII characters are one column each: count only the others one by one
    return len(text) - len(rest) + sum(map(_char_width, rest))


def shown(text: object) -> str:
    """Text as a cell shows it: controls escaped as ``\\xNN``, a tab as ``\\t`` (its width is the
    terminal's to decide, which would shift the box); newlines stay (a cell breaks its line there)."""
    return visible(text).replace("\t", "\\t")


def _fold(word: str, width: int) -> Iterator[str]:
    """A word longer than ``width`` columns, cut into pieces of at most ``width`` columns."""
    if word.isascii():  # one column a character
        yield from (word[i:i + width] for i in range(0, len(word), width))
        return
    piece, used = "", 0
    for ch in word:
        w = cell_width(ch)
        if piece and used + w > width:
            yield piece
            piece, used = "", 0
        piece, used = piece + ch, used + w
    yield piece


def _wrapped(text: str, width: int) -> Iterator[str]:
    """The lines of :func:`wrap`, one at a time (a caller that needs the first few stops early)."""
    for para in text.split("\n"):
        if cell_width(para) <= width:
            yield para
            continue
        line, used = "", 0
        for word in para.split(" "):
            w = cell_width(word)
            if line and used + 1 + w <= width:
                line, used = f"{line} {word}", used + 1 + w
                continue
            if line or used:
                yield line
            if w > width:
                pieces = _fold(word, width)
                line = next(pieces)
                for piece in pieces:  # every piece but the last is a full line
                    yield line
                    line = piece
                used = cell_width(line)
            else:
                line, used = word, w
        yield line


def wrap(text: str, width: int) -> list[str]:
    """``text`` as lines of at most ``width`` columns: broken at spaces, long words folded."""
    return list(_wrapped(text, width))


def _clip(line: str, width: int) -> str:
    """``line`` cut to end in ``…`` within ``width`` columns: the last line of a cell that was cut."""
    kept, used = "", 0
    for ch in line:
        used += cell_width(ch)
        if used > width - 1:
            break
        kept += ch
    return kept + ELLIPSIS


def _share(natural: list[int], room: int) -> list[int]:
    """Column widths that fit ``room``: the widest columns give up columns first (none below 1)."""
    if sum(natural) <= room:
        return natural
    low, high = 1, max(natural)  # the largest cap c with sum(min(w, c)) <= room
    while low < high:
        mid = (low + high + 1) // 2
        if sum(min(w, mid) for w in natural) <= room:
            low = mid
        else:
            high = mid - 1
    widths = [min(w, low) for w in natural]
    spare = room - sum(widths)
    for i, w in enumerate(natural):  # hand out what is left, left to right
        if spare <= 0:
            break
        if w > widths[i]:
            widths[i] += 1
            spare -= 1
    return widths


@dataclass
class Drawn:
    """What :func:`draw_table` drew: how many rows, and whether a cell was cut at ``lines`` lines."""

    rows: int
    cut: bool
    lines: int


def draw_table(out: IO[str], columns: Sequence[str], rows: Sequence[Sequence[str]], *, width: int,
               title: str | None = None, row_chars: int = ROW_DRAWN_CHARS,
               table_chars: int = TABLE_DRAWN_CHARS) -> Drawn:
    """Write the table to ``out`` a line at a time, at most ``width`` columns wide where it can be.

    A row draws at most ``row_chars`` characters (a cell taller than that allows is cut); the
    table stops after the row that brings it past ``table_chars`` and closes its box."""
    if not columns:
        return Drawn(0, False, 0)
    heads = [shown(c) for c in columns]
    body = [[shown(c) for c in row] for row in rows]
    natural = [max(cell_width(line) for cell in (h, *(r[i] for r in body)) for line in cell.split("\n"))
               for i, h in enumerate(heads)]
    widths = _share([max(w, 1) for w in natural], max(len(columns), width - 3 * len(columns) - 1))
    total = sum(widths) + 3 * len(widths) + 1
    most = max(1, row_chars // (total + 1))  # lines a row may have
    cut = False

    def rule(left: str, mid: str, right: str, fill: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right + "\n"

    def lines(cells: list[str], bar: str) -> Iterator[str]:
        nonlocal cut
        wrapped = []
        for text, w in zip(cells, widths):
            cell = list(islice(_wrapped(text, w), most + 1))
            if len(cell) > most:
                cut, cell = True, [*cell[:most - 1], _clip(cell[most - 1], w)]
            wrapped.append(cell)
        for k in range(max(len(c) for c in wrapped)):
            parts = []
            for cell, w in zip(wrapped, widths):
                text = cell[k] if k < len(cell) else ""
                parts.append(" " + text + " " * (w - cell_width(text)) + " ")
            yield bar + bar.join(parts) + bar + "\n"

    if title:
        t = shown(title)
        out.write(" " * (max(0, total - cell_width(t)) // 2) + t + "\n")
    out.write(rule("┏", "┳", "┓", "━"))
    for line in lines(heads, "┃"):
        out.write(line)
    if not body:
        out.write(rule("┗", "┻", "┛", "━"))
        return Drawn(0, cut, most)
    out.write(rule("┡", "╇", "┩", "━"))
    drawn = done = 0
    for row in body:
        if done and drawn >= table_chars:
            break
        for line in lines(row, "│"):
            out.write(line)
            drawn += len(line)
        done += 1
    out.write(rule("└", "┴", "┘", "─"))
    return Drawn(done, cut, most)
