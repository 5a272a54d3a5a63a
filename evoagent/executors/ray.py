"""Work items on a Ray cluster: actors that each hold their own environment and policy.

The campaign's process (the driver) stays the store's only writer: it sends
``(item, parents)`` to an actor, gets the ``ItemResult`` back and commits it
exactly as with threads, so the journal, resume and the SQL views do not
change. Each actor builds its Context once (tasks, policy, environment, from
the validated campaign), not per item, and runs the runner's own
``run_item`` (handed to the executor by the caller); an item's result depends only on its operator,
parents and seed, so it does not matter which actor runs it, or how often.

- Backpressure: at most ``concurrency`` items in flight, spread over
  ``executor.actors`` actors (each runs up to its share at once, in threads).
- Faults: an actor whose process dies is restarted by Ray (building its
  Context again); the items it had in flight are sent again, up to
  ``executor.max_retries`` times each (same seed, same result), and past that
  the campaign stops with one line (``evoagent resume`` tries again).
- Reward models: scores are never computed in an actor. An actor's signals
  send their queries to the driver through a mailbox actor; a driver thread
  answers each request with the campaign's own store-backed ``Scorer``, which
  looks every query up first, batches queries of all actors' items together,
  and writes each new score before it is used: no score computed twice.
  Values the trajectory observed itself (the oracle's) need no round trip.
  A learned PRM's forward pass may run in a shared Ray actor instead of the
  driver (``rewards.prm.placement``, :mod:`evoagent.rm.ray_models`).
- A Ray session that this module started (``executor.address = "local"``,
  ``auto``, ``ray://``) is shut down by ``close()``, which ``ctx.close()`` calls
  on every exit path; one already running in the process is left running.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any

from evoagent.errors import UserError
from evoagent.ray_session import connect, disconnect
from evoagent.executors.ray_worker import Answer, ItemWorker, Mailbox, signal_spec
from evoagent.llm.errors import BudgetExceeded
from evoagent.rewards.base import Query
from evoagent.rewards.scorer import scoring_steps
from evoagent.registry import Settings
from evoagent.rollout import Context
from evoagent.trajectory import Trajectory
from stores.base import ItemResult, WorkItem

POLL_S = 0.05  # the dispatcher's longest wait for a result before it looks at new submissions
MAX_WAITS = 600  # sends of one item to restarting actors (0.1-1 s apart) before the campaign stops


class WorkerLost(UserError):
    """An item's actor died more than ``executor.max_retries`` times; the campaign stops (resume retries)."""


# -- in the driver ------------------------------------------------------------------------
class _ScoringService:
    """Answers the actors' score requests with the driver's Scorers (store lookup, batching, write first)."""

    def __init__(self, mailbox: Any, scorers: dict[str, Any], threads: int):
        self.mailbox, self.scorers = mailbox, scorers
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="ray-score")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ray-score-poll", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import ray

        while not self._stop.is_set():
            try:
                requests = ray.get(self.mailbox.take.remote(0.2))
            except Exception:  # the session is going away
                if self._stop.wait(0.2):
                    return
                continue
            for rid, source, queries in requests:
                self._pool.submit(self._answer, rid, source, queries)

    def _answer(self, rid: int, source: str, queries: list[Query]) -> None:
        counter = [0]
        token = scoring_steps.set(counter)
        try:
            result: Answer = (self.scorers[source].score(queries), counter[0], None)
        except BudgetExceeded as exc:  # stops the campaign after the items in flight, as with threads
            result = ([], 0, ("stop", str(exc)))
        except Exception as exc:  # the asking item fails, as with threads
            result = ([], 0, ("fail", f"{type(exc).__name__}: {exc}"))
        finally:
            scoring_steps.reset(token)
        with contextlib.suppress(Exception):  # the session is going away
            self.mailbox.answer.remote(rid, result)

    def close(self) -> None:
        """Answer nothing more; wait for answers being computed, which write scores to the store
        (``ctx.close()`` runs this before the store is closed)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Job:
    future: Future[ItemResult]
    item: WorkItem
    parents: list[Trajectory]
    tries: int = 0  # times its actor died under it
    waits: int = 0  # times its actor was restarting when it was sent
    actor: int = -1
    not_before: float = 0.0  # monotonic time of its next send


class RayPool:
    """The actors of one run and the dispatcher that feeds them; ``executor(n)`` is the runner's factory."""

    def __init__(self, c: Settings, ctx: Context, note: Callable[[str], None], run: Callable[..., ItemResult],
                 campaign: str):
        import ray

        self.concurrency, self.max_retries = c.get("concurrency"), c.get("executor.max_retries")
        self.retried = 0  # items sent again because their actor died or was restarting
        self._owns_session, self._tmp = connect(c.get("executor.address"), note)
        self._service: _ScoringService | None = None
        self._mailbox: Any = None
        self.actors: list[Any] = []
        self._cond = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._inflight: dict[Any, _Job] = {}
        self._closed = False
        try:
            n = c.get("executor.actors") or _default_actors(c, ray.available_resources())
            _check_fits(c, n, ray.cluster_resources())
            self._load = [0] * n
            self._restarting_until = [0.0] * n  # monotonic: an actor said it is restarting; prefer others
            mailbox = f"evoagent-scores-{uuid.uuid4().hex}"
            self._mailbox = ray.remote(Mailbox).options(num_cpus=0, name=mailbox).remote()
            from ray import cloudpickle

            from evoagent import registry

            parts = cloudpickle.dumps(registry.registered())  # the others import by name on the worker
            worker = ray.remote(ItemWorker).options(
                num_cpus=c.get("executor.num_cpus"), num_gpus=c.get("executor.num_gpus"),
                max_restarts=-1, max_concurrency=math.ceil(self.concurrency / n) + 1)  # +1: pid() answers
            signals = (signal_spec(ctx.search), signal_spec(ctx.fitness))
            note(f"starting {n} Ray actor(s)")
            self.actors = [worker.remote(campaign, list(ctx.tasks), parts, signals, mailbox, run)
                           for _ in range(n)]
            scorers = {s.source: s.scorer for s in (ctx.search, ctx.fitness) if s is not None}
            self._service = _ScoringService(self._mailbox, scorers, self.concurrency)
            self._pump = threading.Thread(target=self._dispatch_loop, name="ray-dispatch", daemon=True)
            self._pump.start()
        except BaseException:
            self.close()
            raise

    def executor(self, n: int) -> Executor:
        """The runner's executor for one round (the actors live as long as the pool; ``n`` is
        ``concurrency``, which the dispatcher already bounds)."""
        return _RoundExecutor(self)

    def submit(self, item: WorkItem, parents: list[Trajectory]) -> Future[ItemResult]:
        job = _Job(Future(), item, parents)
        with self._cond:
            if self._closed:
                raise RuntimeError("the Ray executor is closed")
            self._queue.append(job)
            self._cond.notify_all()
        return job.future

    def worker_pid(self, actor: int, timeout_s: float = 120.0) -> int:
        """The process id of an actor's current incarnation (waiting out a restart)."""
        import ray
        from ray.exceptions import ActorUnavailableError

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return ray.get(self.actors[actor].pid.remote())
            except ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def busy_actors(self) -> list[int]:
        """Indexes of the actors with an item in flight now."""
        with self._cond:
            return [i for i, load in enumerate(self._load) if load]

    # the dispatcher: at most `concurrency` items in flight, each to the least loaded actor
    def _dispatch_loop(self) -> None:
        try:
            self._dispatch()
        except BaseException as exc:  # e.g. the Ray session went away: no item may wait forever
            with self._cond:
                jobs = list(self._queue) + list(self._inflight.values())
                self._queue.clear()
                self._inflight.clear()
            for job in jobs:
                if not job.future.done() and (job.future.running() or job.future.set_running_or_notify_cancel()):
                    job.future.set_exception(exc)

    def _dispatch(self) -> None:
        import ray

        while True:
            with self._cond:
                while not self._closed and not self._queue and not self._inflight:
                    self._cond.wait()
                if self._closed:
                    return
                now = time.monotonic()
                while self._queue and len(self._inflight) < self.concurrency and self._queue[0].not_before <= now:
                    job = self._queue.popleft()
                    if job.future.running() or job.future.set_running_or_notify_cancel():
                        self._send(job, now)
                    # else: cancelled by the runner (a budget stop) before it started
                refs = list(self._inflight)
            if not refs:  # only items waiting for a restarting actor
                time.sleep(POLL_S)
                continue
            ready, rest = ray.wait(refs, num_returns=1, timeout=POLL_S)
            if ready and rest:
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            for ref in ready:
                self._finish(ref)

    def _send(self, job: _Job, now: float) -> None:
        """To the least loaded actor, preferring those not known to be restarting (under ``_cond``)."""
        job.actor = min(range(len(self.actors)), key=lambda i: (self._restarting_until[i] > now, self._load[i]))
        self._load[job.actor] += 1
        self._inflight[self.actors[job.actor].run.remote(job.item, job.parents)] = job

    def _finish(self, ref: Any) -> None:
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

        with self._cond:
            job = self._inflight.pop(ref, None)
            if job is None:  # closed meanwhile
                return
            self._load[job.actor] -= 1
        try:
            result = ray.get(ref)
        except ActorUnavailableError as exc:  # its actor is restarting: the same item again, a little later
            if job.waits < MAX_WAITS:
                job.waits += 1
                self._again(job, delay=min(1.0, 0.1 * job.waits))
                return
            self._lost(job, exc)
        except RayActorError as exc:  # the actor's process died (or its node): same item, same seed, again
            if job.tries < self.max_retries:
                job.tries += 1
                self._again(job, delay=0.0)
                return
            self._lost(job, exc)
        except RayTaskError as exc:  # run_item raised: BudgetExceeded (the runner stops), or a bug
            job.future.set_exception(exc.cause if isinstance(exc.cause, BaseException) else exc)
        except BaseException as exc:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    def _again(self, job: _Job, delay: float) -> None:
        now = time.monotonic()
        job.not_before = now + delay
        with self._cond:
            self.retried += 1
            if delay:
                self._restarting_until[job.actor] = now + 1.0
            self._queue.appendleft(job)

    def _lost(self, job: _Job, exc: BaseException) -> None:
        text = str(exc).strip()
        cause = text.splitlines()[-1][:300] if text else type(exc).__name__
        job.future.set_exception(WorkerLost(
            f"executor.kind = ray: work item {job.item.item_id} of generation {job.item.generation} lost "
            f"its actor {job.tries + 1} times (executor.max_retries = {self.max_retries}): {cause}; "
            "evoagent resume STORE runs it again"))

    def close(self) -> None:
        """Stop dispatching, answer nothing more, and end the Ray session if this pool started it."""
        import ray

        with self._cond:
            self._closed = True
            jobs = list(self._queue) + list(self._inflight.values())
            self._queue.clear()
            self._inflight.clear()
            self._cond.notify_all()
        pump = getattr(self, "_pump", None)
        if pump is not None:
            pump.join(timeout=10)
        for job in jobs:
            if not job.future.cancel() and not job.future.done():
                job.future.set_exception(RuntimeError("the Ray executor closed"))
        if self._service is not None:
            self._service.close()
        if self._owns_session:
            disconnect(self._tmp)
        else:  # a session the caller started: leave it, but not our actors
            for actor in self.actors + ([self._mailbox] if self._mailbox is not None else []):
                with contextlib.suppress(Exception):  # already gone with its session
                    ray.kill(actor)


class _RoundExecutor(Executor):
    """One round's view of the pool: ``submit_item`` for the runner; shutdown cancels what has not started."""

    def __init__(self, pool: RayPool):
        self.pool = pool
        self._futures: list[Future[ItemResult]] = []

    def submit_item(self, item: WorkItem, parents: list[Trajectory]) -> Future[ItemResult]:
        fut = self.pool.submit(item, parents)
        self._futures.append(fut)
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            for f in self._futures:
                f.cancel()
        if wait:
            wait_futures(self._futures)


def _check_fits(c: Settings, n: int, cluster: dict[str, float]) -> None:
    """Refuse actors the cluster cannot hold at all: Ray would keep them pending, and the
    campaign would wait for them forever (an autoscaler's future nodes are not counted)."""
    for key, res in (("executor.num_cpus", "CPU"), ("executor.num_gpus", "GPU")):
        need = n * c.get(key)
        if need > cluster.get(res, 0):
            raise UserError(f"key 'executor.actors': {n} actor(s) x {key} = {c.get(key)} need {need:g} {res}s; "
                            f"the Ray cluster has {cluster.get(res, 0):g}")


def _default_actors(c: Settings, resources: dict[str, float]) -> int:
    """``concurrency`` actors, at most as many as the free CPUs hold (at least one)."""
    per = c.get("executor.num_cpus")
    fit = int(resources.get("CPU", 1) // per) if per else c.get("concurrency")
    return max(1, min(c.get("concurrency"), fit))


def start(c: Settings, ctx: Context, note: Callable[[str], None], run: Callable[..., ItemResult],
          campaign: str) -> RayPool:
    """Connect to Ray (or start it) and start the campaign's actors, which run items with ``run``
    (the runner's ``run_item``, pickled by reference: each actor imports it).

    ``c``: the Ray executor's own keys (``Campaign.settings_for(RAY)``); ``campaign``: the stored
    campaign's JSON (``Campaign.to_json``), handed to each actor unread, which builds its Context from it."""
    return RayPool(c, ctx, note, run, campaign)
