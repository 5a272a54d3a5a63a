"""``selection.pick``: the final pick by a vote over answers, weighted by fitness (strategies/vote.py).

Hand-built members in a real DuckDB store: where the reward model alone picks a wrong answer and
agreement picks the right one, the reverse case (agreement on a wrong answer outweighs one better
scored right answer), the count vote, what InterCode counts as no answer, and a best_of_n
campaign whose stored rank 0 is the vote's pick.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evoagent import campaign, launch, registry
from evoagent import evolution as evo
from evoagent.envs.intercode_sql.answers import answer_key
from evoagent.errors import UserError
from evoagent.strategies.ranked import Ranked
from evoagent.trajectory import Step, Trajectory
from stores import DuckDBStore
from stores.batch import TrajectoryBatch

TASK = "sql/0"
FIT = "fit_test"


def _traj(prefix: tuple[str, ...], answer: str, observation: str, solved: bool) -> Trajectory:
    steps = [Step(i, a, "[('people',)]", 0.0) for i, a in enumerate(prefix)]
    steps.append(Step(len(steps), answer, observation, 1.0 if solved else 0.0))
    return Trajectory(TASK, tuple(steps), 1.0 if solved else 0.0, "test")


def _ranked(tmp_path: Path, *scored: list[tuple[Trajectory, float]]) -> list[dict[str, list[Trajectory]]]:
    """For each list of (member, fitness) of the task: its members ordered by each pick, read back
    from one store holding them (each list's fitness under a source of its own)."""
    by_id = {t.traj_id: t for members in scored for t, _ in members}
    out = []
    with DuckDBStore(tmp_path / "members.duckdb") as store:
        store.write(TrajectoryBatch.from_trajectories(list(by_id.values())))
        for n, members in enumerate(scored):
            assert len({t.traj_id for t, _ in members}) == len(members)
            store.write_rewards(f"{FIT}{n}", [(t.traj_id, None, f) for t, f in members])
            picks = {}
            for pick in ("rank", "vote", "vote_count"):
                settings = {"selection.objectives": ["reward", "steps"], "selection.pick": pick,
                            "env.kind": "intercode_sql"}
                ranked = Ranked(settings, store, [TASK], f"{FIT}{n}")
                found = ranked.members([t.traj_id for t, _ in members]).values()
                pop = {TASK: evo.ranked(list(found))}  # as the strategies rank a task's members
                picks[pick] = [by_id[m.traj_id] for m in ranked.picked(pop)[TASK]]
            out.append(picks)
    return out


RIGHT, WRONG = "[('Teodor Salparov',)]", "[('Maksim Botin',)]"
Q = "SELECT Name FROM people ORDER BY Height DESC LIMIT 1"


def test_agreement_picks_the_right_answer_the_reward_model_alone_ranks_below_a_wrong_one(tmp_path: Path) -> None:
    lone_wrong = (_traj((), "SELECT Name FROM people ORDER BY Height LIMIT 1", WRONG, False), 0.9)
    agreeing = [(_traj(p, Q, RIGHT, True), 0.4) for p in [(), ("SHOW TABLES",), ("DESCRIBE people",)]]
    schema_look = (_traj(("SHOW TABLES",), "DESCRIBE people", "[('Name', 'text')]", False), 0.95)
    error = (_traj((), "SELECT nme FROM people", "Error executing query: Unknown column 'nme'", False), 0.5)
    members = [lone_wrong, *agreeing, schema_look, error]
    picks, = _ranked(tmp_path, members)
    by_rank = picks["rank"]
    assert by_rank[0] is schema_look[0] and not by_rank[0].outcome_reward  # the model alone: wrong
    by_vote = picks["vote"]
    # the group of three (0.4 x 3 = 1.2) beats the lone answer (0.9); the schema look and the error
    # are no answers and come last, by fitness
    assert by_vote[0].outcome_reward == 1.0 and by_vote[0].steps[-1].observation == RIGHT
    assert [t.traj_id for t in by_vote[:4]] == [t.traj_id for t, _ in
                                                sorted(agreeing, key=lambda m: m[0].n_steps)] + [lone_wrong[0].traj_id]
    assert [t.traj_id for t in by_vote[4:]] == [schema_look[0].traj_id, error[0].traj_id]


def test_agreement_on_a_wrong_answer_outweighs_a_better_scored_right_one(tmp_path: Path) -> None:
    """The reverse case: the vote is not always right; three wrong answers at 0.35 (1.05) beat one
    right answer at 0.9 that the reward model alone picks; weighted by fitness, at 0.25 (0.75) they do not."""
    lone_right = (_traj((), Q, RIGHT, True), 0.9)
    prefixes = [(), ("SHOW TABLES",), ("DESCRIBE people",)]
    wrong = [_traj(p, "SELECT Name FROM people LIMIT 1", WRONG, False) for p in prefixes]
    heavier, lighter = _ranked(tmp_path, [lone_right, *[(t, 0.35) for t in wrong]],
                               [lone_right, *[(t, 0.25) for t in wrong]])
    for picks, vote_right in ((heavier, False), (lighter, True)):
        assert picks["rank"][0] is lone_right[0]
        assert (picks["vote"][0] is lone_right[0]) is vote_right
        assert picks["vote_count"][0].outcome_reward == 0.0  # a plain majority: wrong


def test_what_intercode_counts_as_no_answer() -> None:
    assert answer_key("SELECT 1", "[(1,)]") == answer_key("SELECT  1 ", " [(1,)]\n") == "[(1,)]"
    for action, observation in [("SELECT 1", "[]"), ("SELECT 1", ""), ("SELECT 1", None),
                                ("SELECT x", "Error executing query: Unknown column 'x'"),
                                ("SHOW TABLES", "[('people',)]"), ("desc people", "[('Name', 'text')]"),
                                ("SELECT * FROM information_schema.tables", "[('people',)]")]:
        assert answer_key(action, observation) is None, (action, observation)


@pytest.mark.slow
def test_a_best_of_n_campaign_answers_with_the_votes_pick(campaign_file: Path, tmp_path: Path) -> None:
    """End to end: rank 0 of the stored population is the best member of the group of equal results
    with the largest fitness sum (computed here by SQL over the store); the key is validated."""
    registry.register(registry.Part("reward", "length_test", _length_model, uses_gold=False))
    try:
        with pytest.raises(UserError, match="selection.pick"):
            campaign.load(campaign_file, ["selection.pick=majority"])
        c = campaign.load(campaign_file, ["strategy.kind=best_of_n", "strategy.best_of_n.n=4", "budget.generations=0",
                                          "search.reward=length_test", "fitness.reward=length_test",
                                          "selection.pick=vote", "tasks.ids=['sql/0', 'sql/7']"])
        assert launch.start(c, str(tmp_path / "v.duckdb")).status == "completed"
        with DuckDBStore(tmp_path / "v.duckdb") as s:
            rows = s.query(
                "SELECT p.task_id, p.traj_id, p.rank, r.value AS fit, st.action, st.observation FROM population p "
                "JOIN trajectories t USING (traj_id) JOIN steps st ON st.traj_id = t.traj_id AND st.idx = t.n_steps - 1 "
                "JOIN rewards r ON r.traj_id = p.traj_id AND r.reward_source = 'length_test:last'").to_pylist()
    finally:
        registry.unregister("reward", "length_test")
    for task in {r["task_id"] for r in rows}:
        mine = [r for r in rows if r["task_id"] == task]
        groups: dict[str, float] = {}
        for r in mine:
            key = answer_key(r["action"], r["observation"])
            if key is not None:
                groups[key] = groups.get(key, 0.0) + r["fit"]
        top = next(r for r in mine if r["rank"] == 0)
        if groups:
            assert answer_key(top["action"], top["observation"]) == max(groups, key=lambda k: groups[k])
        else:
            assert top["fit"] == max(r["fit"] for r in mine)


def _length_model(ctx: Any, params: Any, seed: int) -> Any:
    from evoagent.rewards import RewardModel, Score

    class Length(RewardModel):
        """A value from the prefix's length only (reads no gold): longer prefixes score lower."""

        name, uses_gold = "length_test", False

        @property
        def source(self) -> str:
            return "length_test"

        def score(self, queries: Any) -> list[Any]:
            return [Score(1.0 / (1 + len(q.actions))) for q in queries]

    return Length()


def test_the_vote_reads_no_gold() -> None:
    """The same answers and fitness with every gold outcome flipped: the same order."""
    from evoagent import evolution as evo
    from evoagent.strategies.vote import vote
    from evoagent.trajectory import Summary

    fitness = {"a": 0.9, "b": 0.4, "c": 0.4, "d": 0.45, "e": 0.8, "f": 0.1}
    answers = {"a": "[(1,)]", "b": "[(2,)]", "c": "[(2,)]", "d": "[(2,)]", "e": None, "f": "[(3,)]"}
    orders = []
    for flip in (False, True):
        members = [evo.Member(Summary(t, TASK, float((t in "bcd") != flip), 2, 0.0, f), ["reward", "steps"])
                   for t, f in fitness.items()]
        orders.append([m.traj_id for m in vote(members, answers)])
    assert orders[0] == orders[1] == ["d", "b", "c", "a", "f", "e"]
