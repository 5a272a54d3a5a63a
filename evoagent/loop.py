"""The generational loop: select -> vary -> evaluate -> replace, journaled.

One sub-population per task (each task is a niche). Toolbox aliases used:
``sample``, ``revise``, ``recombine``, ``refine`` (operators/).

    gen 0:   plan mu `sample` items per task
    gen g>0: per task, pick an operator by rate and its parents by selection,
             lambda items per task
    every generation:
        commit the plan (items: operator, parents, task, seed)   -- journal
        run the items not yet committed, concurrently; commit each as it finishes
        population = replace(previous population, offspring)    -- per task
        while a task has fewer than mu distinct members (identical children are
        stored once; failed items leave none): plan, journal and run more items
        for it, at most mu more per task and generation      -- fill-up
        commit population + Logbook statistics

Every choice is drawn from a seed derived from (campaign seed, generation,
task or item), and each item's result depends only on its own seed and
parents, so completion order, concurrency and interruptions never change the
outcome: ``resume`` re-reads the journal and runs only what is missing.
Parallelism is a swappable ``concurrent.futures.Executor`` (threads by default).
"""
from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

from evoagent import evolution as evo
from evoagent.campaign import Campaign
from evoagent.llm.errors import BudgetExceeded
from evoagent.llm.ledger import call_context
from evoagent.rollout import Context
from evoagent.trajectory import Trajectory
from operators import ARITY, toolbox
from stores.base import ItemResult, Store, WorkItem

COMMIT_INTERVAL_S = 1.0  # group-commit window for finished items


@dataclass
class Outcome:
    """How a run or resume ended, with the DEAP Logbook of committed generations."""

    status: str  # "completed", "stopped: <budget>", "interrupted"
    last_generation: int | None
    logbook: Any
    seconds: float
    env_steps: int  # executed by this run, committed or not
    hall_of_fame: Any = None
    env_steps_total: int | None = None  # everything the store holds, this run included


class Engine:
    """Runs one campaign against one store; see the module docstring."""

    def __init__(self, campaign: Campaign, store: Store, ctx: Context, *,
                 executor: Callable[[int], Executor] | None = None,
                 on_progress: Callable[[dict[str, Any]], None] | None = None,
                 stop: threading.Event | None = None):
        self.c = campaign
        self.stop = stop or threading.Event()  # set it (e.g. on Ctrl-C) to stop after the items in flight
        self.store = store
        self.ctx = ctx
        self.tb = toolbox()
        self.objectives = list(campaign.get("selection.objectives"))
        self.name = campaign.get("name")
        self.seed = campaign.get("seed")
        self.make_executor = executor or (lambda n: ThreadPoolExecutor(n, thread_name_prefix="item"))
        self.on_progress = on_progress or (lambda info: None)
        self.task_ids = sorted(ctx.tasks)
        self.hof = evo.hall_of_fame()
        self.stop_reason: str | None = None
        self._started = time.monotonic()
        self._steps_at_start = self.env_steps_used()
        self._known: dict[str, evo.Member] = {}  # committed trajectories seen by this process

    # -- journal reads -------------------------------------------------------
    def env_steps_used(self) -> int:
        return int(self.store.scalar("SELECT coalesce(sum(env_steps), 0) FROM raw.work_results") or 0)

    def members(self, traj_ids: list[str]) -> dict[str, evo.Member]:
        """Members by id: from this process's results when it made them, else from the store."""
        missing = [t for t in traj_ids if t not in self._known]
        for tid, t in self.store.load_trajectories(missing).items():
            self._known[tid] = evo.Member(t, self.objectives)
        return {tid: self._known[tid] for tid in traj_ids if tid in self._known}

    def population(self, generation: int) -> dict[str, list[evo.Member]]:
        rows = self.store.population(generation)
        found = self.members([r[1] for r in rows])
        pop: dict[str, list[evo.Member]] = {t: [] for t in self.task_ids}
        for task_id, traj_id, _ in rows:
            pop[task_id].append(found[traj_id])
        return pop

    def planned(self, generation: int) -> list[WorkItem]:
        rows = self.store.query(
            "SELECT generation, item_id, operator, task_id, parents, seed FROM raw.work_plan "
            "WHERE generation = ? ORDER BY item_id", [generation]
        ).to_pylist()
        return [WorkItem(r["generation"], r["item_id"], r["operator"], r["task_id"],
                         tuple(r["parents"]), r["seed"]) for r in rows]

    def finished_ids(self, generation: int) -> set[int]:
        t = self.store.query("SELECT item_id FROM raw.work_results WHERE generation = ?", [generation])
        return set(t.column(0).to_pylist())

    # -- planning ------------------------------------------------------------
    def plan(self, generation: int, pop: dict[str, list[evo.Member]]) -> list[WorkItem]:
        """The work items of a generation, from the previous population only."""
        rates = {op: r for op, r in self.c.operator_rates().items() if r > 0}
        ops, weights = list(rates), list(rates.values())
        items: list[WorkItem] = []
        for task_id in self.task_ids:
            members = pop.get(task_id, [])
            rng = random.Random(evo.derive_seed(self.seed, generation, task_id, "plan"))
            n = self.c.get("mu") if generation == 0 else self.c.get("lambda")
            for _ in range(n):
                items.append(self._item(generation, len(items), task_id, members, rng, ops, weights))
        return items

    def _item(self, generation: int, item_id: int, task_id: str, members: list[evo.Member],
              rng: random.Random, ops: list[str], weights: list[float]) -> WorkItem:
        op = "sample" if generation == 0 or not members else rng.choices(ops, weights)[0]
        parents = self._parents(op, members, rng)
        if parents is None:  # too few distinct members to recombine
            op, parents = "revise", self._parents("revise", members, rng)
        return WorkItem(generation, item_id, op, task_id, tuple(m.traj_id for m in parents or ()),
                        evo.derive_seed(self.seed, generation, item_id))

    def fill_plan(self, generation: int, prev: dict[str, list[evo.Member]],
                  pop: dict[str, list[evo.Member]], items: list[WorkItem]) -> list[WorkItem]:
        """More items for the tasks whose population is below mu, planned like the others.

        Identical children share one id and failed items leave none, so a
        population can come out smaller than mu. Each round asks for the
        missing number, at most mu extra items per task and generation (a task
        whose policy can only produce one trajectory stays small). Seeds come
        from the items planned so far, so a resume plans exactly the same.
        """
        if not self.c.get("replacement.fill"):
            return []
        mu = self.c.get("mu")
        cap = mu + (mu if generation == 0 else self.c.get("lambda"))
        rates = {op: r for op, r in self.c.operator_rates().items() if r > 0}
        planned = Counter(i.task_id for i in items)
        extra: list[WorkItem] = []
        next_id = max((i.item_id for i in items), default=-1) + 1
        for task_id in self.task_ids:
            want = min(mu - len(pop.get(task_id, [])), cap - planned[task_id])
            if want <= 0:
                continue
            rng = random.Random(evo.derive_seed(self.seed, generation, task_id, "fill", planned[task_id]))
            for _ in range(want):
                extra.append(self._item(generation, next_id, task_id, prev.get(task_id, []), rng,
                                        list(rates), list(rates.values())))
                next_id += 1
        return extra

    def _parents(self, op: str, members: list[evo.Member], rng: random.Random) -> list[evo.Member] | None:
        arity = ARITY[op]
        if arity == 0:
            return []
        kind, size = self.c.get("selection.kind"), self.c.get("selection.tournsize")
        if arity == 1:
            return evo.select_parents(members, 1, kind, size, rng.getrandbits(63))
        distinct = {m.traj_id for m in members}
        if len(distinct) < 2:
            return None
        want = min(self.c.get("operators.recombine.n_parents"), len(distinct))
        chosen: dict[str, evo.Member] = {}
        for _ in range(8 * want):
            for m in evo.select_parents(members, want, kind, size, rng.getrandbits(63)):
                chosen.setdefault(m.traj_id, m)
            if len(chosen) >= want:
                break
        if len(chosen) < 2:
            chosen = {m.traj_id: m for m in evo.ranked(members)[:want]}
        return list(chosen.values())[:want]

    # -- execution -----------------------------------------------------------
    def run_item(self, item: WorkItem, parents: list[Trajectory]) -> ItemResult | None:
        """Apply one operator; failures become a failed result, never a crash."""
        t0 = time.perf_counter()
        rng = random.Random(item.seed)
        task = self.ctx.tasks[item.task_id]
        spend = [0.0, 0, 0]  # every LLM call of this item, policy and operator alike: usd, in, out
        try:
            fn = getattr(self.tb, item.operator)
            with call_context(operator=item.operator, generation=item.generation, item_id=item.item_id,
                              spend=spend):
                if item.operator == "sample":
                    out = fn(task, rng, self.ctx)
                elif item.operator == "recombine":
                    out = fn(parents, rng, self.ctx)
                else:
                    out = fn(parents[0], rng, self.ctx)
        except BudgetExceeded as exc:  # not a failure: the item stays pending for a resume
            self.stop_reason = str(exc)
            return None
        except Exception as exc:  # an operator bug or provider fault must not stop the campaign
            return ItemResult(item, None, error=f"{type(exc).__name__}: {exc}",
                              seconds=time.perf_counter() - t0)
        traj = replace(out.trajectory, generation=item.generation, operator=item.operator,
                       parents=item.parents, seed=item.seed)
        if spend[1] or spend[2]:
            traj = replace(traj, cost_usd=spend[0], input_tokens=spend[1], output_tokens=spend[2])
        return ItemResult(item, traj, env_steps=out.env_steps, seconds=time.perf_counter() - t0)

    def _budget_exceeded(self) -> str | None:
        if self.stop.is_set():
            return "interrupted"
        limit = self.c.get("budget.env_steps")
        if limit and self.env_steps_used() >= limit:
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

    def execute(self, generation: int, items: list[WorkItem]) -> bool:
        """Run the items not yet committed; returns False if stopped early.

        All items go to the executor at once; the loop wakes every
        ``COMMIT_INTERVAL_S`` (or when all are done) to group-commit what has
        finished and check the budgets. A crash loses only items finished since
        the last commit, which resume re-runs with the same seeds (same results).
        On a budget stop, items not yet started are cancelled.
        """
        done = self.finished_ids(generation)
        todo = [i for i in items if i.item_id not in done]
        if not todo:  # all done before a crash: the generation only needs committing
            return True
        parents = self.members(sorted({p for i in todo for p in i.parents}))
        total, finished = len(items), len(done)
        running = self._running_rewards(generation)  # [children, solved, reward sum], items of earlier runs too
        self.stop_reason = self.stop_reason or self._budget_exceeded()
        if self.stop_reason:
            return False
        ex = self.make_executor(self.c.get("concurrency"))
        pending = {ex.submit(self.run_item, i, [parents[p].traj for p in i.parents]) for i in todo}

        def collect(ready: set[Future]) -> None:
            nonlocal finished
            results = sorted((r for f in ready if not f.cancelled() and (r := f.result()) is not None),
                             key=lambda r: r.item.item_id)
            if results:
                self.store.commit_items(results, self.name)
                for r in results:
                    if r.trajectory is not None:
                        self._known.setdefault(r.trajectory.traj_id, evo.Member(r.trajectory, self.objectives))
                finished += len(results)
                for r in results:
                    if r.trajectory is not None:
                        running[0] += 1
                        running[1] += r.trajectory.solved
                        running[2] += r.trajectory.outcome_reward
                self.on_progress({"event": "items", "generation": generation,
                                  "last_generation": self.c.get("budget.generations"), "done": finished,
                                  "total": total, "children": running[0], "solved": running[1],
                                  "reward_sum": running[2]})

        try:
            while pending:
                ready, pending = wait(pending, timeout=COMMIT_INTERVAL_S, return_when=ALL_COMPLETED)
                collect(ready)
                self.store.publish_if_due()  # readers stay fresh even while nothing is written
                if pending:
                    self.stop_reason = self.stop_reason or self._budget_exceeded()
                    if self.stop_reason:
                        for f in pending:
                            f.cancel()
        except BaseException:  # e.g. a second Ctrl-C: keep what finished, do not wait for the rest
            ex.shutdown(wait=False, cancel_futures=True)
            collect({f for f in pending if f.done() and not f.cancelled() and f.exception() is None})
            raise
        ex.shutdown(wait=True)
        return finished == total  # a stop that came after the last item still commits the generation

    def _running_rewards(self, generation: int) -> list[float]:
        """[children, solved, reward sum] of the generation's items committed so far (for progress)."""
        row = self.store.query(
            "WITH r AS (SELECT traj_id FROM raw.work_results WHERE generation = ? AND status = 'done') "
            "SELECT count(*), count(*) FILTER (WHERE t.solved), coalesce(sum(t.outcome_reward), 0) FROM r "
            "JOIN (SELECT traj_id, any_value(solved) AS solved, any_value(outcome_reward) AS outcome_reward "
            "FROM trajectories WHERE traj_id IN (SELECT traj_id FROM r) GROUP BY traj_id) t USING (traj_id)",
            [generation]).to_pylist()[0]
        return [float(v) for v in row.values()]

    # -- the generation ------------------------------------------------------
    def advance(self, generation: int, prev: dict[str, list[evo.Member]]) -> dict[str, list[evo.Member]] | None:
        """Plan (or re-read), execute, fill up and commit one generation; None if stopped."""
        items = self.planned(generation)
        if not items:
            items = self.plan(generation, prev)
            self.store.plan_generation(generation, items)
        while True:
            if not self.execute(generation, items):
                return None
            pop, n_results = self.survivors(generation, prev)
            extra = self.fill_plan(generation, prev, pop, items)
            if not extra:
                break
            self.store.plan_generation(generation, extra)  # journaled before it runs, like any plan
            items = items + extra
        stats = self.generation_stats(generation, pop, n_results)
        rows = [(t, m.traj_id, rank) for t in self.task_ids for rank, m in enumerate(pop[t])]
        self.store.commit_generation(generation, rows, stats)
        self.on_progress({"event": "generation", "generation": generation,
                          "last_generation": self.c.get("budget.generations"), "stats": stats,
                          "seconds": time.monotonic() - self._started})
        return pop

    def survivors(self, generation: int, prev: dict[str, list[evo.Member]]) -> tuple[dict[str, list[evo.Member]], int]:
        """Each task's population after replacement, and how many items produced a child."""
        results = self.store.query(
            "SELECT r.item_id, p.task_id, r.traj_id FROM raw.work_results r JOIN raw.work_plan p "
            "USING (generation, item_id) WHERE generation = ? AND r.status = 'done' ORDER BY item_id",
            [generation],
        ).to_pylist()
        kids = self.members([r["traj_id"] for r in results])
        pop: dict[str, list[evo.Member]] = {}
        for task_id in self.task_ids:
            offspring = [kids[r["traj_id"]] for r in results if r["task_id"] == task_id]
            pop[task_id] = evo.replace(
                prev.get(task_id, []), offspring, mu=self.c.get("mu"),
                kind=self.c.get("replacement.kind"), elitism=self.c.get("replacement.elitism"),
                selection=self.c.get("selection.kind"),
                seed=evo.derive_seed(self.seed, generation, task_id, "replace"),
            )
        return pop, len(results)

    def generation_stats(self, generation: int, pop: dict[str, list[evo.Member]], nevals: int) -> dict[str, Any]:
        everyone = [m for ms in pop.values() for m in ms]
        record = evo.statistics().compile(everyone)
        solved = sum(1 for ms in pop.values() if ms and ms[0].traj.solved)
        record.update(
            gen=generation, nevals=nevals, env_steps=self.env_steps_used(),
            success_rate=solved / max(len(self.task_ids), 1), solved=solved,
            members_solved=sum(m.traj.solved for m in everyone) / max(len(everyone), 1),
            tasks=len(self.task_ids), members=len(everyone),
            tasks_below_mu=sum(len(ms) < self.c.get("mu") for ms in pop.values()),
        )
        bound = self.store.get_meta("upper_bound")
        if bound and json.loads(bound):  # an LLM policy has no finite repertoire, so no bound
            solvable = sum(json.loads(bound).values())
            record["bound"] = solvable / max(len(self.task_ids), 1)
            record["of_bound"] = solved / solvable if solvable else None
        self.hof.update(everyone)
        return record

    def run(self) -> Outcome:
        """Continue from wherever the journal says; stop at the budget."""
        book = evo.logbook()
        for row in self.store.query(
            "SELECT stats FROM generations WHERE status = 'committed' ORDER BY generation"
        ).column(0).to_pylist():
            book.record(**json.loads(row))
        last = self.store.last_committed_generation()
        pop = self.population(last) if last is not None else {}
        if pop:
            self.hof.update([m for ms in pop.values() for m in ms])
        gen = 0 if last is None else last + 1
        status = "completed"
        while gen <= self.c.get("budget.generations"):
            nxt = None if self.stop_reason else self.advance(gen, pop)
            if nxt is None:
                status = f"stopped: {self.stop_reason}"
                break
            pop = nxt
            book.record(**json.loads(self.store.query(
                "SELECT stats FROM generations WHERE generation = ?", [gen]).column(0)[0].as_py()))
            gen += 1
        total = self.env_steps_used()
        return Outcome(status, self.store.last_committed_generation(), book,
                       time.monotonic() - self._started, total - self._steps_at_start, self.hof, total)
