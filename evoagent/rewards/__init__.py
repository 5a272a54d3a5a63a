"""Reward models: one batched, store-cached interface (``score(queries) -> values``).

Built in: ``oracle`` (the environment's per-step reward against gold) and
``mc`` (Monte-Carlo rollouts of the policy). Each declares itself once in
``evoagent.registry``; its parameters are the campaign keys ``rewards.<name>.*``.
"""
from __future__ import annotations

import inspect
from typing import Any

from evoagent.rewards.base import Query, RewardModel, Score
from evoagent.rewards.identity import claim
from evoagent.rewards.scorer import Scorer
from evoagent.rewards.signal import Signal


def make_scorer(name: str, campaign: Any, ctx: Any, store: Any) -> Scorer:
    """The scorer of the reward model ``name``, made from its own keys (``rewards.<name>.*``, read by
    their declared names) as a ``registry.Settings``."""
    from evoagent import registry

    part = registry.get("reward", name)
    params = campaign.settings_for(part)  # its own keys (by their declared names) and the engine's
    # What the engine hands a factory that declares the parameter: ``store``, the campaign's store
    # (e.g. the judge's call ledger); ``ray_address``, the Ray session the campaign's executor
    # runs in (a model placed on Ray joins it). The others are called as before.
    wants = inspect.signature(part.fn).parameters
    extra: dict[str, Any] = {"store": store} if "store" in wants else {}
    if "ray_address" in wants:
        extra["ray_address"] = ray_address(campaign)
    model = part.fn(ctx, params, campaign.get("seed"), **extra)
    return Scorer(model, store, batch_size=campaign.get("rewards.batch_size"),
                  wait_s=campaign.get("rewards.batch_wait_ms") / 1000)


def ray_address(campaign: Any) -> str:
    """The Ray session the campaign's executor runs in (its part's ``ray_address`` hook, given the
    executor's own keys); ``local`` for an executor without one (threads)."""
    from evoagent import registry

    part = registry.get("executor", campaign.get("executor.kind"))
    hook = getattr(part, "ray_address", None)
    return "local" if hook is None else hook(registry.settings_of(campaign, part))


def build_signals(campaign: Any, ctx: Any, store: Any) -> tuple[Signal, Signal | None]:
    """The campaign's search signal and fitness signal (None for ``env``), sharing scorers by model."""
    scorers: dict[str, Scorer] = {}

    def scorer(name: str) -> Scorer:
        if name not in scorers:
            scorers[name] = make_scorer(name, campaign, ctx, store)
            ctx.closers.append(scorers[name].close)
        return scorers[name]

    from evoagent import registry

    search_name, fitness_name = campaign.get("search.reward"), campaign.get("fitness.reward")
    search = Signal(scorer(search_name), "last", annotates=True)
    fitness = None
    if registry.get("reward", fitness_name).fn is not None:  # None: the environment's outcome, no model
        fitness = Signal(scorer(fitness_name), campaign.get("fitness.aggregate"),
                         annotates=fitness_name == search_name)
    # Every score names the model that made it: one source per model name for the whole campaign.
    claim(store, {name: s.source for name, s in scorers.items()})
    return search, fitness


__all__ = ["Query", "RewardModel", "Score", "Scorer", "Signal", "build_signals", "make_scorer", "ray_address"]
