"""``mcts``: Monte Carlo tree search per task (LATS, Zhou et al. 2024), its tree kept in the store.

The tree is append-only facts, nothing else: a node is a prefix of actions
(its id ``trajectory_id(task, actions)``; the root is the empty prefix); an
expansion is the ``candidates`` rows an ``mcts`` item wrote at a leaf (one per
child, with the search signal's value of it); a simulation is one row of
``simulations`` (the node ids selected from the root plus the child taken,
and the value backed up). Visits and mean values are SQL over simulations
(the ``search_nodes`` view), so backpropagation is a ``GROUP BY`` and a search
killed anywhere resumes where its committed facts end.

A node is terminal when its action submits, it is at ``strategy.mcts.max_depth``,
or a simulation ended there as terminal (its action ended the episode, e.g.
the last number of a numbers game). With an LLM policy, the latest reflections on a task's
failed leaves (at most three, LATS; the ``reflection`` of ``simulations`` rows)
go with its items, for the proposals of later expansions.

A round plans ``strategy.mcts.parallel`` simulations per task from the facts
of earlier rounds only. Each descends from the root by UCT,
``mean + c * sqrt(ln N_parent / n)``, unvisited children first (best evaluated
first, then by rank), with a virtual loss (one visit of value 0) on every node
the plan already selected, so parallel simulations spread out; a leaf already
taken by the plan, a terminal node (submitted, or at ``strategy.mcts.max_depth``)
and a subtree with nothing left to expand are not selectable. A task whose
tree is exhausted, or that ran ``strategy.mcts.iterations`` simulations (0:
no limit), plans nothing more. The plan's items carry the path and the leaf's
actions as JSON ``args``; since the plan depends only on committed facts and
seeds, results do not depend on ``concurrency``.

Closing a round keeps per task the ``mu`` best trajectories found so far, with
evolution's statistics, so ``generations``, ``status`` and the report work
unchanged. A trajectory that a simulation ended on as terminal with the top
value of the search signal (1.0: the signal judges it solved; LATS's answer
is such a node) ranks before every other, then fitness ranks as evolution
ranks members: a fitness that averages step values (``fitness.aggregate =
"mean"``) must not replace a solved answer by an unsolved one whose earlier
steps scored higher.

Stopping rule: a task stops when its tree is exhausted (no expandable,
unclaimed leaf) or after ``strategy.mcts.iterations`` simulations; the
campaign after ``budget.generations`` rounds (or an exhausted budget).
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from evoagent import evolution as evo
from evoagent import registry
from evoagent.strategies.base import Closed, Strategy
from evoagent.strategies.ranked import RANKING_KEYS, Ranked
from evoagent.trajectory import trajectory_id
from evoagent.strategies.mcts_pass import KEYS as PASS_KEYS
from evoagent.strategies.mcts_pass import REFLECTION_CHARS, REFLECTIONS, depth_limit, is_terminal
from stores.base import WorkItem

__all__ = ["MCTS", "Tree", "plan_simulations", "select"]

VIRTUAL_LOSS = 0.0  # the value a pending simulation counts with: a loss (rewards are within [0, 1])
SOLVED = 1.0  # a terminal simulation value at the top of the scale: the search signal says solved


@dataclass
class Tree:
    """One task's search tree as read from the store (see the module docstring)."""

    root: str
    parent: dict[str, str] = field(default_factory=dict)  # node -> the node it extends
    action: dict[str, str] = field(default_factory=dict)
    rank: dict[str, int] = field(default_factory=dict)
    prior: dict[str, float] = field(default_factory=dict)  # the search signal's value at expansion
    children: dict[str, list[str]] = field(default_factory=dict)  # expanded node -> children by rank
    terminal: set[str] = field(default_factory=set)
    visits: dict[str, int] = field(default_factory=dict)
    total: dict[str, float] = field(default_factory=dict)  # sum of backed-up values

    def add(self, prefix_id: str, node_id: str, action: str, rank: int, prior: float | None,
            terminal: bool) -> None:
        """One child of an expansion (a ``candidates`` row)."""
        self.parent[node_id], self.action[node_id], self.rank[node_id] = prefix_id, action, rank
        self.prior[node_id] = prior if prior is not None else 0.0
        self.children.setdefault(prefix_id, []).append(node_id)
        if terminal:
            self.terminal.add(node_id)

    def actions(self, node: str) -> list[str]:
        """The actions from the root to ``node``."""
        out = []
        while node != self.root:
            out.append(self.action[node])
            node = self.parent[node]
        return out[::-1]


def _open_nodes(tree: Tree, claimed: set[str]) -> set[str]:
    """The nodes a selection can pass through and still end at an unclaimed, expandable leaf."""
    found: set[str] = set()
    order, stack = [], [tree.root]
    while stack:  # parents before children; reversed below, children before parents
        node = stack.pop()
        order.append(node)
        stack.extend(tree.children.get(node, ()))
    for node in reversed(order):
        if node in tree.terminal:
            continue
        kids = tree.children.get(node)
        if (not kids and node not in claimed) or (kids and any(k in found for k in kids)):
            found.add(node)
    return found


def select(tree: Tree, c: float, claimed: set[str], virtual: Counter[str]) -> list[str] | None:
    """UCT descent from the root to an unclaimed, unexpanded, non-terminal leaf (None: none left).

    ``virtual`` counts the plan's pending simulations through each node (a visit
    of value ``VIRTUAL_LOSS`` each); ``claimed`` are leaves the plan already expands.
    """
    open_ = _open_nodes(tree, claimed)
    if tree.root not in open_:
        return None
    path = [tree.root]
    node = tree.root
    while tree.children.get(node):
        n_parent = tree.visits.get(node, 0) + virtual[node]
        best_key: tuple[Any, ...] | None = None
        best = ""
        for kid in tree.children[node]:
            if kid not in open_:
                continue
            n = tree.visits.get(kid, 0) + virtual[kid]
            if n == 0:  # unvisited first, best evaluated first, then by rank
                key: tuple[Any, ...] = (1, tree.prior[kid], -tree.rank[kid])
            else:
                mean = (tree.total.get(kid, 0.0) + VIRTUAL_LOSS * virtual[kid]) / n
                uct = mean + c * math.sqrt(math.log(max(n_parent, 1)) / n)
                key = (0, uct, -tree.rank[kid])
            if best_key is None or key > best_key:
                best_key, best = key, kid
        node = best
        path.append(node)
    return path


def plan_simulations(tree: Tree, n: int, c: float) -> list[list[str]]:
    """Up to ``n`` paths for simulations run side by side, spread by virtual loss."""
    claimed: set[str] = set()
    virtual: Counter[str] = Counter()
    paths = []
    for _ in range(n):
        path = select(tree, c, claimed, virtual)
        if path is None:
            break
        claimed.add(path[-1])
        virtual.update(path)
        paths.append(path)
    return paths


class MCTS(Strategy):
    """Plans simulations from the stored trees; keeps a ranked per-task population and its statistics."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.seed = self.own["seed"]
        self.ranked = Ranked(self.own, self.store, self.task_ids, self.fitness_source)
        self.limit = depth_limit(self.own)

    def last_round(self) -> int:
        return int(self.own["budget.generations"])

    def hall_of_fame(self) -> Any:
        return self.ranked.hof

    @classmethod
    def check_campaign(cls, values: dict[str, Any]) -> tuple[str, str] | None:
        """Round 0 only expands the roots: a search needs rounds after it (called by ``campaign.build``)."""
        if values["budget.generations"] < 1:
            return "budget.generations", "strategy 'mcts' needs at least 1 round of simulations after round 0"
        return None

    @staticmethod
    def items_per_task(c: Any) -> int:
        return int(c.get("strategy.mcts.parallel"))

    def trees(self, before_round: int) -> dict[str, Tree]:
        """Every task's tree from the facts of rounds before ``before_round``."""
        trees = {t: Tree(trajectory_id(t, ())) for t in self.task_ids}
        rows = self.store.query(
            "SELECT task_id, prefix_id, node_id, action, step_idx, rank, reward FROM candidates "
            "WHERE strategy = 'mcts' AND generation < ? QUALIFY row_number() OVER "
            "(PARTITION BY task_id, node_id ORDER BY generation, item_id, rank) = 1 "
            "ORDER BY task_id, generation, item_id, rank", [before_round]).to_pylist()
        for r in rows:
            if r["task_id"] in trees:
                trees[r["task_id"]].add(r["prefix_id"], r["node_id"], r["action"], r["rank"], r["reward"],
                                        is_terminal(r["action"], r["step_idx"] + 1, self.limit))
        stats = self.store.query(
            "SELECT task_id, node_id, count(*) AS visits, sum(value) AS total, "
            "bool_or(terminal AND node_id = last) AS ended FROM (SELECT task_id, unnest(path) AS node_id, "
            "path[-1] AS last, value, terminal FROM simulations WHERE generation < ?) GROUP BY task_id, node_id",
            [before_round]).to_pylist()
        for r in stats:
            if r["task_id"] in trees:
                tree = trees[r["task_id"]]
                tree.visits[r["node_id"]], tree.total[r["node_id"]] = r["visits"], r["total"]
                if r["ended"]:  # e.g. a child whose action ended the episode
                    tree.terminal.add(r["node_id"])
        return trees

    def reflections(self, before_round: int) -> dict[str, list[str]]:
        """Each task's latest LATS reflections (newest first), from its simulations' rows."""
        rows = self.store.query(
            "SELECT task_id, reflection FROM simulations WHERE generation < ? AND reflection <> '' "
            "QUALIFY row_number() OVER (PARTITION BY task_id ORDER BY generation DESC, item_id DESC) <= ? "
            "ORDER BY task_id, generation DESC, item_id DESC", [before_round, REFLECTIONS]).to_pylist()
        found: dict[str, list[str]] = {}
        for r in rows:
            found.setdefault(r["task_id"], []).append(r["reflection"][:REFLECTION_CHARS])
        return found

    def solved(self, upto_round: int) -> set[str]:
        """Trajectories a simulation of a round up to ``upto_round`` ended on as terminal at ``SOLVED``."""
        return set(self.store.query(
            "SELECT DISTINCT r.traj_id FROM raw.work_results r JOIN raw.simulations s USING (generation, item_id) "
            "WHERE r.status = 'done' AND r.generation <= ? AND s.terminal AND s.value >= ?",
            [upto_round, SOLVED]).column(0).to_pylist())

    # -- ask -------------------------------------------------------------------
    def plan(self, round_: int) -> list[WorkItem]:
        parallel, cap = self.own["parallel"], self.own["iterations"]
        lessons = self.reflections(round_)
        items: list[WorkItem] = []
        for task_id, tree in self.trees(round_).items():
            n = parallel if not cap else min(parallel, cap - tree.visits.get(tree.root, 0))
            for path in plan_simulations(tree, n, float(self.own["c"])):
                args: dict[str, Any] = {"path": path, "actions": tree.actions(path[-1])}
                if task_id in lessons:
                    args["reflections"] = lessons[task_id]
                items.append(WorkItem(round_, len(items), "mcts", task_id, (),
                                      evo.derive_seed(self.seed, round_, len(items)), json.dumps(args)))
        return items

    def extend(self, round_: int, items: list[WorkItem]) -> list[WorkItem]:
        return []  # a round is its simulations; the population keeps what they found

    # -- tell ------------------------------------------------------------------
    def close(self, round_: int) -> Closed:
        prev = self.ranked.population(round_ - 1)
        results = self.store.round_results(round_)
        found = self.ranked.members([traj_id for _, _, traj_id in results])
        mine: dict[str, list[evo.Member]] = {t: [] for t in self.task_ids}
        for _, task_id, traj_id in results:
            mine[task_id].append(found[traj_id])
        solved = self.solved(round_)
        mu = self.own["mu"]
        pop = {}
        for t in self.task_ids:  # every distinct member by fitness, then the solved ones first
            pool = evo.replace(prev.get(t, []), mine[t], mu=len(prev.get(t, [])) + len(mine[t]), kind="plus",
                               elitism=0, selection="best")
            pop[t] = sorted(pool, key=lambda m: m.traj_id not in solved)[:mu]
        pop = self.ranked.picked(pop)  # the mu kept, ordered by selection.pick
        rows = self.ranked.rows(pop)
        stats = self.ranked.stats(round_, pop, len(results), mu)
        stats["simulations"] = int(self.store.scalar(
            "SELECT count(*) FROM simulations WHERE generation <= ?", [round_]) or 0)
        return Closed(rows, stats)


PART = registry.Part("strategy", "mcts", MCTS, keys={
    "parallel": registry.Key(int, 4, lambda x: 1 <= x <= 100, "within 1..100"),
    "c": registry.Key((int, float), 1.0, lambda x: 0 <= x <= 100, "within 0..100"),
    "iterations": registry.Key(int, 0, lambda x: 0 <= x <= 10**6, "within 0..1000000 (0 = no limit)"),
}, shared_keys={  # the operator's (children, max_depth, rollout); the population it keeps, ranked as
    **PASS_KEYS,  # evolution ranks; its rounds
    "mu": registry.Key(int, 1, lambda x: 1 <= x <= 10_000, "within 1..10000"),
    **RANKING_KEYS,
    "budget.generations": registry.Key(int, 0, lambda x: 0 <= x <= 100_000, "within 0..100000"),
}, doc="Monte Carlo tree search per task (LATS), its tree as append-only facts in the store", bench=(
    registry.BenchMethod("mcts", lambda b: ["strategy.kind=mcts", "budget.generations=1000", "mu=1",
                                            f"budget.env_steps={b.budget * b.n_tasks}"],
                         against=("ipr",), order=6, doc="rounds until B x tasks executions"),))
