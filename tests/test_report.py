"""`evoagent report`: one self-contained HTML file, checked as data and in headless Chromium."""
from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from click.testing import CliRunner

from evoagent.cli import main
from evoagent.report.ancestry import Edge, walk
from stores import DuckDBStore, TrajectoryBatch
from stores.batch import LINEAGE_SCHEMA, REWARD_SCHEMA, STEP_SCHEMA, TRAJECTORY_SCHEMA
from stores.schema import VIEWS
from tests.conftest import SMALL
from tests.test_views import build_store, family, traj

HOSTILE = ["</script><script>window.__pwned = 1</script>", "<img src=x onerror=\"window.__pwned = 2\">",
           "&lt;not an entity&gt; \u2028 \u2029 \\u003c \x00 \x1b[31m", "]]> <!-- --> <![CDATA["]


@pytest.fixture(scope="module")
def campaign_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real small campaign (6 tasks, 3 generations, replay policy)."""
    folder = tmp_path_factory.mktemp("campaign")
    (folder / "small.toml").write_text(SMALL)
    store = folder / "small.duckdb"
    out = CliRunner().invoke(main, ["run", str(folder / "small.toml"), "--store", str(store)])
    assert out.exit_code == 0, out.output
    return store


def report(store: Path, out: Path) -> dict[str, Any]:
    """Build the report through the CLI and return the JSON document embedded in it."""
    got = CliRunner().invoke(main, ["report", str(store), "-o", str(out)])
    assert got.exit_code == 0, got.output
    assert got.output.startswith(f"{out}: ") and len(got.output.strip().splitlines()) == 1
    return embedded(out.read_text(encoding="utf-8"))


def embedded(page: str) -> dict[str, Any]:
    found = re.findall(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert len(found) == 1
    return json.loads(found[0])


@pytest.fixture(scope="module")
def campaign_report(campaign_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("report") / "report.html"
    return out, report(campaign_store, out)


def test_report_is_one_self_contained_file(campaign_store: Path, campaign_report: tuple[Path, dict]) -> None:
    out, doc = campaign_report
    page = out.read_text(encoding="utf-8")
    assert out.stat().st_size < 20e6
    assert not re.search(r"<(script|img|link|iframe)[^>]*\s(src|href)=", page, re.I)  # nothing loaded from outside
    assert "@import" not in page and not re.search(r"url\((?!#)", page)  # only url(#id) inside SVGs
    for panel in ("progress", "operators", "cost"):
        section = re.search(rf'<section id="{panel}".*?</section>', page, re.S)
        assert section and section.group(0).count("<svg") == 1, panel
    con = duckdb.connect(str(campaign_store), read_only=True)
    want = dict(con.execute("SELECT task_id, max(outcome_reward) FROM raw.trajectories GROUP BY 1").fetchall())
    steps = dict(con.execute("SELECT traj_id, count(*) FROM raw.steps GROUP BY 1").fetchall())
    edges = set(con.execute("SELECT child_id, parent_id FROM raw.lineage").fetchall())
    con.close()
    strings, nodes = doc["strings"], doc["nodes"]
    best = {strings[nodes[b[0]][1]]: nodes[b[0]] for b in doc["best"]}
    assert {t: n[2] for t, n in best.items()} == want  # each task's best reward, every task
    for n in best.values():
        assert n[7] is not None and len(n[7]) == steps[n[0]]  # its transcript, every step
    got_edges = {(nodes[c][0], nodes[p][0]) for c, p, _, _ in doc["edges"]}
    assert got_edges <= edges and got_edges  # edges of the store only, and some
    assert [g["generation"] for g in doc["progress"]] == [0, 1, 2, 3]


def test_report_keeps_hostile_text_as_text(tmp_path: Path) -> None:
    t = traj("hand/1", ["SELECT 1", HOSTILE[1]], 1.0, 0, "sample", observations=HOSTILE[:2])
    u = traj("hand/2", [HOSTILE[3]], 0.0, 0, "sample", observations=[HOSTILE[2]])
    store = build_store(tmp_path / "h.duckdb", [t, u])
    doc = report(store, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("</script>") == 2  # the data element and the page's script: nothing else closes one
    texts = set(doc["strings"])
    for s in HOSTILE:
        assert s in texts  # exactly the stored text after the round trip


def test_long_text_and_many_transcripts_stay_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evoagent.report import page

    t = family()
    store = build_store(tmp_path / "b.duckdb", list(t.values()))
    doc = report(store, tmp_path / "all.html")
    cut = "x" * page.TEXT_CAP + "\n… [" + str(5000 + len("\x1b[2J</script><b>bold</b>") - page.TEXT_CAP)
    assert any(s.startswith(cut) for s in doc["strings"])  # capped, and says by how much
    assert all(n[7] is not None for n in doc["nodes"])
    monkeypatch.setattr(page, "TEXT_BUDGET", 1)  # past the budget, transcripts are left out (ids and rewards stay)
    doc = report(store, tmp_path / "few.html")
    assert [n[7] is not None for n in doc["nodes"]] == [True] + [False] * (len(doc["nodes"]) - 1)
    assert len(doc["nodes"]) == len(t) and len(doc["edges"]) == 5


def test_report_reads_the_snapshot_while_a_writer_holds_the_store(tmp_path: Path) -> None:
    t = family()
    store = build_store(tmp_path / "w.duckdb", list(t.values()))
    with DuckDBStore(store):  # a campaign would hold it like this
        doc = report(store, tmp_path / "live.html")
    assert doc["meta"]["read_from"].startswith("its snapshot of ") and len(doc["nodes"]) == len(t)
    assert report(store, tmp_path / "file.html")["meta"]["read_from"] == "the store file"  # no writer now


def test_cost_panel_shows_llm_spend(campaign_report: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = campaign_report
    assert "USD by operator" not in out.read_text()  # the replay policy spends nothing: no LLM plots
    store = build_store(tmp_path / "llm.duckdb", list(family().values()))
    calls = pa.table({"call_key": [f"k{i}" for i in range(6)], "operator": ["revise", "refine"] * 3,
                      "generation": [1, 1, 2, 2, 2, 2], "item_id": list(range(6)), "status": ["ok"] * 5 + ["error"],
                      "batch_id": [None, "b1", "b1", None, None, None], "input_tokens": [100] * 6,
                      "output_tokens": [10] * 6, "cache_read_tokens": [50] * 6, "cost_usd": [0.25] * 6})
    with DuckDBStore(store) as s:
        s.append_ledger({"llm_calls": calls})
    doc = report(store, tmp_path / "llm.html")
    page = (tmp_path / "llm.html").read_text()
    assert "USD by operator" in page
    assert all(w in page for w in (">direct<", ">batch<", ">cache reads<"))  # the token series' legend
    used = {b["what"]: b["used"] for b in doc["budget"]}
    assert used["usd"] == pytest.approx(1.25) and used["tokens"] == 550  # successful calls only


def test_optional_panels_follow_the_data(campaign_report: tuple[Path, dict], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = campaign_report
    page = out.read_text(encoding="utf-8")
    # The campaign's search signal (the oracle) scored every step: its panel is there, as for any source
    # other than the environment's outcome and recorded runs.
    assert 'id="rewards"' in page and ">oracle: AUC " in page and 'id="search"' not in page
    trajs = list(family().values())
    store = build_store(tmp_path / "rm.duckdb", trajs)
    scores = {t.traj_id: (0.9 if t.solved else 0.2) for t in trajs}
    rewards = pa.table({"traj_id": list(scores), "reward_source": ["rm-test"] * len(scores),
                        "value": list(scores.values()), "step_idx": [None] * len(scores)}, schema=REWARD_SCHEMA)
    with DuckDBStore(store) as s:
        s.write(TrajectoryBatch(TRAJECTORY_SCHEMA.empty_table(), STEP_SCHEMA.empty_table(),
                                LINEAGE_SCHEMA.empty_table(), rewards))
    report(store, tmp_path / "rm.html")
    page = (tmp_path / "rm.html").read_text(encoding="utf-8")
    assert 'id="rewards"' in page and "rm-test: AUC 1.000, n=6" in page and 'id="search"' not in page
    # A store whose schema has a search view (the step-level search issue adds one) gets that panel.
    monkeypatch.setitem(VIEWS, "search_steps", "SELECT generation, 4 AS candidates, 1 AS rising FROM raw.work_plan")
    report(store, tmp_path / "none.html")
    assert 'id="search"' not in (tmp_path / "none.html").read_text()  # the view is there but has no rows
    monkeypatch.setitem(VIEWS, "search_steps", "SELECT generation, 4 AS candidates, 1 AS rising "
                        "FROM raw.trajectories WHERE generation IS NOT NULL")
    report(store, tmp_path / "search.html")
    page = (tmp_path / "search.html").read_text()
    assert 'id="search"' in page and "candidates per step" in page


def test_auc_is_the_chance_a_solved_one_scores_higher() -> None:
    from evoagent.report.figures import auc  # matplotlib: only for the tests that draw

    rng = random.Random(5)
    data = [(round(rng.random(), 1), rng.random() < 0.4) for _ in range(200)]
    pos = [s for s, y in data if y]
    neg = [s for s, y in data if not y]
    pairwise = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert auc(data) == pytest.approx(pairwise)
    assert auc([(0.3, True), (0.1, False)]) == 1.0 and auc([(0.3, True)]) is None


@pytest.mark.parametrize("args, words", [
    (["report", "{tmp}/missing.duckdb", "-o", "{tmp}/r.html"], "no store"),
    (["report", "{tmp}/empty.duckdb", "-o", "{tmp}/r.html"], "no trajectories yet"),
    (["report", "{tmp}/empty.duckdb", "-o", "{tmp}/empty.duckdb"], "refusing to write"),
    (["report", "{tmp}/empty.duckdb", "-o", "{tmp}/no/such/folder/r.html"], "no folder"),
])
def test_report_mistakes_are_one_line(tmp_path: Path, args: list[str], words: str) -> None:
    DuckDBStore(tmp_path / "empty.duckdb").close()
    out = CliRunner().invoke(main, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], out.output
    assert not list(tmp_path.glob("*.html")) and not list(tmp_path.glob(".*.tmp"))


# -- in a real browser ---------------------------------------------------------------------
chromium = pytest.importorskip("report_screenshot", reason="experiments/ is on sys.path via conftest")
needs_browser = pytest.mark.skipif(chromium.chromium_binary() is None,
                                   reason="chromium is not installed (.ci/run installs it with apt)")


@needs_browser
def test_report_renders_in_headless_chromium(campaign_report: tuple[Path, dict], tmp_path: Path) -> None:
    out, doc = campaign_report
    with chromium.Chromium() as browser:
        got = browser.open_report(out)
        assert got["problems"] == [] and got["ready_ms"] is not None
        panels = got["panels"]
        for name in ("progress", "operators", "cost"):
            assert panels[name]["svg"] == 1 and panels[name]["marks"] >= 20, (name, panels[name])
        # The lineage drawing: one circle per ancestor within the default depth (8), one line per edge.
        tree = walk(lambda ids: [Edge(c, p, None, None) for c, p, _, _ in doc["edges"] if c in ids], [doc["default"]], 8)
        drawn = browser.evaluate("[document.querySelectorAll('#lineage-plot circle').length, "
                                 "document.querySelectorAll('#lineage-plot line').length]")
        assert drawn == [len(tree.depth), len(tree.edges)] and panels["lineage"]["svg"] == 1
        # Legible: every edge runs left to right (parents in columns left of their children), and no
        # label (node or operator) overlaps another.
        legible = browser.evaluate("""(() => {
            const lines = [...document.querySelectorAll('#lineage-plot line')];
            const boxes = [...document.querySelectorAll('#lineage-plot text.op, #lineage-plot text.node')]
                .map((t) => t.getBBox());
            const hit = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
            return [lines.every((l) => +l.getAttribute('x1') < +l.getAttribute('x2')),
                    boxes.some((a, k) => boxes.slice(k + 1).some((b) => hit(a, b))),
                    !!document.querySelector('#lineage-plot .key')]; })()""")
        assert legible == [True, False, True], legible
        assert panels["best"]["rows"] == len(doc["best"]) + 1
        assert panels["transcript"]["steps"] == doc["nodes"][doc["default"]][3]
        # The search box filters the table; a node's link opens its transcript.
        shown = browser.evaluate("""(() => { const f = document.getElementById('best-filter');
            f.value = 'sql/42'; f.dispatchEvent(new Event('input'));
            return [...document.querySelectorAll('#best-table tr')].filter(r => !r.hidden).length - 1; })()""")
        assert shown == sum(doc["strings"][doc["nodes"][b[0]][1]] == "sql/42" for b in doc["best"]) == 1
        browser.screenshot(tmp_path / "shot.png", height=900)
        assert (tmp_path / "shot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert browser.problems() == []


@needs_browser
def test_hostile_text_does_not_run_in_the_browser(tmp_path: Path) -> None:
    t = traj("hand/1", ["SELECT 1", HOSTILE[1]], 1.0, 0, "sample", observations=[HOSTILE[0] * 8, HOSTILE[1]])
    store = build_store(tmp_path / "h.duckdb", [t])
    report(store, tmp_path / "r.html")
    with chromium.Chromium() as browser:
        got = browser.open_report(tmp_path / "r.html", fragment=f"traj={t.traj_id}")
        assert got["problems"] == []
        assert browser.evaluate("typeof window.__pwned") == "undefined"
        text = browser.evaluate("document.getElementById('transcript-body').textContent")
        assert t.traj_id in text
        # Long text is cut on the page; the button shows all of it, as text.
        full = browser.evaluate("""(() => { for (const b of document.querySelectorAll('button.more')) b.click();
            return document.getElementById('transcript-body').textContent; })()""")
        assert HOSTILE[0] * 8 not in text and HOSTILE[0] * 8 in full and HOSTILE[1] in full


def _planned_longer(store: Path, copy: Path) -> Path:
    """A copy of a campaign's store whose campaign plans more generations than it has committed
    (as if stopped half-way): `report --every` then keeps rewriting."""
    import shutil

    shutil.copy(store, copy)
    s = DuckDBStore(str(copy))
    try:
        c = json.loads(s.get_meta("campaign"))
        c["budget.generations"] = 50
        s.put_meta("campaign", json.dumps(c))
    finally:
        s.close()
    return copy


def test_report_every_writes_once_for_a_complete_campaign(campaign_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    got = CliRunner().invoke(main, ["report", str(campaign_store), "-o", str(out), "--every", "1"])
    assert got.exit_code == 0 and len(got.output.strip().splitlines()) == 1, got.output
    assert "http-equiv" not in out.read_text(encoding="utf-8") and embedded(out.read_text(encoding="utf-8"))


@pytest.mark.slow  # long: CI's slow step runs it (the default run stays under 3 minutes)
@needs_browser
def test_report_every_is_rewritten_and_reloads_in_chromium(campaign_store: Path, tmp_path: Path) -> None:
    """A running campaign's report, kept open in a browser: rewritten every second (atomically),
    the page reloads itself and shows the newer one; Ctrl-C stops the writer and leaves the page whole."""
    import signal
    import subprocess
    import sys
    import time

    store, out = _planned_longer(campaign_store, tmp_path / "running.duckdb"), tmp_path / "live.html"
    proc = subprocess.Popen([sys.executable, "-m", "evoagent.cli", "report", str(store), "-o", str(out), "--every", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        page = out.read_text(encoding="utf-8")
        assert '<meta http-equiv="refresh" content="1">' in page and '<p id="live">live: rewritten every 1 s' in page
        with chromium.Chromium() as browser:
            got = browser.open_report(out)
            assert got["problems"] == [] and got["ready_ms"] is not None
            assert got["panels"]["progress"]["svg"] == 1
            first = browser.evaluate("window.__marker = 1; document.getElementById('live').textContent")
            while time.monotonic() < deadline:  # the page reloads itself: the marker is gone, a newer page shown
                time.sleep(0.2)
                now = browser.evaluate("[typeof window.__marker, !!(window.__report && window.__report.ready), "
                                       "(document.getElementById('live') || {}).textContent]")
                if now[0] == "undefined" and now[1] and now[2] != first:
                    break
            assert now[0] == "undefined" and now[1] and now[2] != first, (first, now)
            assert browser.problems() == []
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "stopped:" in err, err
    assert embedded(out.read_text(encoding="utf-8"))  # whole
