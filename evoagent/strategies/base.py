"""The strategy interface: what a round's work items are, and what a round produces.

In the ask/tell style of Optuna's samplers and Nevergrad's optimizers, a
strategy decides only from committed facts it reads from the store (the
previous round's population, the results of this round), never from memory it
built up; so a resumed campaign, in a new process, needs no hidden state. The
runner (``evoagent/loop.py``) owns the journal, execution and budgets.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evoagent.campaign import Campaign
from stores.base import Store, WorkItem


@dataclass(frozen=True)
class Closed:
    """What a finished round produces: ranked members per task and the round's statistics."""

    population: list[tuple[str, str, int]]  # (task_id, traj_id, rank)
    stats: dict[str, Any] = field(default_factory=dict)


class Strategy(ABC):
    """Plans and closes rounds ``0 .. last_round()``; see the module docstring.

    ``fitness_source`` names the trajectory scores that rank members (None:
    the outcome against gold).
    """

    def __init__(self, campaign: Campaign, store: Store, task_ids: Sequence[str],
                 fitness_source: str | None = None):
        self.c, self.store, self.task_ids = campaign, store, sorted(task_ids)
        from evoagent import registry

        # what this strategy reads: its own keys (by their declared names) and the engine's
        self.own = campaign.settings_for(registry.get("strategy", campaign.get("strategy.kind")))
        self.fitness_source = fitness_source

    @abstractmethod
    def last_round(self) -> int:
        """The index of the campaign's last round."""

    @abstractmethod
    def plan(self, round_: int) -> list[WorkItem]:
        """Ask: the work items of a round, from committed facts only (deterministic)."""

    def extend(self, round_: int, items: list[WorkItem]) -> list[WorkItem]:
        """Ask again: with the round's ``items`` all run, more items for it (none by default).

        Must be deterministic given the committed facts and ``items``, so that
        a resume asks for exactly the same; new item ids follow the last one.
        """
        return []

    @abstractmethod
    def close(self, round_: int) -> Closed:
        """Tell: with all the round's results committed, what the round produces."""

    def close_partial(self, round_: int) -> Closed:
        """Tell, for a round a budget cut short: what it produces from the results that finished.

        The runner commits it as the campaign's answer (what the cut round found counts) and,
        when a resume finishes the round, closes it again with ``close``, which supersedes it.
        The default is ``close``: right for a strategy whose close keeps the previous round's
        members beside this round's results (plus-replacement, a tree's best so far); one that
        drops them (comma-replacement) must keep them for tasks whose items did not all finish.
        """
        return self.close(round_)

    def hall_of_fame(self) -> Any:
        """The best members seen (for reporting); strategies without one return None."""
        return None
