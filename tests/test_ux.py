"""What a user sees (issue 8, items 13, 15, 16, 17): populations filled up to mu, progress
on a terminal and in logs, batching only when asked for, and messages that say what happened."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from evoagent import campaign, launch, progress
from evoagent.cli import main
from evoagent.llm import batch_mode
from evoagent.envs.intercode_sql.fake_agent import intercode_responder
from evoagent.testing.fake_server import FakeAnthropic
from evoagent.render import print_outcome
from stores import DuckDBStore, SnapshotStore
from tests.conftest import ROOT, SMALL

# SMALL's tasks plus two whose replay pool holds a single action: they cannot reach mu distinct members
FILL = SMALL.replace('"sql/512"]', '"sql/512", "sql/186", "sql/27"]')


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


def reader_rows(store: Path, sql: str) -> list[dict[str, Any]]:
    r = SnapshotStore(store)
    try:
        return r.query(sql).to_pylist()
    finally:
        r.close()


def start(tmp_path: Path, name: str, text: str, *overrides: str, **kwargs: Any) -> Any:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(text)
    return launch.start(campaign.load(cfg, list(overrides)), str(tmp_path / f"{name}.duckdb"), **kwargs)


# -- item 13: populations are filled up to mu -----------------------------------
def test_populations_are_filled_up_to_mu_within_a_bound(tmp_path: Path) -> None:
    out = start(tmp_path, "fill", FILL, "budget.generations=2")
    assert out.status == "completed"
    sizes = reader_rows(tmp_path / "fill.duckdb", """
        WITH planned AS (SELECT generation, task_id, count(*) AS items FROM work_items GROUP BY ALL),
             pop AS (SELECT generation, task_id, count(*) AS members FROM population GROUP BY ALL)
        SELECT generation, task_id, items, coalesce(members, 0) AS members
        FROM planned LEFT JOIN pop USING (generation, task_id) ORDER BY ALL""")
    mu, extra_items, capped = 3, 0, set()
    for row in sizes:
        base = mu if row["generation"] == 0 else 4
        assert base <= row["items"] <= base + mu  # at most mu fill-up items per task and generation
        extra_items += row["items"] - base
        if row["members"] < mu:  # below mu only once the fill-up is used up
            assert row["items"] == base + mu, row
            capped.add(row["task_id"])
        else:
            assert row["members"] == mu
    assert extra_items > 0 and capped == {"sql/186", "sql/27"}
    members = sum(r["members"] for r in sizes if r["generation"] == 2)
    status = invoke(["status", tmp_path / "fill.duckdb"])
    assert (f"population of generation 2: {members} members for 8 tasks (mu = 3); "
            "2 tasks below mu after the bounded fill-up") in status.output
    assert "members" in status.output and "tasks_below_mu" in status.output  # columns of the table


@pytest.mark.slow  # long: CI's slow step runs it (the default run stays under 3 minutes)
def test_a_stop_inside_a_fill_up_round_resumes_to_the_same_population(tmp_path: Path) -> None:
    start(tmp_path, "whole", FILL, "budget.generations=1")
    stop = threading.Event()
    seen: list[int] = []

    def on_progress(info: dict[str, Any]) -> None:  # journal-observed: the plan grew past mu items per task
        if info.get("event") == "items" and info["generation"] == 0 and info["total"] > 8 * 3:
            seen.append(info["total"])
            stop.set()

    out = start(tmp_path, "cut", FILL, "budget.generations=1", on_progress=on_progress, stop=stop)
    assert seen and out.status == "stopped: interrupted"
    assert launch.resume(str(tmp_path / "cut.duckdb")).status == "completed"
    query = "SELECT generation, task_id, traj_id, rank FROM population ORDER BY ALL"
    assert reader_rows(tmp_path / "cut.duckdb", query) == reader_rows(tmp_path / "whole.duckdb", query)


# -- item 15: progress at start-up, on a terminal and in logs ----------------------
def test_without_a_terminal_each_committed_generation_is_one_log_line(tmp_path: Path, campaign_file: Path) -> None:
    out = invoke(["run", campaign_file, "--store", tmp_path / "s.duckdb"])
    assert out.exit_code == 0, out.output
    err = out.stderr.splitlines()
    assert any(re.search(r"the upper bound\) \(6/6\)$", line) for line in err), err  # the long start-up step
    gens = [line for line in err if line.startswith("generation ")]
    assert [line.split(" committed")[0] for line in gens] == [f"generation {g} of 0..3" for g in range(4)]
    for line in gens:
        assert re.search(r"success \d+\.\d% \(best per task\).*mean reward \d\.\d{3}, .*s elapsed", line), line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_bar_shows_generation_of_n_and_running_figures() -> None:
    screen = Terminal()
    with progress.progress_printer(screen) as show:
        show({"event": "stage", "stage": "loading tasks"})
        show({"event": "items", "generation": 2, "last_generation": 5, "done": 30, "total": 60,
              "children": 30, "solved": 12, "reward_sum": 15.0})
        show({"event": "generation", "generation": 2, "last_generation": 5, "seconds": 1.0,
              "stats": {"nevals": 60, "success_rate": 0.5, "avg": 0.25, "env_steps": 900, "members_solved": 0.4}})
    text = screen.getvalue()
    assert "gen 2 of 0..5" in text and "30/60" in text
    assert "children solved 40.0%, mean reward 0.500" in text
    assert "generation 2 of 0..5 committed: 60 children, success 50.0% (best per task)" in text


def test_a_slow_start_up_step_gets_a_line_a_quick_one_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr(progress, "SLOW_S", 3600.0)
    with progress.progress_printer(log) as show:
        show({"event": "stage", "stage": "loading tasks"})  # superseded at once: no line
        show({"event": "stage", "stage": "bound", "done": 0, "total": 2})
        show({"event": "stage", "stage": "bound", "done": 2, "total": 2})
    assert log.getvalue().splitlines() == [
        line for line in log.getvalue().splitlines() if "bound" in line] and "loading" not in log.getvalue()
    monkeypatch.setattr(progress, "SLOW_S", 0.01)
    done = threading.Event()
    log = io.StringIO()
    with progress.progress_printer(log) as show:
        show({"event": "stage", "stage": "building the database"})
        done.wait(timeout=0.5)  # long past SLOW_S
        for _ in range(100):
            if "building the database ..." in log.getvalue():
                break
            done.wait(timeout=0.1)
    assert "building the database ..." in log.getvalue()


# -- item 16: Message Batches only when asked for -----------------------------------
def test_batching_is_never_inferred_from_the_terminal(tmp_path: Path, campaign_file: Path) -> None:
    llm = ['policy.kind="anthropic"']  # policy.batch is the LLM policies' key
    assert campaign.load(campaign_file, llm).get("policy.batch") is False
    assert batch_mode("auto") is False and batch_mode(False) is False and batch_mode(True) is True
    out = invoke(["run", campaign_file, "--store", tmp_path / "s.duckdb", "--set", 'policy.batch="auto"'])
    assert out.exit_code == 2 and '"auto" is gone' in out.output
    # a store written when "auto" existed resumes with direct calls
    with DuckDBStore(tmp_path / "old.duckdb") as store:
        c = campaign.load(campaign_file, llm)
        store.put_meta("campaign", json.dumps({**c.values, "policy.batch": "auto"}))
        assert launch.stored_campaign(store).get("policy.batch") is False


@pytest.mark.slow  # long: CI's slow step runs it (the default run stays under 3 minutes)
def test_an_llm_campaign_under_nohup_sends_no_batches(tmp_path: Path, campaign_file: Path) -> None:
    """stdin and stdout not terminals, as under nohup: every call goes direct unless policy.batch = true."""
    with FakeAnthropic(intercode_responder()) as server:
        env = {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "test", "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [sys.executable, "-m", "evoagent.cli", "run", str(campaign_file), "--store", str(tmp_path / "s.duckdb"),
             "--set", 'policy.kind="anthropic"', "--set", "budget.generations=0", "--set", "mu=2",
             "--set", 'tasks.ids=["sql/0", "sql/7"]', "--set", "policy.batch_poll_s=0.05",
             "--set", "policy.batch_idle_s=0.05", "--set", "policy.retry_base_s=0.01"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    calls = reader_rows(tmp_path / "s.duckdb", "SELECT count(*) AS n, count(batch_id) AS batched FROM llm_calls")[0]
    assert calls["n"] > 0 and calls["batched"] == 0


def test_batches_at_low_concurrency_get_a_warning(campaign_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    notes: list[dict[str, Any]] = []
    c = campaign.load(campaign_file, ['policy.kind="anthropic"', "policy.batch=true", "concurrency=4"])
    launch._prepare(c, notes.append)
    assert any(n["event"] == "note" and "concurrency 4" in n["text"] for n in notes)
    notes.clear()
    launch._prepare(campaign.load(campaign_file, ['policy.kind="anthropic"', "policy.batch=true",
                                                  "concurrency=64"]), notes.append)
    assert not [n for n in notes if n["event"] == "note"]


# -- item 17: messages that say what happened ---------------------------------------
def test_status_counts_generations_including_generation_0(tmp_path: Path, campaign_file: Path) -> None:
    store = tmp_path / "s.duckdb"
    assert invoke(["run", campaign_file, "--store", store, "--set", "budget.generations=1"]).exit_code == 0
    out = invoke(["status", store]).output
    assert "generations committed: 2 of 2 (generation 0 to 1; the campaign runs 0 to 1)" in out


def test_an_interrupted_run_counts_its_steps_against_the_store(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Items of a generation that was never committed count in the store's total (the old line took
    the total from the last committed generation, so it could be smaller than "this run")."""
    from evoagent.loop import Runner

    path = tmp_path / "cut.duckdb"
    start(tmp_path, "cut", SMALL, "budget.generations=0")
    with DuckDBStore(path) as store:  # half of generation 1 done, as a Ctrl-C leaves it
        c = launch.stored_campaign(store, ["budget.generations=1"])
        runner = Runner(c, store, launch.build_context(c, launch.select_tasks(c)))
        items = runner.strategy.plan(1)
        store.plan_generation(1, items)
        assert runner.execute(1, items[: len(items) // 2])
    stop = threading.Event()
    stop.set()  # Ctrl-C before this run does anything
    out = launch.resume(str(path), ["budget.generations=1"], stop=stop)
    assert out.status == "stopped: interrupted" and out.last_generation == 0
    print_outcome(out, str(path))
    line = capsys.readouterr().out.strip().splitlines()[-1]
    m = re.search(r"([\d,]+) environment executions this run in [\d.]+s, ([\d,]+) in the store", line)
    assert m, line
    this_run, total = (int(g.replace(",", "")) for g in m.groups())
    stored = reader_rows(path, "SELECT sum(env_steps)::BIGINT AS n FROM work_items")[0]["n"]
    assert this_run == 0 and total == stored > out.logbook[-1]["env_steps"]


def test_a_set_typo_is_blamed_on_set_not_on_the_file(tmp_path: Path, campaign_file: Path) -> None:
    out = invoke(["run", campaign_file, "--store", tmp_path / "s.duckdb", "--set", "tasks.sampel=50"])
    assert out.exit_code == 2
    assert out.output == "error: --set: unknown key 'tasks.sampel' (did you mean 'tasks.sample'?)\n"


@pytest.mark.parametrize("args, words", [
    (["status", ROOT / "README.md"], "is not an evoagent store"),
    (["resume", ROOT / "README.md"], "is not an evoagent store"),
    (["migrate", ROOT / "README.md"], "is not an evoagent store"),
    (["migrate", "{tmp}/MISSING.duckdb"], "no store at"),
    (["export", "{tmp}/s.duckdb", "--out", "{tmp}/a_file"], "is a file"),
    (["run", "experiments/intercode_sql.toml"], "Missing option '--store'"),
    (["status"], "Missing argument"),
    (["no-such-command"], "No such command"),
    (["run", "{campaign}", "--store", "{tmp}/s.duckdb", "--set", 'policy.sources=["nope"]'], "nope"),
])
def test_user_mistakes_are_exactly_one_line(tmp_path: Path, campaign_file: Path, args: list[Any], words: str) -> None:
    (tmp_path / "a_file").write_text("")
    args = [str(a).replace("{tmp}", str(tmp_path)).replace("{campaign}", str(campaign_file)) for a in args]
    out = invoke(args)
    assert out.exit_code == 2
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1 and words in out.stderr, out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize("group", [[], ["import"], ["replay"]])
def test_group_help_pages_have_an_example(group: list[str]) -> None:
    out = invoke([*group, "--help"])
    assert out.exit_code == 0 and "Example:" in out.output
    assert re.search(r"^\s+evoagent " + " ".join(group), out.output, re.M)
