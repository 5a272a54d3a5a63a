"""A result table drawn with box characters, in plain Python: what ``evoagent sql`` and ``status`` print.

rich draws the same tables, but importing it costs about a third of a bare DuckDB query's
start-up, and these two commands are meant to answer at DuckDB's speed (issue 22). The
look follows rich's default (a heavy header, light rows); columns wider than the terminal
share its width, widest first, and their cells wrap at spaces or, for a long word, fold.
Every piece of text passes :func:`evoagent.escaping.visible`: no control character reaches
the terminal. Light module: the standard library only.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from evoagent.escaping import visible


def cell_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide East Asian characters 2, combining marks 0."""
    if text.isascii():
        return len(text)
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _fold(word: str, width: int) -> list[str]:
    """A word longer than ``width`` columns, cut into pieces of at most ``width`` columns."""
    pieces, piece, used = [], "", 0
    for ch in word:
        w = cell_width(ch)
        if piece and used + w > width:
            pieces.append(piece)
            piece, used = "", 0
        piece, used = piece + ch, used + w
    return [*pieces, piece]


def wrap(text: str, width: int) -> list[str]:
    """``text`` as lines of at most ``width`` columns: broken at spaces, long words folded."""
    lines: list[str] = []
    for para in text.split("\n"):
        if cell_width(para) <= width:
            lines.append(para)
            continue
        line, used = "", 0
        for word in para.split(" "):
            w = cell_width(word)
            if line and used + 1 + w <= width:
                line, used = f"{line} {word}", used + 1 + w
                continue
            if line or used:
                lines.append(line)
            if w > width:
                *full, line = _fold(word, width)
                lines.extend(full)
                used = cell_width(line)
            else:
                line, used = word, w
        lines.append(line)
    return lines


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


def box_table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, width: int,
              title: str | None = None) -> str:
    """The table as text (ending in a newline), at most ``width`` columns wide where it can be."""
    if not columns:
        return ""
    heads = [visible(c) for c in columns]
    body = [[visible(c) for c in row] for row in rows]
    natural = [max(cell_width(line) for cell in (h, *(r[i] for r in body)) for line in cell.split("\n"))
               for i, h in enumerate(heads)]
    widths = _share([max(w, 1) for w in natural], max(len(columns), width - 3 * len(columns) - 1))

    def rule(left: str, mid: str, right: str, fill: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def lines(cells: list[str], bar: str) -> list[str]:
        wrapped = [wrap(c, w) for c, w in zip(cells, widths)]
        height = max(len(c) for c in wrapped)
        out = []
        for k in range(height):
            parts = []
            for cell, w in zip(wrapped, widths):
                text = cell[k] if k < len(cell) else ""
                parts.append(" " + text + " " * (w - cell_width(text)) + " ")
            out.append(bar + bar.join(parts) + bar)
        return out

    out = []
    total = sum(widths) + 3 * len(widths) + 1
    if title:
        t = visible(title)
        pad = max(0, total - cell_width(t))
        out.append(" " * (pad // 2) + t)
    out.append(rule("┏", "┳", "┓", "━"))
    out.extend(lines(heads, "┃"))
    if body:
        out.append(rule("┡", "╇", "┩", "━"))
        for row in body:
            out.extend(lines(row, "│"))
        out.append(rule("└", "┴", "┘", "─"))
    else:
        out.append(rule("┗", "┻", "┛", "━"))
    return "\n".join(out) + "\n"
