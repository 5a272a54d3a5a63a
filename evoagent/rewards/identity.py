"""Which model made a campaign's scores, recorded at start and checked again at resume.

A reward source (the ``reward_source`` of every score) names the model that
made it: ``prm(model=<digest of the model folder's files>)``,
``http(...,digest=<the digest the server reports>,...)``, ``judge(model=...,
prompt=<prompt digest>,...)``, ``mc(k=...,aggregate=...,seed=...)``. The
sources a campaign scores with are stored once (store meta ``reward_models``,
one per reward model name) when scoring starts. ``evoagent resume`` computes
them again before anything is written (:func:`check_resume`): a model
retrained in place, a server now serving other weights, a judge prompt that
changed between versions is refused with one line naming both. So a
campaign's ``rewards`` never hold two models under one name.
"""
from __future__ import annotations

import json
from typing import Any

from evoagent.errors import UserError

__all__ = ["META", "check_resume", "claim", "current", "shown", "stored"]

META = "reward_models"


def shown(text: str, limit: int = 200) -> str:
    """``text`` for a one-line message: cut at ``limit``, line breaks and tabs shown as ``\\n``/``\\t``,
    every other control by the one escaping rule (:func:`evoagent.escaping.visible`)."""
    from evoagent.escaping import visible

    out = visible(text[:limit].replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return out + ("..." if len(text) > limit else "")


def named(campaign: Any) -> list[str]:
    """The reward models the campaign scores with (``env`` is the outcome, no model)."""
    names = (campaign.get("search.reward"), campaign.get("fitness.reward"))
    return [n for n in dict.fromkeys(names) if n != "env"]


def current(campaign: Any) -> dict[str, str]:
    """The reward source each of the campaign's models would write now (models with an identity rule)."""
    from evoagent import registry

    out = {}
    for name in named(campaign):
        part = registry.parts("reward").get(name)
        if part is not None and part.identity is not None:
            out[name] = part.identity(campaign)
    return out


def _base(source: str) -> str:
    """The model's source of a stored one: a fitness aggregate's rows carry ``:mean`` (etc.) after it."""
    return source[:source.rindex(")") + 1] if "(" in source and ")" in source else source.split(":", 1)[0]


def _name_of(source: str) -> str:
    return source.split("(", 1)[0].split(":", 1)[0]


def stored(store: Any) -> dict[str, set[str]]:
    """The sources the campaign scored with, by model name: the record made when scoring started,
    else (a store from before the record) the distinct sources of its ``rewards`` rows."""
    text = store.get_meta(META)
    if text is not None:
        return {name: {source} for name, source in json.loads(text).items()}
    found: dict[str, set[str]] = {}
    for row in store.query("SELECT DISTINCT reward_source FROM rewards WHERE reward_source <> 'env'").to_pylist():
        found.setdefault(_name_of(row["reward_source"]), set()).add(_base(row["reward_source"]))
    return found


def _refusal(name: str, before: set[str], now: str) -> UserError:
    old = " and ".join(shown(s) for s in sorted(before))
    return UserError(f"reward model {name} changed since the campaign started: it scored with {old}, now it is "
                     f"{shown(now)}; restore that model (the same folder, or its server with the same weights) and "
                     "resume, or start a new campaign in a new store; nothing was written")


def check_resume(campaign: Any, store: Any) -> None:
    """At resume, before anything is written: every reward model is the one the campaign scored with."""
    before = stored(store)
    for name, now in current(campaign).items():
        if name in before and before[name] != {now}:
            raise _refusal(name, before[name], now)


def claim(store: Any, sources: dict[str, str]) -> None:
    """When scoring starts: record the campaign's sources (refusing any that differ from the record)."""
    before = stored(store)
    for name, now in sources.items():
        if name in before and before[name] != {now}:
            raise _refusal(name, before[name], now)
    record = {name: next(iter(s)) for name, s in before.items() if len(s) == 1}
    if store.get_meta(META) is None or any(record.get(n) != s for n, s in sources.items()):
        store.put_meta(META, json.dumps({**record, **sources}, sort_keys=True))
