"""The report draws whatever a store holds: names with mathtext markup as literal text, non-finite
scores left out of the calibration bins with a note, finite extremes binned without overflow; and a
mean of extreme scores stays finite."""
from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
from click.testing import CliRunner

from evoagent.cli import main
from evoagent.rewards.signal import AGGREGATE
from stores import DuckDBStore, TrajectoryBatch
from stores.batch import LINEAGE_SCHEMA, REWARD_SCHEMA, STEP_SCHEMA, TRAJECTORY_SCHEMA
from tests.test_views import build_store, family

# an unknown symbol (ValueError) and nested superscripts (RecursionError) under mathtext
NAMES = ["prm(model=$\\foo$)", "judge($x^{^{^{^{^{^{^{^{^{^{^{^{a}}}}}}}}}}}}$)", "usd $5 and $6"]


def test_a_mean_of_extreme_scores_is_finite() -> None:
    mean = AGGREGATE["mean"]
    assert mean([1e308, 1e308]) == 1e308 and mean([1e308, -1e308]) == 0.0 and mean([-1e308] * 3) == -1e308
    assert mean([0.25, 0.5]) == 0.375 and math.isinf(mean([math.inf, 1.0]))


def test_calibration_bins_extremes_and_leaves_out_non_finite() -> None:
    from evoagent.report.figures import calibration  # matplotlib: loaded by this test, not at collection

    scored = [(1e308, True), (-1e308, False), (0.0, True), (math.inf, True), (math.nan, False), (-math.inf, False)]
    bins = calibration(scored)
    assert sum(n for _, _, n in bins) == 3 and all(math.isfinite(m) for m, _, _ in bins)
    assert [m for m, _, _ in bins] == [-1e308, 0.0, 1e308]
    assert calibration([(math.nan, True)]) == []


def test_report_draws_any_stored_value(tmp_path: Path) -> None:
    trajs = list(family().values())
    store = build_store(tmp_path / "rm.duckdb", trajs)
    values = [1e308, -1e308, math.inf, -math.inf, math.nan, 0.5]
    ids, sources, scores = [], [], []
    for name in NAMES:
        for t, v in zip(trajs, values):
            ids.append(t.traj_id)
            sources.append(name)
            scores.append(v)
    rewards = pa.table({"traj_id": ids, "reward_source": sources, "value": scores, "step_idx": [None] * len(ids)},
                       schema=REWARD_SCHEMA)
    with DuckDBStore(store) as s:
        s.write(TrajectoryBatch(TRAJECTORY_SCHEMA.empty_table(), STEP_SCHEMA.empty_table(),
                                LINEAGE_SCHEMA.empty_table(), rewards))
    out = tmp_path / "r.html"
    got = CliRunner().invoke(main, ["report", str(store), "-o", str(out)])
    assert got.exit_code == 0, got.output
    page = out.read_text(encoding="utf-8")
    for name in NAMES:  # the name itself, not a formula drawn from it
        assert name.replace("&", "&amp;") in page
    assert "n=3, 5 left out of the bins (3 non-finite)" in page  # AUC of the finite ones, bins of the plottable
