"""``prm``: a learned process reward model (``evoagent rm train``), scored in-process.

The model reads each query as :func:`evoagent.rm.text.prefix_text` renders it
(question, tables, actions and their observations) and answers the
probability that the prefix leads to success: no gold of the searched tasks
is read, so a campaign scored by it (``search.reward = "prm"``,
``fitness.reward = "prm"``) searches without gold. A query that arrives
without its observations (a prefix no episode has executed yet) is executed
once to get them, and those environment steps are counted. Batches come from
the store-backed :class:`~evoagent.rewards.scorer.Scorer` like every model's;
the reward source names the model by a content hash of its directory, so a
retrained model never reads the old one's cached scores.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evoagent.errors import UserError
from evoagent.registry import Key, Part, register
from evoagent.rewards.base import Query, RewardModel, Score, source_name
from evoagent.rollout import Context, execute

__all__ = ["LearnedPRM", "check_prm"]


class LearnedPRM(RewardModel):
    """A trained model directory's P(success | prefix), one batched forward pass per scoring batch."""

    name = "prm"
    uses_gold = False

    def __init__(self, ctx: Context, model: Any):
        self.ctx, self.model = ctx, model

    @property
    def source(self) -> str:
        return source_name("prm", {"model": self.model.digest})

    def _observations(self, q: Query) -> tuple[tuple[str | None, ...], int]:
        if len(q.observations) >= len(q.actions):
            return tuple(q.observations[: len(q.actions)]), 0
        run = execute(self.ctx, self.ctx.tasks[q.task_id], q.actions, "prm")
        return tuple(s.observation for s in run.trajectory.steps), run.env_steps

    def score(self, queries: Sequence[Query]) -> list[Score]:
        from evoagent.rm.text import prefix_text, submitted

        texts, steps = [], []
        for q in queries:
            observations, n = self._observations(q)
            actions = q.actions
            if q.terminal:  # the value of submitting here, not of going on
                actions, observations = submitted(actions, observations)
            texts.append(prefix_text(self.ctx.tasks[q.task_id], actions, observations,
                                     max_chars=self.model.max_chars))
            steps.append(n)
        return [Score(v, n) for v, n in zip(self.model.score_texts(texts), steps)]


def _is_model_dir(path: str) -> bool:
    from evoagent.rm.model import read_config

    try:
        read_config(Path(path))
    except UserError:
        return False
    return True


def _load(path: str) -> Any:
    from evoagent.rm.model import load_model

    if not path:
        raise UserError("key 'rewards.prm.path': search.reward or fitness.reward is prm; name the model "
                        "directory (evoagent rm train STORE --out DIR)")
    return load_model(path)


def check_prm(campaign: Any) -> None:
    """Before any work (the registry's preflight): the campaign names a model directory that loads."""
    _load(campaign.get("rewards.prm.path"))


def _make(ctx: Context, params: dict[str, Any], seed: int) -> LearnedPRM:
    return LearnedPRM(ctx, _load(params["path"]))


register(Part("reward", "prm", _make, {
    "path": Key(str, "", lambda p: p == "" or _is_model_dir(p),
                "a model directory written by `evoagent rm train` (with its config.json)"),
}, uses_gold=False, preflight=check_prm,
   doc="a learned process reward model (evoagent rm train), scored in-process"))
