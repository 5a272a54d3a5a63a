"""``evoagent bench search``: search methods at equal budgets, on tasks where the choice matters.

A *cell* is one (method, reward model, budget B, seed): one campaign, on the
benchmark's tasks, in its own store ``<out>/cells/<cell>.duckdb``. The budget is
environment executions per task, acting plus scoring (Monte-Carlo rollouts
count; ``work_items.env_steps`` holds both). How a method meets B:

- ``sample``: one rollout (whatever it costs; below B).
- ``best_of_n``: ``n = floor(B / (L + s))`` rollouts, with ``L`` the executions
  of one rollout, measured: the mean over the reference cell's rollouts (8 per
  task, run first) and ``s`` the reward model's scoring executions per rollout
  (``mc``: ``k * L * L``, a k-rollout value for each of ~L prefixes; others 0).
- ``rro`` / ``ipr``: ``n = floor(B / (c * (L + s)))`` trajectories per task with
  ``c`` candidates a step (RRO: 1.64, the paper's figure; IPR: ``k``).
- ``evolution`` / ``mcts``: rounds until ``budget.env_steps = B * tasks`` stops
  the campaign (between commits: a round in flight may overshoot).

Every row reports the executions the tasks really used; a cell whose mean is
above 1.1 B says so in the table. Success is the rank-0 member of the last
population judged by gold afterwards. Per task rows go to the ``bench`` table
of ``<out>/bench.duckdb`` in one transaction when a cell finishes, so the table
is SQL over that file and a killed run resumes: finished cells are skipped, a
cell in flight resumes from its own journal.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoagent.errors import UserError

METHODS = ("sample", "best_of_n", "evolution", "rro", "ipr", "mcts")
REWARDS = ("prm", "mc", "oracle", "judge")
BUDGETS = (10, 25, 50, 100, 200)
HELDOUT_DBS = ("concert_singer", "pets_1", "poker_player", "orchestra", "employee_hire_evaluation")
RRO_CANDIDATES = 1.64  # RRO's reported samples per step (Wang et al. 2025)
TOML = Path(__file__).resolve().parents[2] / "experiments" / "intercode_sql.toml"
BENCH_TABLE = ("cell VARCHAR, method VARCHAR, reward VARCHAR, budget INTEGER, seed INTEGER, task_id VARCHAR, "
               "solved BOOLEAN, random_pick DOUBLE, env_executions BIGINT, pool_solvable BOOLEAN, "
               "status VARCHAR, note VARCHAR")


@dataclass(frozen=True)
class Cell:
    """One campaign of the benchmark."""

    method: str
    reward: str  # "-" for sample
    budget: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}-{self.reward}-B{self.budget}-s{self.seed}"


REFERENCE = Cell("reference", "-", 8, 0)


@dataclass
class Options:
    """What ``evoagent bench search`` was asked for."""

    out: Path
    budgets: tuple[int, ...] = (50,)
    methods: tuple[str, ...] = METHODS
    rewards: tuple[str, ...] = ("prm", "mc", "oracle")
    seeds: int = 3
    prm: str = ""
    dbs: tuple[str, ...] = HELDOUT_DBS
    sample: int = 0
    mc_k: int = 2
    ipr_k: int = 5
    sets: tuple[str, ...] = ()
    concurrency: int = 2
    campaign_file: Path = TOML
    notes: list[str] = field(default_factory=list)


def cells(o: Options) -> list[Cell]:
    """Every cell, cheapest budgets first (a bounded run gives whole budgets early).

    The first is the reference: 8 rollouts per task (seed 0) that tell the trivial tasks
    (solved by every one of them) from the rest.
    """
    out = [REFERENCE]
    for b in sorted(o.budgets):
        for seed in range(o.seeds):
            for m in o.methods:
                for r in (["-"] if m == "sample" else o.rewards):
                    out.append(Cell(m, r, b, seed))
    return out


def _dbs(dbs: Sequence[str]) -> str:
    return "tasks.dbs=[" + ", ".join(json.dumps(d) for d in dbs) + "]"


def rollout_length(submit_p: float, limit: int) -> float:
    """Expected executed actions of one rollout: 1 + (1-p) + ... + (1-p)^(limit-1)."""
    return float(limit) if submit_p == 0 else (1 - (1 - submit_p) ** limit) / submit_p


def overrides(cell: Cell, o: Options, n_tasks: int, length: float) -> list[str]:
    """The campaign keys of one cell (over ``o.campaign_file``); ``length``: executions per rollout."""
    sets = [_dbs(o.dbs), f"tasks.sample={o.sample}", f"seed={cell.seed}", f"concurrency={o.concurrency}",
            "budget.wall_time_s=0", "budget.usd=0", "budget.env_steps=0"]
    reward = "oracle" if cell.reward == "-" else cell.reward
    scoring = o.mc_k * length * length if reward == "mc" else 0.0
    fitness = "env" if cell.method in ("sample", "reference") else reward
    sets += [f"search.reward={reward}", f"fitness.reward={fitness}"]
    if reward == "mc":
        sets += [f"rewards.mc.k={o.mc_k}", "fitness.aggregate=mean"]
    if o.prm:
        sets.append(f"rewards.prm.path={o.prm}")
    per = length + scoring
    if cell.method == "reference":
        sets += ["strategy.kind=best_of_n", "strategy.best_of_n.n=8", "budget.generations=0",
                 "strategy.best_of_n.allow_gold=true"]
    elif cell.method == "sample":
        sets += ["strategy.kind=best_of_n", "strategy.best_of_n.n=1", "budget.generations=0",
                 "strategy.best_of_n.allow_gold=true"]  # one rollout: nothing is picked
    elif cell.method == "best_of_n":
        n = max(1, math.floor(cell.budget / per))
        sets += ["strategy.kind=best_of_n", f"strategy.best_of_n.n={n}", "budget.generations=0",
                 "strategy.best_of_n.allow_gold=true"]  # oracle and mc picks see gold: named so
    elif cell.method in ("rro", "ipr"):
        c = RRO_CANDIDATES if cell.method == "rro" else o.ipr_k
        n = max(1, math.floor(cell.budget / (c * per)))
        sets += [f"strategy.kind={cell.method}", f"strategy.{cell.method}.n={n}", "budget.generations=0",
                 f"operators.ipr.k={o.ipr_k}"]
    else:
        mu = max(1, min(4, math.floor(cell.budget / (4 * per))))
        sets += [f"strategy.kind={cell.method}", "budget.generations=1000",
                 f"budget.env_steps={cell.budget * n_tasks}"]  # the campaign's total: B per task
        sets += ["mu=1"] if cell.method == "mcts" else [f"mu={mu}", f"lambda={mu}"]
    return sets + list(o.sets)


def validate(o: Options) -> tuple[list[Cell], Callable[[Cell, float], Any], float]:
    """Every check before any file is written: bad budgets, names, a PRM that saw these tasks.

    Returns the cells, a function giving each cell's validated campaign for a measured rollout
    length, and the expected rollout length (what the campaigns are validated with).
    """
    from evoagent import campaign, launch, registry

    if not o.budgets or any(type(b) is not int or b <= 0 for b in o.budgets):
        raise UserError(f"--budgets: positive integers only, got {list(o.budgets)}")
    for name, given, known in (("--methods", o.methods, METHODS), ("--rewards", o.rewards, REWARDS)):
        bad = [x for x in given if x not in known]
        if bad or not given:
            raise UserError(f"{name}: unknown {bad[0]!r} (have {', '.join(known)})" if bad else f"{name}: none given")
    if o.seeds < 1:
        raise UserError(f"--seeds: a positive integer, got {o.seeds}")
    if "prm" in o.rewards and not o.prm:
        raise UserError("--rewards prm needs --prm PATH: a model trained on other databases (evoagent rm train)")
    if "judge" in o.rewards and not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
        raise UserError("--rewards judge needs an LLM: set ANTHROPIC_API_KEY (or leave judge out)")
    base = campaign.load(o.campaign_file, [_dbs(o.dbs), f"tasks.sample={o.sample}"] + list(o.sets))
    tasks = launch.select_tasks(base)
    if not tasks:
        raise UserError(f"no tasks on databases {', '.join(o.dbs)}")
    expected = rollout_length(base.get("policy.submit_p"), base.get("env.max_steps"))
    todo = cells(o)

    def campaign_of(cell: Cell, length: float) -> Any:
        return campaign.load(o.campaign_file, overrides(cell, o, len(tasks), length))

    for cell in {Cell(c.method, c.reward, c.budget, 0): None for c in todo}:
        campaign_of(cell, expected)
    if "prm" in o.rewards:
        prm_campaign = campaign_of(next(c for c in todo if c.reward == "prm"), expected)
        registry.get("reward", "prm").preflight(prm_campaign)  # unreadable model: one line
        from evoagent.rewards.prm import check_unseen

        check_unseen(prm_campaign, tasks)  # trained on these tasks: refused
    return todo, campaign_of, expected


def _rows(cell: Cell, store: Path, status: str) -> list[tuple[Any, ...]]:
    """Per task: success of the rank-0 member, a random pick's, executions used, pool-solvable."""
    from stores import open_reader

    with open_reader(store) as s:
        bound = json.loads(s.get_meta("upper_bound") or "{}")
        got = s.query(
            "WITH last AS (SELECT max(generation) AS g FROM population), "
            "solved AS (SELECT traj_id, bool_or(solved) AS solved FROM trajectories GROUP BY traj_id), "
            "m AS (SELECT p.task_id, p.rank, s.solved FROM population p JOIN last ON p.generation = last.g "
            "JOIN solved s USING (traj_id)), "
            "per AS (SELECT task_id, bool_or(solved) FILTER (WHERE rank = 0) AS top, avg(solved::INT) AS rnd "
            "FROM m GROUP BY task_id), "
            "used AS (SELECT task_id, sum(coalesce(env_steps, 0)) AS n FROM work_items GROUP BY task_id) "
            "SELECT used.task_id, coalesce(per.top, false) AS top, coalesce(per.rnd, 0) AS rnd, used.n "
            "FROM used LEFT JOIN per USING (task_id) ORDER BY used.task_id").to_pylist()
    return [(cell.name, cell.method, cell.reward, cell.budget, cell.seed, r["task_id"], bool(r["top"]),
             float(r["rnd"]), int(r["n"]), bool(bound.get(r["task_id"], False)), status, "")
            for r in got]


def measured_length(bench: Path) -> float:
    """Mean environment executions of one rollout in the reference cell (8 rollouts per task),
    from its rows in the bench table (a store of an older schema need not be opened)."""
    con = open_bench(bench)
    try:
        got = con.execute("SELECT sum(env_executions) / (8.0 * count(*)) FROM bench WHERE cell = ?",
                          [REFERENCE.name]).fetchone()[0]
    finally:
        con.close()
    return float(got or 1.0)


def open_bench(path: Path) -> Any:
    import duckdb

    con = duckdb.connect(str(path))
    con.execute(f"CREATE TABLE IF NOT EXISTS bench ({BENCH_TABLE})")
    return con


def run(o: Options, note: Callable[[str], None] = lambda s: None) -> Path:
    """Run (or resume) every cell not yet in ``<out>/bench.duckdb``; returns that file."""
    from evoagent import launch

    todo, campaign_of, length = validate(o)
    (o.out / "cells").mkdir(parents=True, exist_ok=True)
    bench = o.out / "bench.duckdb"
    con = open_bench(bench)  # opened only to read and to commit: other invocations may share the folder
    done = {r[0] for r in con.execute("SELECT DISTINCT cell FROM bench").fetchall()}
    con.close()
    for i, cell in enumerate(todo):
        store = o.out / "cells" / f"{cell.name}.duckdb"
        if cell.name in done:
            if cell == REFERENCE:
                length = measured_length(bench)
            continue
        note(f"[{i + 1}/{len(todo)}] {cell.name}")
        try:
            out = launch.resume(str(store)) if store.exists() else launch.start(campaign_of(cell, length), str(store))
        except UserError as exc:
            if not store.exists():
                raise
            note(f"  {cell.name}: cannot resume ({exc}); starting it again")
            for old in (store, Path(f"{store}.wal"), Path(f"{store}.snapshot")):
                shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
            out = launch.start(campaign_of(cell, length), str(store))
        if out.status == "stopped: interrupted":
            raise UserError(f"interrupted in {cell.name}; run the same command again to resume")
        rows = _rows(cell, store, out.status)
        con = open_bench(bench)
        try:
            con.execute("BEGIN")
            if con.execute("SELECT count(*) FROM bench WHERE cell = ?", [cell.name]).fetchone()[0] == 0:
                con.executemany(f"INSERT INTO bench VALUES ({', '.join('?' * 12)})", rows)
            con.execute("COMMIT")
        finally:
            con.close()
        if cell == REFERENCE:
            length = measured_length(bench)
            note(f"  executions per rollout (reference cell): {length:.2f}")
    return bench


__all__ = ["BUDGETS", "Cell", "HELDOUT_DBS", "METHODS", "Options", "REWARDS", "cells", "run", "validate"]
