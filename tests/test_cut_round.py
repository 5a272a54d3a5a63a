"""A round a budget cuts short is closed with the items that finished; resume re-opens it (issue 20).

Which items of the cut round finish never depends on timing: under ``budget.env_steps`` the
runner sends a round's items in chunks in plan order and checks that budget between chunks
(here a chunk is game24/1's four items); under ``budget.usd`` the executor makes the items of
tasks it does not let through raise ``BudgetExceeded``, as an LLM call over the budget does.
"""
from __future__ import annotations

from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from evoagent import campaign, launch, loop
from evoagent.cli import main
from evoagent.llm.errors import BudgetExceeded
from stores import SnapshotStore

# MCTS on Game of 24 with random legal moves and the exact oracle: round 0 expands the root,
# round 1 a first move, so nothing can be solved before round 2 (the bench's loss: every
# solution MCTS found there was in a round the budget cut short).
MCTS = ["tasks.ranks=[1, 2]", "policy.kind=enumerate", "strategy.kind=mcts", "mu=1", "concurrency=2"]
CUT = 2


class Held(Future):
    """A work item never started: cancelling it notifies its waiters at once, as a pool's
    worker does when it takes a cancelled item off its queue."""

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self.set_running_or_notify_cancel()
        return True


class Gate(Executor):
    """Runs items at submission, in the caller's thread, except those of round ``cut`` whose task
    is not in ``through``: they stay pending (``stop="pending"``, cancelled by the runner's budget
    check) or raise ``BudgetExceeded`` as an LLM call over ``budget.usd`` does (``stop="usd"``)."""

    def __init__(self, cut: int, through: set[str], stop: str):
        self.cut, self.through, self.stop = cut, through, stop

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        item = args[0]
        f: Future = Held()
        if item.generation != self.cut or item.task_id in self.through:
            f.set_result(fn(*args, **kwargs))
        elif self.stop == "usd":
            f.set_exception(BudgetExceeded("budget.usd"))
        return f


def rows(path: Path, sql: str) -> list[dict[str, Any]]:
    s = SnapshotStore(path)
    try:
        return s.query(sql).to_pylist()
    finally:
        s.close()


def cut_campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: str, overrides: list[str] = MCTS,
                 cut: int = CUT, per_task: int = 4) -> tuple[Path, loop.Outcome]:
    """Rounds before ``cut`` in full, then round ``cut`` under a budget that stops it with game24/1's
    items done (``per_task``: the round's items of a task, planned task by task)."""
    import evoagent.executors

    path = tmp_path / "cut.duckdb"
    c = campaign.load("experiments/game24.toml", overrides + [f"budget.generations={cut - 1}"])
    assert launch.start(c, str(path)).status == "completed"
    before = rows(path, "SELECT sum(env_steps)::INT AS n FROM work_items")[0]["n"]
    monkeypatch.setattr(evoagent.executors, "make_executor", lambda *a: lambda n: Gate(cut, {"game24/1"}, stop))
    monkeypatch.setattr(loop, "COMMIT_INTERVAL_S", 0.01)  # the budget check after the gated items
    monkeypatch.setattr(loop, "BUDGET_CHUNK_ITEMS", per_task)  # the round's first chunk: game24/1's items
    budget = f"budget.env_steps={before + 1}" if stop == "pending" else "budget.usd=1"
    out = launch.resume(str(path), [f"budget.generations={cut}", budget])
    monkeypatch.undo()
    return path, out


@pytest.mark.parametrize("stop", ["pending", pytest.param("usd", marks=pytest.mark.slow)], ids=["env_steps", "usd"])
def test_what_a_cut_round_found_is_in_the_final_population(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str], stop: str) -> None:
    from evoagent.render import print_outcome

    path, out = cut_campaign(tmp_path, monkeypatch, stop)
    assert out.status == ("stopped: budget.env_steps" if stop == "pending" else "stopped: budget.usd")
    items = rows(path, f"SELECT task_id, status FROM work_items WHERE generation = {CUT}")
    done = sum(r["status"] == "done" for r in items)
    assert {r["task_id"] for r in items if r["status"] == "done"} == {"game24/1"}
    assert any(r["status"] == "pending" for r in items)
    capsys.readouterr()
    print_outcome(out, str(path))
    assert f"{CUT} (cut: {done} of {len(items)} items)" in " ".join(capsys.readouterr().out.split())
    # game24/1 is solved by the cut round only (the precondition of this test) ...
    solved_in = rows(path, "SELECT w.generation FROM work_items w JOIN trajectories t USING (traj_id) "
                           "WHERE t.solved AND w.task_id = 'game24/1'")
    assert {r["generation"] for r in solved_in} == {CUT}
    # ... and the campaign's answer (the last generation's rank-0 member) is that solution
    assert out.last_generation == CUT and out.logbook[-1]["gen"] == CUT and out.logbook[-1]["partial"]
    final = rows(path, "SELECT p.task_id, t.solved FROM population p JOIN (SELECT traj_id, any_value(solved) "
                       "AS solved FROM trajectories GROUP BY 1) t USING (traj_id) WHERE p.rank = 0 AND "
                       "p.generation = (SELECT max(generation) FROM population) ORDER BY 1")
    assert [r["task_id"] for r in final] == [f"game24/{i}" for i in range(1, 3)]  # the others keep round 1's
    assert final[0]["solved"]
    gen = rows(path, f"SELECT status, partial, success_rate, stats FROM generations WHERE generation = {CUT}")[0]
    assert (gen["status"], gen["partial"], gen["success_rate"]) == ("committed", True, 0.5)


@pytest.mark.slow  # three small campaigns (~4 s): in .ci/run's slow step
def test_resume_after_a_cut_round_equals_the_uninterrupted_campaign(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    whole = tmp_path / "whole.duckdb"
    assert launch.start(campaign.load("experiments/game24.toml", MCTS + [f"budget.generations={CUT + 1}"]),
                        str(whole)).status == "completed"
    path, out = cut_campaign(tmp_path, monkeypatch, "pending")
    assert out.status == "stopped: budget.env_steps"
    done_before = rows(path, "SELECT generation, item_id, traj_id, env_steps FROM work_items WHERE status = 'done'")
    status = CliRunner().invoke(main, ["status", str(path)])
    assert status.exit_code == 0 and f"generation {CUT} was cut short by a budget" in status.output, status.output
    # a resume with the budget still spent changes nothing (no second partial close)
    assert launch.resume(str(path)).status == "stopped: budget.env_steps"
    assert rows(path, "SELECT count(*) AS n FROM raw.generation_events WHERE status = 'partial'")[0]["n"] == 1
    out = launch.resume(str(path), [f"budget.generations={CUT + 1}", "budget.env_steps=0"])
    assert out.status == "completed" and [r["gen"] for r in out.logbook] == list(range(CUT + 2))
    pop = "SELECT generation, task_id, traj_id, rank FROM population ORDER BY ALL"
    assert rows(path, pop) == rows(whole, pop)
    assert rows(path, "SELECT bool_or(partial) AS p FROM generations")[0]["p"] is False
    # finished items ran once: every item has one result, the cut round's finished ones unchanged
    items = "SELECT generation, item_id, traj_id, env_steps FROM work_items ORDER BY ALL"
    assert rows(path, items) == rows(whole, items)
    assert rows(path, "SELECT count(*) AS n FROM raw.work_results")[0]["n"] == len(rows(path, items))
    now = {(r["generation"], r["item_id"]): r for r in rows(path, items)}
    assert all(now[(r["generation"], r["item_id"])] == r for r in done_before)


@pytest.mark.slow  # two small campaigns (~2 s): in .ci/run's slow step
def test_a_cut_comma_round_keeps_the_parents_of_tasks_whose_children_did_not_finish(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(mu, lambda) without elitism drops the parents; in a cut round a task whose items did not
    finish keeps them (plus-replacement with the children it has), the others replace as usual."""
    comma = ["tasks.ranks=[1, 2]", "policy.kind=enumerate", "replacement.kind=comma", "replacement.elitism=0",
             "concurrency=2"]
    path, out = cut_campaign(tmp_path, monkeypatch, "pending", comma, cut=1, per_task=6)  # lambda = 6
    assert out.status == "stopped: budget.env_steps" and out.last_generation == 1
    pop = {(r["generation"], r["task_id"]): r["members"] for r in rows(
        path, "SELECT generation, task_id, list(traj_id ORDER BY rank) AS members FROM population GROUP BY ALL")}
    kids = {r["traj_id"] for r in rows(path, "SELECT traj_id FROM work_items WHERE generation = 1 AND "
                                             "status = 'done' AND task_id = 'game24/1'")}
    assert pop[(1, "game24/2")] == pop[(0, "game24/2")]  # no child finished: the parents stay
    assert set(pop[(1, "game24/1")]) <= kids and set(pop[(1, "game24/1")]) != set(pop[(0, "game24/1")])


def test_where_an_executions_budget_stops_does_not_depend_on_concurrency(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same budget stops a round after the same items at concurrency 1 and 4 (chunks of 5
    items, checked between chunks); before chunks, the stop fell wherever a busy machine was."""
    monkeypatch.setattr(loop, "BUDGET_CHUNK_ITEMS", 5)
    done = []
    for n in (1, 4):
        c = campaign.load("experiments/game24.toml", ["tasks.ranks=[1, 4]", "policy.kind=enumerate",
                                                      "strategy.kind=mcts", "mu=1", f"concurrency={n}",
                                                      "budget.generations=3", "budget.env_steps=40"])
        path = tmp_path / f"c{n}.duckdb"
        assert launch.start(c, str(path)).status == "stopped: budget.env_steps"
        done.append(rows(path, "SELECT generation, item_id, traj_id FROM work_items WHERE status = 'done' "
                               "ORDER BY ALL"))
    assert done[0] == done[1]
    last = max(r["generation"] for r in done[0])
    in_last = [r["item_id"] for r in done[0] if r["generation"] == last]
    assert in_last == list(range(len(in_last))) and len(in_last) % 5 == 0  # whole chunks, in plan order
