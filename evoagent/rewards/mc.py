"""``mc``: Monte-Carlo step values from the campaign's own policy.

The value of a prefix is estimated from ``k`` rollouts of the policy that
continue from it to a submitted answer: the mean outcome ("soft", as in
Math-Shepherd, Wang et al. 2024, and IPR, Xiong et al. 2024) or the best
("hard"; RRO, the rising-reward step search, uses either). Only the outcome
checker at the end of each rollout reads gold: process supervision derived
from outcome supervision. Rollout ``j`` of a prefix draws from a generator
seeded by (campaign seed, prefix id, j), so a value never depends on timing,
and every environment step executed is counted. The prefix is executed once
per query (``rollout.begin``) and each rollout restores the environment's
state after it; an environment that cannot snapshot its state re-executes
the prefix in each rollout instead (same values, more steps). A terminal query (the
episode was submitted after its last step) has one possible continuation,
the submit itself: its value is the outcome checker's on that episode.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from evoagent.evolution import derive_seed
from evoagent.registry import Key, Part
from evoagent.rewards.base import Query, RewardModel, Score, source_name
from evoagent.rollout import Context, Started, begin, execute, rollout

__all__ = ["MonteCarlo"]


class MonteCarlo(RewardModel):
    """k policy rollouts per prefix; value = mean ("mean") or max ("max") of their outcomes."""

    name = "mc"
    uses_gold = True  # the outcome checker at the end of each rollout

    def __init__(self, ctx: Context, *, k: int, aggregate: str, seed: int, threads: int = 4):
        self.ctx, self.k, self.aggregate, self.seed = ctx, k, aggregate, seed
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="mc")

    @property
    def source(self) -> str:
        return _source(self.k, self.aggregate, self.seed)

    def _begin(self, q: Query) -> Started:
        return begin(self.ctx, self.ctx.tasks[q.task_id], q.actions)

    def _one(self, q: Query, start: Started, j: int) -> tuple[float, int]:
        rng = random.Random(derive_seed(self.seed, "mc", q.prefix_id, j))
        out = rollout(self.ctx, start.task, rng, start=start, operator="mc")
        return out.trajectory.outcome_reward, out.env_steps

    def _terminal(self, q: Query) -> tuple[float, int]:
        out = execute(self.ctx, self.ctx.tasks[q.task_id], q.actions, "mc")
        return out.trajectory.outcome_reward, out.env_steps

    def score(self, queries: Sequence[Query]) -> list[Score]:
        """Each open prefix executed once, then its k rollouts; all spread over the rollout threads."""
        open_ = [q for q in queries if not q.terminal]
        starts = dict(zip(map(id, open_), self._pool.map(self._begin, open_)))
        jobs = [(q, j) for q in queries for j in range(1 if q.terminal else self.k)]
        runs = list(self._pool.map(
            lambda qj: self._terminal(qj[0]) if qj[0].terminal else self._one(qj[0], starts[id(qj[0])], qj[1]),
            jobs))
        out, at = [], 0
        for q in queries:
            n = 1 if q.terminal else self.k
            mine, at = runs[at:at + n], at + n
            values = [v for v, _ in mine]
            value = sum(values) / len(values) if self.aggregate == "mean" else max(values)
            prefix_steps = 0 if q.terminal else starts[id(q)].env_steps
            out.append(Score(value, prefix_steps + sum(steps for _, steps in mine)))
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _source(k: int, aggregate: str, seed: int) -> str:
    return source_name("mc", {"k": k, "aggregate": aggregate, "seed": seed})


def _identity(campaign: Any) -> str:
    return _source(campaign.get("rewards.mc.k"), campaign.get("rewards.mc.aggregate"), campaign.get("seed"))


def _make(ctx: Context, params: dict[str, Any], seed: int) -> MonteCarlo:
    return MonteCarlo(ctx, k=params["k"], aggregate=params["aggregate"], seed=seed, threads=params["threads"])


PART = Part("reward", "mc", _make, {
    "k": Key(int, 5, lambda x: 1 <= x <= 1000, "within 1..1000"),
    "aggregate": Key(str, "mean", lambda x: x in ("mean", "max"), '"mean" (soft) or "max" (hard)'),
    "threads": Key(int, 4, lambda x: 1 <= x <= 256, "within 1..256 (rollouts run at once; values do not change)"),
}, identity=_identity, doc="Monte-Carlo rollouts of the policy from the prefix")
