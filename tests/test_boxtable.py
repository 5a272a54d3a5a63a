"""The plain-Python table `evoagent sql` and `status` print: fits its width, wraps, escapes, counts wide characters."""
from __future__ import annotations

from evoagent.boxtable import box_table, cell_width, wrap


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


def test_no_rows_draws_the_header_and_closes_the_box() -> None:
    text = box_table(["a", "b"], [], width=80)
    assert text.splitlines() == ["┏━━━┳━━━┓", "┃ a ┃ b ┃", "┗━━━┻━━━┛"]


def test_wrap_breaks_at_spaces_and_folds_long_words() -> None:
    assert wrap("abc defgh ijklmnopqrstu v", 5) == ["abc", "defgh", "ijklm", "nopqr", "stu v"]
    assert wrap("a\nb", 5) == ["a", "b"]
