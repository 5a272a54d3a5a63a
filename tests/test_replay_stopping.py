"""The replay policy's stopping is its own: when it submits tells nothing about gold.

Statistic (issue 20): roll the policy out on real tasks in the real environment.
``S`` = solved rate of the runs that submitted before the step limit, ``L`` =
solved rate of the runs that hit the limit. What the action pool explains: let
``c(t)`` be the share of runs with a t-th executed action whose t-th action is
correct (any run that got that far, however it ended). If stopping does not
depend on whether the last action was correct, ``E[S] = mean over submitted
runs of c(last step)`` and ``E[L] = c(limit)``. The test statistic is
``D = (S - L) - (E[S] - E[L])``: the part of the submitted-vs-limit gap the
pool does not explain. The default ``replay`` must keep ``|D| <= 0.1``; the old
walk (``replay_recorder_stops``, submitting where recordings ended, i.e. at
gold) shows ``D`` around 0.5 and fails it.
"""
from __future__ import annotations

import random

import pytest

from evoagent.envs.intercode_sql.data import load_tasks
from evoagent.envs.intercode_sql.env import InterCodeSQLEnv
from evoagent.policies.base import SUBMIT, Guidance
from evoagent.policies.replay import NOVEL_SQL, RecorderStopsReplayPolicy, ReplayPolicy
from evoagent.rollout import Context, rollout
from evoagent.trajectory import Step

LIMIT = 10
WALKS = {"replay": ReplayPolicy, "replay_recorder_stops": RecorderStopsReplayPolicy}


def unexplained_gap(kind: str, n_tasks: int = 30, seeds: int = 8) -> tuple[float, int, int]:
    """``D`` of the module docstring, with the numbers of submitted and limit runs."""
    tasks = random.Random(0).sample(load_tasks(), n_tasks)
    ctx = Context(tasks={t.task_id: t for t in tasks}, policy=WALKS[kind].from_bundled(explore=0.15),
                  make_env=InterCodeSQLEnv, max_steps=LIMIT)
    runs = []
    try:
        for t in tasks:
            for seed in range(seeds):
                steps = rollout(ctx, t, random.Random(seed)).trajectory.steps
                runs.append([s.reward is not None and s.reward >= 1.0 for s in steps])
    finally:
        ctx.env().close()
    at: dict[int, list[bool]] = {}
    for r in runs:
        for i, ok in enumerate(r):
            at.setdefault(i, []).append(ok)
    c = {i: sum(v) / len(v) for i, v in at.items()}
    sub = [r for r in runs if 0 < len(r) < LIMIT]
    lim = [r for r in runs if len(r) == LIMIT]
    s_rate = sum(r[-1] for r in sub) / len(sub)
    l_rate = sum(r[-1] for r in lim) / len(lim) if lim else 0.0
    expected = sum(c[len(r) - 1] for r in sub) / len(sub) - (c.get(LIMIT - 1, 0.0) if lim else 0.0)
    return (s_rate - l_rate) - expected, len(sub), len(lim)


def test_default_replay_submits_independently_of_gold() -> None:
    d, n_sub, n_lim = unexplained_gap("replay")
    assert n_sub > 100 and n_lim > 0
    assert abs(d) <= 0.1, f"submitted-vs-limit gap beyond the pool's: D = {d:.3f}"


def test_recorder_stops_walk_carries_the_gold_cue() -> None:
    d, _, _ = unexplained_gap("replay_recorder_stops")
    assert d > 0.25, d  # the cue the default policy no longer has


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
