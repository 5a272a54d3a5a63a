"""The replay policy's stopping is its own: when it submits tells nothing about gold.

Statistic (issue 20; ``evoagent.envs.intercode_sql.stopping``): ``S`` = solved rate of the runs
that submitted before the step limit, ``L`` = solved rate of the runs that hit it;
``c(t)`` = share of runs with a t-th executed action whose t-th action is correct.
If stopping does not depend on whether the last action was correct,
``E[S] = mean over submitted runs of c(last step)`` and ``E[L] = c(limit)``; the
test statistic ``D = (S - L) - (E[S] - E[L])`` is the part of the gap the action
pool does not explain. The default ``replay`` must keep ``|D| <= 0.1`` (30 tasks x
8 seeds); the old walk (``replay_recorder_stops``, submitting where recordings
ended, i.e. at gold) shows ``D`` around 0.5 and fails it.
"""
from __future__ import annotations

import random

import pytest

from evoagent.envs.intercode_sql.stopping import unexplained_gap
from evoagent.envs.intercode_sql.data import load_tasks
from evoagent.policies.base import SUBMIT, Guidance
from evoagent.envs.intercode_sql.walk import NOVEL_SQL, ReplayPolicy
from evoagent.trajectory import Step


def test_default_replay_submits_independently_of_gold() -> None:
    gap = unexplained_gap("replay")
    assert gap.submitted > 100 and gap.hit_limit > 0
    assert abs(gap.d) <= 0.1, f"submitted-vs-limit gap beyond the pool's: {gap}"


def test_recorder_stops_walk_carries_the_gold_cue() -> None:
    gap = unexplained_gap("replay_recorder_stops")
    assert gap.d > 0.25, gap  # the cue the default policy no longer has


def test_submit_probability_is_the_documented_one() -> None:
    policy = ReplayPolicy.from_bundled(submit_p=0.3)
    task = load_tasks()[0]
    action = policy.pool(task.task_id)[0]
    rng = random.Random(1)
    history = (Step(0, action, "[(1,)]", 0.0),)
    n = 4000
    submits = sum(policy.next_action(task, history, Guidance(), rng).text == SUBMIT for _ in range(n))
    assert abs(submits / n - 0.3) < 0.03
    assert policy.next_action(task, (), Guidance(), rng).text != SUBMIT  # never before any action


def test_distractors_are_edits_at_the_documented_share() -> None:
    plain = ReplayPolicy.from_bundled()
    mixed = ReplayPolicy.from_bundled(distractors=0.25)
    tasks = load_tasks()[:30]
    recorded = sum(len(plain.pool(t.task_id, t)) for t in tasks)
    total = sum(len(mixed.pool(t.task_id, t)) for t in tasks)
    share = (total - recorded) / total
    assert 0.15 <= share <= 0.26, share
    t = tasks[0]
    extra = set(mixed.pool(t.task_id, t)) - set(plain.pool(t.task_id, t))
    assert extra and all(mixed.novel(t.task_id, a) for a in extra)
    assert mixed.pool(t.task_id, t) == ReplayPolicy.from_bundled(distractors=0.25).pool(t.task_id, t)


def test_edits_of_executed_actions_are_marked_novel() -> None:
    policy = ReplayPolicy.from_bundled(edit_p=1.0, submit_p=0.0)
    task = load_tasks()[0]
    action = next(a for a in policy.pool(task.task_id) if a.upper().startswith("SELECT"))
    history = (Step(0, action, "[('Netherlands', 3)]", 0.0),)
    got = policy.next_action(task, history, Guidance(), random.Random(3))
    assert got.text != action and got.thought.startswith(NOVEL_SQL)


@pytest.mark.parametrize("bad", [{"submit_p": 1.5}, {"distractors": 1.0}, {"edit_p": -0.1}])
def test_bad_options_are_one_line(bad: dict[str, float]) -> None:
    from evoagent.errors import UserError

    with pytest.raises(UserError, match="policy\\."):
        ReplayPolicy([], **bad)
