"""``prm``: a learned process reward model (``evoagent rm train``), scored in-process.

The model reads each query as :func:`evoagent.rm.text.prefix_text` renders it
(question, tables, actions and their observations) and answers the
probability that the prefix leads to success. Its weights learned from the
gold-derived labels of its training tasks (``training.tasks`` in its
``config.json``), so a campaign scored by it (``search.reward = "prm"``,
``fitness.reward = "prm"``) searches without gold only on other tasks:
:func:`check_unseen` refuses a campaign whose tasks overlap them, unless
``rewards.prm.allow_seen_tasks = true``, and then the model counts as reading
gold (no prompt may show its values, best-of-N needs ``allow_gold``). A query that arrives
without its observations (a prefix no episode has executed yet) is executed
once to get them, and those environment steps are counted. Batches come from
the store-backed :class:`~evoagent.rewards.scorer.Scorer` like every model's;
the reward source names the model by a content hash of its directory, so a
retrained model never reads the old one's cached scores.
``rewards.prm.placement = "ray"`` runs the forward passes in one Ray actor per
model that campaigns on the cluster share (:mod:`evoagent.rm.ray_models`).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evoagent.errors import UserError
from evoagent.registry import Key, Part
from evoagent.rewards.base import Query, RewardModel, Score, source_name
from evoagent.rollout import Context

__all__ = ["LearnedPRM", "check_prm", "check_unseen", "training_tasks"]


class LearnedPRM(RewardModel):
    """A trained model directory's P(success | prefix), one batched forward pass per scoring batch."""

    name = "prm"
    uses_gold = False

    def __init__(self, ctx: Context, model: Any):
        self.ctx, self.model = ctx, model

    @property
    def source(self) -> str:
        return _source(self.model.digest)

    def score(self, queries: Sequence[Query]) -> list[Score]:
        from evoagent.rm.text import render_queries

        texts, steps = render_queries(self.ctx, queries, self.model.max_chars, "prm")
        return [Score(v, n) for v, n in zip(self.model.score_texts(texts), steps)]

    def close(self) -> None:
        close = getattr(self.model, "close", None)  # a model on Ray: its session, if it started one
        if close is not None:
            close()


def _is_model_dir(path: str) -> bool:
    from evoagent.rm.model import read_config

    try:
        read_config(Path(path))
    except UserError:
        return False
    return True


def _named(path: str) -> str:
    if not path:
        raise UserError("key 'rewards.prm.path': search.reward or fitness.reward is prm; name the model "
                        "directory (evoagent rm train STORE --out DIR)")
    return path


def _load(path: str) -> Any:
    from evoagent.rm.model import load_model

    return load_model(_named(path))


def check_prm(campaign: Any) -> None:
    """Before any work (the registry's preflight): the campaign names a model directory that loads."""
    _load(campaign.get("rewards.prm.path"))


def training_tasks(config: dict[str, Any]) -> set[str]:
    """The ids of the tasks whose labels (gold-derived) a model's weights learned from."""
    return _names(config, "tasks", "training tasks")


def training_classes(config: dict[str, Any]) -> set[str]:
    """The gold-equivalence classes (:mod:`evoagent.rm.leakage`) of those tasks: their twins' gold too."""
    return _names(config, "gold_classes", "training tasks' gold-equivalence classes")


def _names(config: dict[str, Any], key: str, what: str) -> set[str]:
    training = config.get("training")
    names = training.get(key) if isinstance(training, dict) else None
    if not isinstance(names, list) or not all(isinstance(t, str) for t in names):
        raise UserError(f"key 'rewards.prm.path': the model does not record its {what} (trained by an "
                        "older evoagent); train it again with evoagent rm train")
    return set(names)


def check_unseen(campaign: Any, tasks: Sequence[Any]) -> None:
    """Once the campaign's tasks are known: a prm model never scores a task it trained on (it
    would search with that task's gold) unless ``rewards.prm.allow_seen_tasks``, and then it
    counts as gold: refused where a prompt would show its values or best-of-N would pick by it."""
    from evoagent.rm.model import read_config

    from evoagent.rm.leakage import classes

    c = campaign
    if "prm" not in (c.get("search.reward"), c.get("fitness.reward")):
        return
    config = read_config(Path(c.get("rewards.prm.path")))
    ids, gold = training_tasks(config), training_classes(config)
    of = classes(tasks)
    seen = sorted(t.task_id for t in tasks if t.task_id in ids or of[t.task_id] in gold)
    if not seen:
        return
    if not c.get("rewards.prm.allow_seen_tasks"):
        twins = [i for i in seen if i not in ids]
        example = (f"e.g. {twins[0]!r}, whose gold is a training task's" if twins and len(twins) == len(seen)
                   else f"e.g. {seen[0]!r}")
        raise UserError(f"key 'rewards.prm.path': the model was trained on {len(seen)} of this campaign's tasks or "
                        f"on tasks with the same gold ({len(twins)} of them twins: {example}), so it knows their "
                        "gold; search other tasks, train with them held out, or set rewards.prm.allow_seen_tasks = "
                        "true to score with gold knowingly")
    from evoagent.registry import policy_part

    if c.get("search.reward") == "prm" and policy_part(c).needs_store and c.get("operators.llm"):
        raise UserError("key 'rewards.prm.allow_seen_tasks': the model knows these tasks' gold and LLM operators "
                        "would show its values in prompts; set operators.llm = false")
    from evoagent import registry

    strategy = registry.get("strategy", c.get("strategy.kind"))
    if c.get("fitness.reward") == "prm" and getattr(strategy.fn, "refuses_gold_fitness", lambda v: False)(c.values):
        raise UserError(f"key 'rewards.prm.allow_seen_tasks': the model knows these tasks' gold, so "
                        f"{strategy.name} picks by gold; set strategy.{strategy.name}.allow_gold = true")


def _source(digest: str) -> str:
    return source_name("prm", {"model": digest})


def _identity(campaign: Any) -> str:
    """The source of the model now in ``rewards.prm.path``: its files' digest (retrained: another one)."""
    from evoagent.rm.model import content_digest

    return _source(content_digest(Path(_named(campaign.get("rewards.prm.path")))))


def _make(ctx: Context, params: dict[str, Any], seed: int, ray_address: str = "local") -> LearnedPRM:
    """On Ray, the model's actor lives in the session the engine names (``ray_address``: the
    executor's, or a local one), not one this part reads from another part's keys."""
    if params["placement"] == "ray":
        from evoagent.rm.ray_models import RemoteModel

        return LearnedPRM(ctx, RemoteModel(_named(params["path"]), num_cpus=params["num_cpus"],
                                           num_gpus=params["num_gpus"], address=ray_address))
    return LearnedPRM(ctx, _load(params["path"]))


PART = Part("reward", "prm", _make, {
    "path": Key(str, "", lambda p: p == "" or _is_model_dir(p),
              "a model directory written by `evoagent rm train` (with its config.json)"),
    "allow_seen_tasks": Key(bool, False),
    "placement": Key(str, "local", lambda p: p == "local" or (p == "ray" and importlib.util.find_spec("ray") is not None),
                   "\"local\" (in the campaign's process) or \"ray\" (a shared Ray actor; needs Ray: "
                   "pip install -e '.[ray]')"),
    "num_cpus": Key((int, float), 1, lambda x: 0 <= x <= 1024, "within 0..1024 (the Ray actor's)"),
    "num_gpus": Key((int, float), 0, lambda x: 0 <= x <= 64, "within 0..64 (the Ray actor's; 1 = on a GPU node)"),
}, uses_gold=False, preflight=check_prm, identity=_identity,
   doc="a learned process reward model (evoagent rm train), scored in-process")
