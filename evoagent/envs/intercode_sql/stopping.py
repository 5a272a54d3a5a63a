"""Does a policy's stopping carry gold? The statistic of issue 20's stopping test.

Roll the policy out on real tasks in the real environment. ``S`` = solved rate of
the runs that submitted before the step limit, ``L`` = solved rate of the runs
that hit the limit. What the action pool explains: let ``c(t)`` be the share of
runs with a t-th executed action whose t-th action is correct (any run that got
that far, however it ended). If stopping does not depend on whether the last
action was correct, ``E[S] = mean over submitted runs of c(last step)`` and
``E[L] = c(limit)``. ``D = (S - L) - (E[S] - E[L])`` is the part of the
submitted-vs-limit gap the pool does not explain: about 0 for a stopping rule of
the policy's own, large for a walk that submits where recordings ended at gold.
"""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Gap:
    """The statistic and its parts (rates in 0..1)."""

    d: float
    submitted: int
    hit_limit: int
    s_rate: float
    l_rate: float
    expected_gap: float


def unexplained_gap(kind: str, n_tasks: int = 30, seeds: int = 8, limit: int = 10, explore: float = 0.15) -> Gap:
    """``D`` of the module docstring for replay policy ``kind`` on a seeded sample of bundled tasks."""
    from evoagent.envs.intercode_sql.data import load_tasks
    from evoagent.envs.intercode_sql.env import InterCodeSQLEnv
    from evoagent.envs.intercode_sql.walk import RecorderStopsReplayPolicy, ReplayPolicy
    from evoagent.rollout import Context, rollout

    walk = {"replay": ReplayPolicy, "replay_recorder_stops": RecorderStopsReplayPolicy}[kind]

    tasks = random.Random(0).sample(load_tasks(), n_tasks)
    ctx = Context(tasks={t.task_id: t for t in tasks}, policy=walk.from_bundled(explore=explore),
                  make_env=InterCodeSQLEnv, max_steps=limit)
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
    sub = [r for r in runs if 0 < len(r) < limit]
    lim = [r for r in runs if len(r) == limit]
    s_rate = sum(r[-1] for r in sub) / len(sub) if sub else 0.0
    l_rate = sum(r[-1] for r in lim) / len(lim) if lim else 0.0
    expected = (sum(c[len(r) - 1] for r in sub) / len(sub) if sub else 0.0) - (c.get(limit - 1, 0.0) if lim else 0.0)
    return Gap((s_rate - l_rate) - expected, len(sub), len(lim), s_rate, l_rate, expected)


__all__ = ["Gap", "unexplained_gap"]
