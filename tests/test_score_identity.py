"""Every score names the model that made it, checked again at resume (issue 19 item 1).

A campaign is stopped at a deterministic point (its first committed generation,
through the runner's own stop event: no timing), its reward model is changed
(a PRM retrained into the same folder; an http server restarted with other
weights; a server whose weights change mid-run), and resume must refuse with
one line naming both digests, writing nothing. On the old code each of these
resumed with exit 0 and mixed two models' scores in one campaign.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from evoagent import campaign, launch
from evoagent.errors import UserError
from evoagent.rm.hosting import BackgroundServer
from evoagent.rm.model import load_model
from stores import DuckDBStore
from tests.conftest import train_tiny_prm

SMALLER = ['tasks.ids=["sql/0", "sql/7", "sql/42"]', "budget.generations=2"]
PRM = SMALLER + ["search.reward=prm", "fitness.reward=prm", "fitness.aggregate=mean",
       "rewards.prm.allow_seen_tasks=true"]
HTTP = SMALLER + ["search.reward=http", "fitness.reward=http", "fitness.aggregate=mean",
        "rewards.http.retry_base_s=0.01", "rewards.http.max_attempts=2"]


def _stop_after_first_generation() -> tuple[threading.Event, Any]:
    stop = threading.Event()

    def note(event: dict[str, Any]) -> None:
        if event.get("event") == "generation":
            stop.set()
    return stop, note


def _state(path: Path) -> tuple:
    """Everything a resume could write: scores, items, results, populations, meta."""
    with DuckDBStore(path) as s:
        return tuple(s.query(q).to_pylist() for q in (
            "SELECT reward_source, count(*) AS n FROM rewards GROUP BY ALL ORDER BY ALL",
            "SELECT status, count(*) AS n FROM work_items GROUP BY ALL ORDER BY ALL",
            "SELECT count(*) AS n FROM raw.work_results", "SELECT count(*) AS n FROM population",
            "SELECT * FROM raw.meta ORDER BY ALL"))


def _sources(path: Path) -> set[str]:
    with DuckDBStore(path) as s:
        return {r["reward_source"] for r in s.query("SELECT DISTINCT reward_source FROM rewards").to_pylist()}


def test_a_prm_retrained_in_place_is_refused_at_resume(tmp_path: Path, campaign_file: Path) -> None:
    folder = train_tiny_prm(tmp_path / "prm", n_runs=30)
    store = tmp_path / "c.duckdb"
    stop, note = _stop_after_first_generation()
    out = launch.start(campaign.load(campaign_file, PRM + [f"rewards.prm.path={folder}"]), str(store),
                       on_progress=note, stop=stop)
    assert out.status.startswith("stopped")
    old = load_model(folder).digest
    assert {s for s in _sources(store) if s.startswith("prm(")} <= {f"prm(model={old})", f"prm(model={old}):mean"}
    before = _state(store)

    train_tiny_prm(folder, n_runs=50)  # another model into the same folder
    new = load_model(folder).digest
    assert new != old
    with pytest.raises(UserError) as err:
        launch.resume(str(store))
    line = str(err.value)
    assert "\n" not in line and f"prm(model={old})" in line and f"prm(model={new})" in line
    assert "restore that model" in line and "nothing was written" in line
    assert _state(store) == before  # nothing written

    train_tiny_prm(folder, n_runs=30)  # the same training data again: the same files, the same digest
    assert load_model(folder).digest == old
    with DuckDBStore(store) as s:  # a store from before the record: its rewards rows are the record
        s._con.execute("DELETE FROM raw.meta WHERE key = 'reward_models'")
    assert launch.resume(str(store)).status == "completed"
    assert {s.split(")")[0] for s in _sources(store) if s.startswith("prm(")} == {f"prm(model={old}"}


def _http_campaign(tmp_path: Path, campaign_file: Path, url: str) -> tuple[Path, Any]:
    store = tmp_path / "h.duckdb"
    stop, note = _stop_after_first_generation()
    out = launch.start(campaign.load(campaign_file, HTTP + [f"rewards.http.url={url}"]), str(store),
                       on_progress=note, stop=stop)
    return store, out


@pytest.mark.slow  # long: CI's slow step runs it (the default run stays under 3 minutes)
def test_an_http_server_restarted_with_another_model_is_refused_at_resume(tmp_path: Path,
                                                                           campaign_file: Path) -> None:
    first = load_model(train_tiny_prm(tmp_path / "a", n_runs=30))
    second = load_model(train_tiny_prm(tmp_path / "b", n_runs=50))
    with BackgroundServer(first) as srv:
        port = srv.url.rsplit(":", 1)[1]
        store, out = _http_campaign(tmp_path, campaign_file, srv.url)
    assert out.status.startswith("stopped")
    assert any(f"digest={first.digest}" in s for s in _sources(store))
    before = _state(store)
    with BackgroundServer(second, port=int(port)) as srv:  # the same URL, other weights
        with pytest.raises(UserError) as err:
            launch.resume(str(store))
    line = str(err.value)
    assert "\n" not in line and f"digest={first.digest}" in line and f"digest={second.digest}" in line
    assert _state(store) == before
    with BackgroundServer(first, port=int(port)):
        assert launch.resume(str(store)).status == "completed"
    assert {s.split("digest=")[1][:12] for s in _sources(store) if s.startswith("http(")} == {first.digest}


class _Swapped:
    """A served model whose weights are swapped for another's after ``after`` calls (a reload mid-run)."""

    def __init__(self, first: Any, second: Any, after: int):
        self.first, self.second, self.after, self.calls = first, second, after, 0
        self.name, self.max_chars = first.name, first.max_chars

    @property
    def model(self) -> Any:
        return self.first if self.calls < self.after else self.second

    @property
    def digest(self) -> str:
        return self.model.digest

    def score_texts(self, texts: list[str]) -> list[float]:
        self.calls += 1
        return self.model.score_texts(texts)


@pytest.mark.slow  # long: CI's slow step runs it (the default run stays under 3 minutes)
def test_a_model_changed_mid_run_stops_the_campaign_cleanly(tmp_path: Path, campaign_file: Path) -> None:
    first = load_model(train_tiny_prm(tmp_path / "a", n_runs=30))
    second = load_model(train_tiny_prm(tmp_path / "b", n_runs=50))
    served = _Swapped(first, second, after=2)
    with BackgroundServer(served) as srv:  # each answer's header names the weights that made it
        port = int(srv.url.rsplit(":", 1)[1])
        store = tmp_path / "m.duckdb"
        out = launch.start(campaign.load(campaign_file, HTTP + [f"rewards.http.url={srv.url}"]), str(store))
    assert out.status.startswith("stopped: rewards.http: the model served at ")
    assert f"changed mid-run (digest {first.digest} -> {second.digest})" in out.status
    assert "\n" not in out.status
    with DuckDBStore(store) as s:
        assert s.scalar("SELECT count(*) FROM work_items WHERE status = 'failed'") == 0
        assert s.scalar("SELECT count(*) FROM work_items WHERE status = 'pending'") > 0
        assert f"digest={first.digest}" in json.loads(s.get_meta("reward_models"))["http"]
    assert {s.split("digest=")[1][:12] for s in _sources(store) if s.startswith("http(")} <= {first.digest}
    with BackgroundServer(first, port=port):  # the campaign's model served again: it goes on
        assert launch.resume(str(store)).status == "completed"
    assert {s.split("digest=")[1][:12] for s in _sources(store) if s.startswith("http(")} == {first.digest}


@pytest.mark.slow  # a campaign process killed by SIGKILL at a commit count, then the CLI's resume (~30 s loaded)
def test_a_killed_campaign_whose_prm_was_retrained_is_refused_by_the_cli(tmp_path: Path, campaign_file: Path) -> None:
    import subprocess

    from crash_soak import KillPoint, cli, cli_env, kill_at  # experiments/ is on the path (conftest)

    folder = train_tiny_prm(tmp_path / "prm", n_runs=30)
    store = tmp_path / "k.duckdb"
    sets = [a for s in PRM + [f"rewards.prm.path={folder}", "budget.generations=6"] for a in ("--set", s)]
    proc = subprocess.Popen(cli("run", str(campaign_file), "--store", str(store), *sets),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env())
    assert kill_at(proc, store, KillPoint(commits=40, startup=False)), "the campaign finished before the kill"
    old = load_model(folder).digest
    assert any(s.startswith(f"prm(model={old})") for s in _sources(store))  # it had scored before it died
    before = _state(store)
    train_tiny_prm(folder, n_runs=50)
    got = subprocess.run(cli("resume", str(store)), capture_output=True, text=True, env=cli_env())
    assert got.returncode == 2
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and f"prm(model={old})" in lines[0] and f"prm(model={load_model(folder).digest})" in lines[0]
    assert _state(store) == before
