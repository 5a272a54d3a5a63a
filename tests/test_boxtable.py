"""The plain-Python table `evoagent sql` and `status` print: fits its width, wraps, escapes, counts wide
characters, and draws a bounded amount of text however tall its cells would wrap."""
from __future__ import annotations

import io

from evoagent.boxtable import Drawn, cell_width, draw_table, wrap


def box_table(columns: list[str], rows: list[list[str]], **kwargs: object) -> str:
    out = io.StringIO()
    draw_table(out, columns, rows, **kwargs)  # type: ignore[arg-type]
    return out.getvalue()


def test_a_table_fits_its_width_and_keeps_every_character() -> None:
    long = "word " * 60 + "x" * 90
    text = box_table(["id", "text"], [["1", long], ["22", "short"]], width=60, title="t")
    lines = text.splitlines()
    assert lines[0].strip() == "t"
    assert all(cell_width(line) <= 60 for line in lines), [cell_width(line) for line in lines]
    assert len({cell_width(line) for line in lines[1:]}) == 1  # every border line equally long
    body = "".join(line.split("│")[2].strip() for line in lines if line.startswith("│"))
    assert body.replace(" ", "") == (long + "short").replace(" ", "")  # wrapped and folded, nothing lost


def test_narrow_columns_keep_their_width_and_the_widest_gives_way() -> None:
    text = box_table(["n", "wide"], [["7", "y" * 500]], width=40)
    row = next(line for line in text.splitlines() if line.startswith("│"))
    assert row.startswith("│ 7 │ ") and cell_width(row) == 40


def test_controls_are_shown_escaped_and_wide_characters_counted_twice() -> None:
    text = box_table(["a"], [["\x1b[2J\x07bell"], ["日本"]], width=80)
    assert "\x1b" not in text and "\x07" not in text and "\\x1b[2J\\x07bell" in text
    assert cell_width("日本") == 4 and cell_width("e\u0301") == 1
    widths = {cell_width(line) for line in text.splitlines()}
    assert len(widths) == 1


def test_a_tab_is_shown_as_backslash_t_and_the_box_stays_aligned() -> None:
    text = box_table(["a\tb", "c"], [["x\ty", "1"], ["plain", "\t"]], width=80, title="t\tt")
    assert "\t" not in text and "a\\tb" in text and "x\\ty" in text and "t\\tt" in text
    assert len({cell_width(line) for line in text.splitlines()[1:]}) == 1


def test_no_rows_draws_the_header_and_closes_the_box() -> None:
    text = box_table(["a", "b"], [], width=80)
    assert text.splitlines() == ["┏━━━┳━━━┓", "┃ a ┃ b ┃", "┗━━━┻━━━┛"]


def test_wrap_breaks_at_spaces_and_folds_long_words() -> None:
    assert wrap("abc defgh ijklmnopqrstu v", 5) == ["abc", "defgh", "ijklm", "nopqr", "stu v"]
    assert wrap("a\nb", 5) == ["a", "b"]


def test_narrow_columns_of_long_cells_draw_a_bounded_table_and_say_where_it_stopped() -> None:
    """200 columns of 2,000-character cells, each column one character wide: uncapped, a row
    would be 2,000 lines of the whole width (1.6 million characters); drawn, the caps hold."""
    columns = [f"c{i}" for i in range(200)]
    rows = [["x" * 2_000] * 200 for _ in range(3)]
    out = io.StringIO()
    drawn = draw_table(out, columns, rows, width=160, row_chars=100_000, table_chars=150_000)
    text = out.getvalue()
    lines = text.splitlines()
    assert drawn == Drawn(rows=2, cut=True, lines=drawn.lines) and drawn.lines < 2_000
    line_chars = len(lines[0]) + 1
    assert drawn.lines == 100_000 // line_chars
    assert len(text) <= 150_000 + 100_000 + 4 * line_chars  # the table's cap, one row past it, the box
    assert len({cell_width(line) for line in lines}) == 1
    assert lines[-1].startswith("└") and lines[-2].split("│")[1].strip() == "…"  # the cut cell ends in …
