"""The runner: rounds of journaled work, whatever the strategy.

    for each round r, from where the journal ends:
        plan  = the committed plan of r, or strategy.plan(r) committed now  -- before any work
        run the plan's items not yet committed through the executor;
            group-commit finished items every COMMIT_INTERVAL_S; check budgets and Ctrl-C
            (budget.env_steps: items sent in chunks, in plan order, checked between chunks)
        while strategy.extend(r, items) asks for more (e.g. evolution's fill-up to mu):
            journal those, run them the same way
        when all are in: strategy.close(r) -> population + statistics, committed
        stopped by a budget with some of r's items finished:
            strategy.close_partial(r) -> committed as a *partial* close of r

A round a budget (``budget.env_steps``, ``.wall_time_s``, ``.usd``, ``.tokens``) cuts short is
closed with the items that finished, so that what it found is in the campaign's answer
(the ``population`` of its last generation) as its executions are in the budget. The
partial close is marked (``generations.partial``, ``stats.partial``) and re-opened by a
resume: the runner goes on with the round's unfinished items (finished ones are never run or
paid again) and closes it again, which supersedes the partial close in the views; so a
stopped-and-resumed campaign ends with the same populations as one that never stopped. A
Ctrl-C leaves the round open (resume finishes it), as does a stop before any of its items
finished.

A strategy (``evoagent/strategies/``) decides plans and closes rounds from
committed facts only; an item's result depends only on its operator, parents
and seed; so completion order, concurrency and interruptions never change the
outcome, and ``resume`` runs only what the journal lacks. Operators are looked
up in ``evoagent.registry`` and called by arity. Parallelism is a swappable
``concurrent.futures.Executor`` (threads by default; one with ``submit_item(item,
parents)`` runs items in its own contexts: ``evoagent.executors``). The runner keeps only
the current round's parents in memory; everything else is read from the store.
"""
from __future__ import annotations

import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from evoagent import evolution as evo
from evoagent import registry
from evoagent.campaign import Campaign
from evoagent.llm.errors import BudgetExceeded
from evoagent.llm.ledger import call_context
from evoagent.rewards.scorer import scoring_steps
from evoagent.rewards.signal import queries
from evoagent.rollout import Context, Rollout
from evoagent.strategies.base import Strategy
from evoagent.trajectory import Trajectory
from stores.base import ItemResult, Store, WorkItem

COMMIT_INTERVAL_S = 1.0  # group-commit window for finished items
# Under ``budget.env_steps`` a round's items go out in chunks of this many, in plan order, and the
# budget is checked only between chunks: where a budget stops a round then depends on the items'
# results alone (seeded), never on which items a busy machine happened to finish first.
BUDGET_CHUNK_ITEMS = 64


@dataclass
class Outcome:
    """How a run or resume ended, with the DEAP Logbook of committed rounds."""

    status: str  # "completed", "stopped: <budget>", "interrupted"
    last_generation: int | None
    logbook: Any
    seconds: float
    env_steps: int  # executed by this run, committed or not
    hall_of_fame: Any = None
    env_steps_total: int | None = None  # everything the store holds, this run included


def run_operator(item: WorkItem, parents: list[Trajectory], ctx: Context) -> tuple[Rollout, Trajectory, int]:
    """Apply the item's registered operator (called by its arity); returns its rollout, the child
    (annotated) and env steps.

    The child's steps get the search signal's values as ``process_reward``;
    environment steps include any reward-model scoring the item caused. An
    operator registered with ``takes_args`` also gets the item's ``args`` (JSON, parsed).
    """
    part = registry.get("operator", item.operator)
    rng = random.Random(item.seed)
    arg: Any = ctx.tasks[item.task_id] if part.arity == 0 else parents[0] if part.arity == 1 else parents
    extra = {"args": json.loads(item.args) if item.args else {}} if part.takes_args else {}
    counter = [0]
    token = scoring_steps.set(counter)
    try:
        out = part.fn(arg, rng, ctx, **extra)
        child = out.trajectory
        if ctx.search is not None:
            child = ctx.search.annotate(child)
    finally:
        scoring_steps.reset(token)
    return out, child, out.env_steps + counter[0]


def reward_rows(child: Trajectory, ctx: Context, counter: list[int]) -> tuple[tuple[str, str, float, int | None], ...]:
    """Scores committed with the child: the oracle's observed step values, the fitness score."""
    rows: list[tuple[str, str, float, int | None]] = []
    if ctx.search is not None and ctx.search.is_oracle:
        rows += [(q.prefix_id, ctx.search.source, float(s.process_reward), q.step_idx)  # type: ignore[arg-type]
                 for q, s in zip(queries(child), child.steps)]
    if ctx.fitness is not None:
        token = scoring_steps.set(counter)
        try:
            rows.append((child.traj_id, ctx.fitness.trajectory_source, ctx.fitness.trajectory_score(child), None))
        finally:
            scoring_steps.reset(token)
    return tuple(rows)


def run_item(item: WorkItem, parents: list[Trajectory], ctx: Context) -> ItemResult:
    """One work item in ``ctx``: a failed result for an operator bug or provider fault, never a crash.

    Raises ``BudgetExceeded`` (the item stays pending). A module function, so that an
    executor holding its own contexts (``evoagent.executors.ray``) runs the very same code.
    """
    t0 = time.perf_counter()
    spend = [0.0, 0, 0]  # every LLM call of this item, policy and operator alike: usd, in, out
    try:
        with call_context(operator=item.operator, generation=item.generation, item_id=item.item_id,
                          spend=spend):
            out, child, env_steps = run_operator(item, parents, ctx)
            counter = [0]
            rows = reward_rows(child, ctx, counter)
    except BudgetExceeded:
        raise
    except Exception as exc:  # an operator bug or provider fault must not stop the campaign
        return ItemResult(item, None, error=f"{type(exc).__name__}: {exc}",
                          seconds=time.perf_counter() - t0)
    spent = {"cost_usd": spend[0], "input_tokens": spend[1], "output_tokens": spend[2]} if spend[1] or spend[2] else {}
    traj = replace(child, generation=item.generation, operator=item.operator,
                   parents=item.parents, seed=item.seed, **spent)
    return ItemResult(item, traj, env_steps=env_steps + counter[0],
                      seconds=time.perf_counter() - t0, rewards=rows,
                      candidates=out.candidates, simulations=out.simulations)


class _Finished:
    """Results handed from the threads that run a round's items to the one that commits them."""

    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.results: list[ItemResult] = []
        self.open = 0  # items started or queued, not yet finished nor dropped
        self.error: BaseException | None = None

    def expect(self, n: int) -> None:
        with self.cv:
            self.open += n

    def next_of(self, queue: deque) -> Any:
        """The next queued item, None when none is left (or they were dropped)."""
        with self.cv:
            return queue.popleft() if queue else None

    def drop(self, queue: deque) -> None:
        """Items still queued will not start (a budget stop)."""
        with self.cv:
            self.open -= len(queue)
            queue.clear()
            self.cv.notify()

    def add(self, result: ItemResult | None) -> None:
        """One item finished (None: it stopped on a budget, nothing to commit)."""
        with self.cv:
            if result is not None:
                self.results.append(result)
            self.open -= 1
            if not self.open:
                self.cv.notify()

    def add_future(self, f: Future, result: Callable[[Future], ItemResult | None]) -> None:
        """A future's item finished (or was cancelled); an error the future holds goes to ``take``."""
        try:
            self.add(None if f.cancelled() else result(f))
        except BaseException as exc:
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        with self.cv:
            self.error = self.error or exc
            self.cv.notify()

    def take(self, timeout: float | None) -> tuple[list[ItemResult], int]:
        """What finished so far, after waiting up to ``timeout`` (None: not at all) for the rest, and
        how many items are still open then (read together: a result that comes later is counted).

        Raises the error an item thread or future met (not an item's failure: those are results)."""
        with self.cv:
            if timeout is not None and self.open and self.error is None:
                self.cv.wait(timeout)
            if self.error is not None and timeout is not None:
                raise self.error
            out, self.results = self.results, []
            return out, self.open


class Runner:
    """Runs one campaign's rounds against one store; see the module docstring."""

    def __init__(self, campaign: Campaign, store: Store, ctx: Context, *,
                 strategy: Strategy | None = None,
                 executor: Callable[[int], Executor] | None = None,
                 on_progress: Callable[[dict[str, Any]], None] | None = None,
                 stop: threading.Event | None = None):
        self.c = campaign
        self.stop = stop or threading.Event()  # set it (e.g. on Ctrl-C) to stop after the items in flight
        self.store = store
        self.ctx = ctx
        self.name = campaign.get("name")
        fitness_source = ctx.fitness.trajectory_source if ctx.fitness is not None else None
        self.strategy = strategy or registry.get("strategy", campaign.get("strategy.kind")).fn(
            campaign, store, sorted(ctx.tasks), fitness_source)
        self.own_threads = executor is None  # the runner's threads: items from one queue (``_dispatch``)
        self.make_executor = executor or (lambda n: ThreadPoolExecutor(n, thread_name_prefix="item"))
        self.on_progress = on_progress or (lambda info: None)
        self.stop_reason: str | None = None
        self._started = time.monotonic()
        self._steps_at_start = store.env_steps_used()
        self._round: tuple[int, set[int], list[float], dict[str, Trajectory]] | None = None  # see _round_state

    # -- one item --------------------------------------------------------------
    def run_item(self, item: WorkItem, parents: list[Trajectory]) -> ItemResult | None:
        """Apply one operator; failures become a failed result, never a crash."""
        try:
            return run_item(item, parents, self.ctx)
        except BudgetExceeded as exc:  # not a failure: the item stays pending for a resume
            self.stop_reason = self.stop_reason or str(exc)  # the first stop (e.g. Ctrl-C) stays the reason
            return None

    def _result(self, f: Future) -> ItemResult | None:
        """A finished item's result; None when it stopped on a budget (an executor that runs items
        elsewhere, e.g. Ray, hands ``BudgetExceeded`` back through the future: same stop as here)."""
        try:
            return f.result()
        except BudgetExceeded as exc:
            self.stop_reason = self.stop_reason or str(exc)
            return None

    def _budget_exceeded(self, env_steps: bool = True) -> str | None:
        """Which stop applies now, if any; ``env_steps=False`` leaves out the executions budget
        (checked only between chunks of a round, see ``BUDGET_CHUNK_ITEMS``)."""
        if self.stop.is_set():
            return "interrupted"
        limit = self.c.get("budget.env_steps")
        if env_steps and limit and self.store.env_steps_used() >= limit:
            return "budget.env_steps"
        wall = self.c.get("budget.wall_time_s")
        if wall and time.monotonic() - self._started >= wall:
            return "budget.wall_time_s"
        budget = self.ctx.budget
        if budget is not None:
            if budget.usd and budget.spent_usd >= budget.usd:
                return "budget.usd"
            if budget.tokens and budget.spent_tokens >= budget.tokens:
                return "budget.tokens"
        return None

    # -- a round's items -------------------------------------------------------
    def execute(self, round_: int, items: list[WorkItem]) -> bool:
        """Run the items not yet committed; returns False if stopped early.

        All items go to the executor at once (``_dispatch``; under ``budget.env_steps``: in chunks
        of ``BUDGET_CHUNK_ITEMS`` in plan order, that budget checked between chunks);
        the loop wakes every ``COMMIT_INTERVAL_S`` (or when all are done) to
        group-commit what has finished and check the other budgets. A crash loses
        only items finished since the last commit, which resume re-runs with the
        same seeds (same results). On a budget stop, items not yet started are cancelled.
        """
        done, running, parents = self._round_state(round_)
        todo = [i for i in items if i.item_id not in done]
        if not todo:  # all done before a crash: the round only needs closing
            return True
        parents.update(self.store.load_trajectories(sorted({p for i in todo for p in i.parents} - parents.keys())))
        total, finished = len(items), len(done)
        self.stop_reason = self.stop_reason or self._budget_exceeded()
        if self.stop_reason:
            return False
        ex = self.make_executor(self.c.get("concurrency"))
        chunk = BUDGET_CHUNK_ITEMS if self.c.get("budget.env_steps") else len(todo)
        chunks = [[(i, [parents[p] for p in i.parents]) for i in todo[k:k + chunk]]
                  for k in range(0, len(todo), chunk)]
        fin = _Finished()

        def collect(results: list[ItemResult]) -> None:
            nonlocal finished
            results.sort(key=lambda r: r.item.item_id)
            if results:
                self.store.commit_items(results, self.name)
                done.update(r.item.item_id for r in results)
                finished += len(results)
                for r in results:
                    if r.trajectory is not None:
                        running[0] += 1
                        running[1] += r.trajectory.solved
                        running[2] += r.trajectory.outcome_reward
                self.on_progress({"event": "items", "generation": round_,
                                  "last_generation": self.strategy.last_round(), "done": finished,
                                  "total": total, "children": running[0], "solved": running[1],
                                  "reward_sum": running[2]})

        cancel: Callable[[], None] = lambda: None  # noqa: E731 - drops the chunk's items not yet started
        try:
            for n, items_of_chunk in enumerate(chunks):
                if n:  # between chunks: every budget, the executions one included
                    self.stop_reason = self.stop_reason or self._budget_exceeded()
                    if self.stop_reason:
                        break
                cancel = self._dispatch(ex, items_of_chunk, fin)
                while True:
                    results, still_open = fin.take(COMMIT_INTERVAL_S)
                    collect(results)
                    self.store.publish_if_due()  # readers stay fresh even while nothing is written
                    if not still_open:
                        break
                    self.stop_reason = self.stop_reason or self._budget_exceeded(env_steps=False)
                    if self.stop_reason:
                        cancel()  # the items running go on; the loop waits for them
                if self.stop_reason:
                    break
        except BaseException:  # e.g. a second Ctrl-C: keep what finished, do not wait for the rest
            cancel()
            ex.shutdown(wait=False, cancel_futures=True)
            collect(fin.take(None)[0])
            raise
        ex.shutdown(wait=True)
        return finished == total  # a stop that came after the last item still commits the round

    def _dispatch(self, ex: Executor, items: list[tuple[WorkItem, list[Trajectory]]],
                  fin: _Finished) -> Callable[[], None]:
        """Start ``items`` on ``ex``, each result handed to ``fin``; returns what drops those not yet started.

        The runner's own threads (no ``executor`` given) take items from one queue, a few
        tasks in all instead of a future per item; an executor that holds its own contexts
        (Ray actors) runs each item through its ``submit_item``, any other through ``submit``.
        """
        fin.expect(len(items))
        if self.own_threads:
            queue = deque(items)

            def drain() -> None:
                try:
                    while (got := fin.next_of(queue)) is not None:
                        fin.add(self.run_item(*got))
                except BaseException as exc:  # not an item's failure (run_item keeps those): the runner's
                    fin.fail(exc)

            for _ in range(min(self.c.get("concurrency"), len(items))):
                ex.submit(drain)
            return lambda: fin.drop(queue)
        submit_item = getattr(ex, "submit_item", None) or (lambda i, ps: ex.submit(self.run_item, i, ps))
        futures = [submit_item(i, ps) for i, ps in items]
        for f in futures:
            f.add_done_callback(lambda f: fin.add_future(f, self._result))

        def cancel() -> None:
            for f in futures:
                f.cancel()
        return cancel

    def _round_state(self, round_: int) -> tuple[set[int], list[float], dict[str, Trajectory]]:
        """The round's committed item ids, [children, solved, reward sum] of them (for progress) and the
        parents loaded so far: read from the store when this run first executes the round, then kept
        up to date here (this runner is the store's only writer), so a round's fill-ups re-read nothing."""
        if self._round is None or self._round[0] != round_:
            self._round = (round_, self.store.finished_items(round_), self.store.round_outcomes(round_), {})
        return self._round[1:]

    # -- rounds ----------------------------------------------------------------
    def advance(self, round_: int) -> bool:
        """Plan (or re-read), execute, extend while the strategy asks, close one round; False if stopped."""
        items = self.store.planned(round_)
        if not items:
            items = self.strategy.plan(round_)
            self.store.plan_generation(round_, items)
        while True:
            if not self.execute(round_, items):
                self.close_cut_round(round_, len(items))
                return False
            extra = self.strategy.extend(round_, items)
            if not extra:
                break
            self.store.plan_generation(round_, extra)  # journaled before it runs, like any plan
            items = items + extra
        closed = self.strategy.close(round_)
        self.store.commit_generation(round_, closed.population, closed.stats)
        self._round = None  # the round's parents are no longer needed
        self.on_progress({"event": "generation", "generation": round_,
                          "last_generation": self.strategy.last_round(), "stats": closed.stats,
                          "seconds": time.monotonic() - self._started})
        return True

    def close_cut_round(self, round_: int, planned: int) -> None:
        """Close a round a budget stopped with the items that finished (see the module docstring).

        Not after a Ctrl-C, nor when no item of it is done, nor when nothing finished since
        its last partial close (e.g. a resume whose budget was already spent)."""
        if not (self.stop_reason or "").startswith("budget.") or not self.store.round_results(round_):
            return
        finished = len(self.store.finished_items(round_))
        before = self.store.committed_stats(round_)
        if before and before[0].get("items_finished") == finished:
            return
        closed = self.strategy.close_partial(round_)
        stats = {**closed.stats, "partial": True, "items_finished": finished, "items_planned": planned,
                 "stopped": self.stop_reason}
        self.store.commit_generation(round_, closed.population, stats, partial=True)
        self.on_progress({"event": "generation", "generation": round_,
                          "last_generation": self.strategy.last_round(), "stats": stats,
                          "seconds": time.monotonic() - self._started})

    def run(self) -> Outcome:
        """Continue from wherever the journal says (re-opening a partially closed round); stop at the budget."""
        book = evo.logbook()
        committed = self.store.committed_stats()
        reopen = bool(committed) and bool(committed[-1].get("partial"))
        for stats in committed[:-1] if reopen else committed:
            book.record(**stats)
        last = self.store.last_committed_generation()
        round_ = 0 if last is None else last if reopen else last + 1
        status = "completed"
        while round_ <= self.strategy.last_round():
            if self.stop_reason or not self.advance(round_):
                status = f"stopped: {self.stop_reason}"
                cut = self.store.committed_stats(round_)
                if cut and cut[0].get("partial"):  # closed with what finished: the campaign's answer
                    book.record(**cut[0])
                break
            book.record(**self.store.committed_stats(round_)[0])
            round_ += 1
        total = self.store.env_steps_used()
        return Outcome(status, self.store.last_committed_generation(), book,
                       time.monotonic() - self._started, total - self._steps_at_start,
                       self.strategy.hall_of_fame(), total)
