"""`evoagent sql`'s table (evoagent/render.py over evoagent/boxtable.py): with many columns DuckDB cuts
each cell shorter, the drawn rows are capped, and the notes say both."""
from __future__ import annotations

import io

import duckdb

from evoagent.render import CELL_CHARS, RUN_CHARS, TABLE_ROWS, cell_cut, write_result


def test_cells_are_cut_shorter_the_more_columns_a_table_has() -> None:
    assert cell_cut(1) == cell_cut(9) == CELL_CHARS
    assert cell_cut(200) == RUN_CHARS // ((TABLE_ROWS + 1) * 200) < 500
    assert (TABLE_ROWS + 1) * 200 * cell_cut(200) <= RUN_CHARS
    assert cell_cut(10**9) == 1


def test_a_row_of_many_long_narrow_cells_is_cut_in_characters_and_lines() -> None:
    con = duckdb.connect()
    cols = ", ".join(f"repeat('x', 10000) AS c{i}" for i in range(200))
    out = io.StringIO()
    notes = write_result(con.sql(f"SELECT {cols}"), "table", None, stream=out, width=160)
    lines = out.getvalue().splitlines()
    keep = cell_cut(200)
    row_lines = [ln for ln in lines if ln.startswith("│")]
    assert notes and f"cells longer than {keep:,} characters or taller than {len(row_lines):,} lines are cut" \
        in notes[0] and len(notes) == 1, notes
    assert len(row_lines) < keep  # uncut, each one-column cell would be 10,000 lines tall
    assert sum(len(ln) + 1 for ln in row_lines) <= 200_000
    assert row_lines[-1].split("│")[1].strip() == "…"
