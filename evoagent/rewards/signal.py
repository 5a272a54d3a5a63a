"""A campaign's two signals: what drives step-level decisions, what ranks trajectories.

``search.reward`` names the model behind every step-level decision of the
operators (revise's first wrong step, recombine's best answer, refine's
check); ``fitness.reward`` names what scores trajectories for selection:
``env`` (the outcome against gold) or a reward model, whose trajectory score
is the ``last``, ``min`` or ``mean`` of its step scores. Operators see a
trajectory through :meth:`Signal.view`: the same steps with the signal's
values as rewards, so they need not know which model is behind it.
"""
from __future__ import annotations

import math
from dataclasses import replace

from evoagent.rewards.base import Query
from evoagent.rewards.scorer import Scorer
from evoagent.trajectory import Trajectory

def mean(xs: list[float]) -> float:
    """The mean of finite values is finite: ``sum`` of two 1e308 scores overflows to inf, so then
    each value is divided first (same result as ``sum / len`` whenever that one is finite)."""
    got = sum(xs) / len(xs)
    if math.isfinite(got) or not all(math.isfinite(x) for x in xs):
        return got
    return math.fsum(x / len(xs) for x in xs)


AGGREGATE = {
    "last": lambda xs: xs[-1],
    "min": min,
    "mean": mean,
}


def queries(traj: Trajectory) -> list[Query]:
    """One query per step (its prefix), with the value the environment observed; the
    last step's is terminal: the value of the episode submitted there, so what the environment
    observed there is the outcome, not the last state's value (an episode cut off while Game of
    24 could still make 24 is not a solved one; in SQL the two are equal)."""
    actions, n = traj.actions, len(traj.steps)
    seen = tuple(s.observation for s in traj.steps)
    return [Query(traj.task_id, actions[: i + 1], traj.outcome_reward if i == n - 1 else traj.steps[i].reward,
                  terminal=i == n - 1, observations=seen[: i + 1]) for i in range(n)]


class Signal:
    """Step values and trajectory scores from one reward model (through its scorer)."""

    def __init__(self, scorer: Scorer, aggregate: str = "last", *, annotates: bool = False):
        self.scorer, self.aggregate = scorer, aggregate
        self.annotates = annotates  # steps' process_reward holds this signal's values

    @property
    def source(self) -> str:
        return self.scorer.source

    @property
    def trajectory_source(self) -> str:
        """The ``reward_source`` of this signal's trajectory scores."""
        return f"{self.source}:{self.aggregate}"

    @property
    def is_oracle(self) -> bool:
        return self.scorer.model.observes

    def step_values(self, traj: Trajectory) -> list[float]:
        """The signal's value of every step (read from ``process_reward`` where this signal wrote it)."""
        if self.annotates and all(s.process_reward is not None for s in traj.steps):
            return [float(s.process_reward) for s in traj.steps]  # type: ignore[arg-type]
        return self.scorer.score(queries(traj))

    def trajectory_score(self, traj: Trajectory) -> float:
        """A whole trajectory's score: the aggregate of its step values (0 for no steps)."""
        if not traj.steps:
            return 0.0
        if self.aggregate == "last" and not (self.annotates and traj.steps[-1].process_reward is not None):
            return self.scorer.score([queries(traj)[-1]])[0]
        return float(AGGREGATE[self.aggregate](self.step_values(traj)))

    def annotate(self, traj: Trajectory) -> Trajectory:
        """The trajectory with every step's ``process_reward`` set to this signal's value."""
        values = self.step_values(traj)
        return replace(traj, steps=tuple(replace(s, process_reward=v) for s, v in zip(traj.steps, values)))

    def view(self, traj: Trajectory) -> Trajectory:
        """What operators decide on: steps rewarded by this signal, outcome its trajectory score.

        The oracle's view is the trajectory itself (its rewards are the oracle's).
        """
        if self.is_oracle:
            return traj
        values = self.step_values(traj)
        steps = tuple(replace(s, reward=v, process_reward=v) for s, v in zip(traj.steps, values))
        outcome = float(AGGREGATE[self.aggregate](values)) if values else 0.0
        return replace(traj, steps=steps, outcome_reward=outcome)
