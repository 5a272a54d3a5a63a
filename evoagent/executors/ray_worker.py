"""The actors' side of the Ray executor (``evoagent.executors.ray``): where work items run.

``ItemWorker`` builds one Context once and runs the runner's own ``run_item``;
its signals score through ``RemoteScorer``, which asks the driver (through the
``Mailbox`` actor) instead of computing anything: the driver's store-backed
Scorer answers, so every score is looked up, batched and written there first.
"""
from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from evoagent.campaign import Campaign
from evoagent.errors import UserError
from evoagent.llm.errors import BudgetExceeded
from evoagent.rewards.base import Query
from evoagent.rewards.scorer import scoring_steps
from evoagent.rewards.signal import Signal
from evoagent.trajectory import Trajectory
from stores.base import ItemResult, WorkItem

# A score request's answer: values, the env steps they cost, and (kind, text) of an error:
# "stop" (BudgetExceeded on the driver, e.g. the reward server failed for good) or "fail".
Answer = tuple[list[float], int, tuple[str, str] | None]


class Mailbox:
    """Score requests from actors to the driver, and the answers back (an async Ray actor)."""

    def __init__(self) -> None:
        self._requests: asyncio.Queue[tuple[int, str, list[Query]]] = asyncio.Queue()
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._next = 0

    async def ask(self, source: str, queries: list[Query]) -> Answer:
        """An actor's request: waits for the driver's answer (values, env steps, error)."""
        self._next += 1
        rid = self._next
        self._waiting[rid] = asyncio.get_running_loop().create_future()
        await self._requests.put((rid, source, queries))
        try:
            return await self._waiting[rid]
        finally:
            self._waiting.pop(rid, None)

    async def take(self, wait_s: float) -> list[tuple[int, str, list[Query]]]:
        """The driver's poll: every waiting request, after at most ``wait_s`` for the first."""
        try:
            first = await asyncio.wait_for(self._requests.get(), wait_s)
        except TimeoutError:
            return []
        out = [first]
        while not self._requests.empty():
            out.append(self._requests.get_nowait())
        return out

    async def answer(self, rid: int, result: Answer) -> None:
        fut = self._waiting.get(rid)
        if fut is not None and not fut.done():  # its asker may have died meanwhile
            fut.set_result(result)


@dataclass(frozen=True)
class ModelInfo:
    """What a Signal reads of its model: the source name, and whether it is the observed value."""

    source: str
    observes: bool


class RemoteScorer:
    """A Scorer's face inside an actor: its queries are answered by the driver's Scorer."""

    def __init__(self, model: ModelInfo, mailbox: Any):
        self.model, self.mailbox = model, mailbox

    @property
    def source(self) -> str:
        return self.model.source

    def score(self, queries: Sequence[Query]) -> list[float]:
        import ray

        if self.model.observes and all(q.observed is not None for q in queries):
            return [float(q.observed) for q in queries]  # type: ignore[arg-type]  # as Scorer.score
        values, env_steps, error = ray.get(self.mailbox.ask.remote(self.model.source, list(queries)))
        if error is not None:
            kind, text = error
            if kind == "stop":  # e.g. the reward server is gone: the item stays pending, as with threads
                raise BudgetExceeded(text)
            raise RuntimeError(f"scoring on the driver failed: {text}")
        counter = scoring_steps.get()
        if counter is not None:  # the env steps this item's queries cost there
            counter[0] += env_steps
        return values

    def close(self) -> None:
        """Nothing held here: the driver's Scorer owns the model."""


SignalSpec = tuple[str, bool, str, bool]  # source, observes, aggregate, annotates


def signal_spec(signal: Signal | None) -> SignalSpec | None:
    if signal is None:
        return None
    return (signal.source, signal.is_oracle, signal.aggregate, signal.annotates)


class ItemWorker:
    """A Ray actor: one Context (policy, per-thread environments), built once; runs work items."""

    def __init__(self, campaign: str, task_ids: list[str], parts: bytes,
                 signals: tuple[SignalSpec, SignalSpec | None], mailbox: str, run: Callable[..., ItemResult]):
        import ray
        from ray import cloudpickle

        from evoagent import registry
        from evoagent.envs import select_tasks
        from evoagent.rollout import build_context

        for part in cloudpickle.loads(parts):  # parts registered as objects (e.g. a script's operator)
            registry.register(part)
        c = Campaign(json.loads(campaign))  # the driver's validated campaign, as stored (to_json)
        tasks = select_tasks(c)  # from this node's copy of the data: small arguments, restartable actors
        if [t.task_id for t in tasks] != task_ids:
            raise UserError("executor.kind = ray: an actor's node selects other tasks than the campaign's "
                            "(env.tasks/env.dump must be the same files on every node)")
        self.ctx = build_context(c, tasks)
        self._run = run
        box = ray.get_actor(mailbox)  # by name: a handle argument would pin the actor's restarts

        def signal(spec: SignalSpec | None) -> Signal | None:
            if spec is None:
                return None
            source, observes, aggregate, annotates = spec
            return Signal(RemoteScorer(ModelInfo(source, observes), box),  # type: ignore[arg-type]
                          aggregate, annotates=annotates)

        self.ctx.search, self.ctx.fitness = signal(signals[0]), signal(signals[1])

    def run(self, item: WorkItem, parents: list[Trajectory]) -> ItemResult:
        return self._run(item, parents, self.ctx)

    def pid(self) -> int:
        return os.getpid()
