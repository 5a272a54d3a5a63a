"""``evoagent bench search``: search methods at equal budgets, on tasks where the choice matters.

A *cell* is one (method, reward model, budget B, seed): one campaign, on the
benchmark's tasks, in its own store ``<out>/cells/<cell>.duckdb``. The budget is
environment executions per task, acting plus scoring (Monte-Carlo rollouts
count; ``work_items.env_steps`` holds both).

The parts say what the bench needs; nothing here names one. An environment
declares its benchmark (``Environment.bench``, a ``registry.BenchSetup``): the
campaign file the cells start from, its task sets, the reward models compared by
default, the settings every cell gets. A strategy declares the methods it runs
(``Part.bench``, ``registry.BenchMethod``): the keys that make it spend about B
per task, given ``L`` the executions of one rollout (measured: the mean over the
reference cell's 8 rollouts per task, run first) plus ``s`` the reward model's
scoring executions per rollout (``mc``: ``k * L * L``, a k-rollout value for
each of ~L prefixes; others 0), and which methods its row is compared with.

Every row reports the executions the tasks really used; a cell whose mean is
above 1.1 B says so in the table. Success is the rank-0 member of the last
population judged by gold afterwards. Per task rows go to the ``bench`` table
of ``<out>/bench.duckdb`` in one transaction when a cell finishes, so the table
is SQL over that file and a killed run resumes: finished cells are skipped, a
cell in flight resumes from its own journal.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoagent import registry
from evoagent.errors import UserError

BUDGETS = (10, 25, 50, 100, 200)
REFERENCE_ROLLOUTS = 8  # the reference cell's rollouts per task
ROOT = Path(__file__).resolve().parents[2]  # campaign files are named relative to the repository root
BENCH_TABLE = ("cell VARCHAR, method VARCHAR, reward VARCHAR, budget INTEGER, seed INTEGER, task_id VARCHAR, "
               "solved BOOLEAN, random_pick DOUBLE, env_executions BIGINT, pool_solvable BOOLEAN, "
               "status VARCHAR, note VARCHAR")


def methods() -> dict[str, registry.BenchMethod]:
    """Every method the strategies declare for the bench, by name, in their run order."""
    found = {m.name: m for part in registry.parts("strategy").values() for m in getattr(part, "bench", ())}
    return dict(sorted(found.items(), key=lambda kv: kv[1].order))


def reference() -> registry.BenchMethod:
    """The method of the reference cell (declared ``reference=True`` by one strategy)."""
    return next(m for m in methods().values() if m.reference)


def environments() -> dict[str, Any]:
    """The environments that declare a benchmark, in declaration order (the first is the default)."""
    return {name: env for name, env in registry.parts("environment").items() if getattr(env, "bench", None)}


@dataclass(frozen=True)
class Cell:
    """One campaign of the benchmark."""

    method: str
    reward: str  # "-" for a method no reward model steers
    budget: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}-{self.reward}-B{self.budget}-s{self.seed}"


def reference_cell() -> Cell:
    return Cell(reference().name, "-", REFERENCE_ROLLOUTS, 0)


@dataclass
class Options:
    """What ``evoagent bench search`` was asked for (empty: the environment's or strategies' default)."""

    out: Path
    env: str = ""
    task_set: str = ""
    budgets: tuple[int, ...] = (50,)
    methods: tuple[str, ...] = ()
    rewards: tuple[str, ...] = ()
    seeds: int = 3
    prm: str = ""
    sample: int = 0
    mc_k: int = 2
    sets: tuple[str, ...] = ()
    concurrency: int = 2
    campaign_file: Path | None = None
    notes: list[str] = field(default_factory=list)


def resolve(o: Options) -> tuple[Any, Options]:
    """The environment the options name (one line if it declares no benchmark) and the options with
    every default filled in from the declarations."""
    envs = environments()
    if not envs:
        raise UserError("no environment declares a benchmark (Environment.bench)")
    name = o.env or next(iter(envs))
    if name not in envs:
        raise UserError(f"--env: {name!r} declares no benchmark (have {', '.join(envs)})")
    setup = envs[name].bench
    task_set = o.task_set or next(iter(setup.task_sets))
    if task_set not in setup.task_sets:
        raise UserError(f"--tasks: {name} has no task set {task_set!r} (have {', '.join(setup.task_sets)})")
    return envs[name], Options(
        out=o.out, env=name, task_set=task_set, budgets=o.budgets,
        methods=o.methods or tuple(m for m, d in methods().items() if not d.reference),
        rewards=o.rewards or tuple(setup.rewards), seeds=o.seeds, prm=o.prm, sample=o.sample, mc_k=o.mc_k,
        sets=o.sets, concurrency=o.concurrency, campaign_file=o.campaign_file or ROOT / setup.campaign_file,
        notes=o.notes)


def cells(o: Options) -> list[Cell]:
    """Every cell, cheapest budgets first (a bounded run gives whole budgets early).

    The first is the reference: 8 rollouts per task (seed 0) that tell the trivial tasks
    (solved by every one of them) from the rest.
    """
    declared = methods()
    out = [reference_cell()]
    for b in sorted(o.budgets):
        for seed in range(o.seeds):
            for m in o.methods:
                for r in (o.rewards if declared[m].scored else ["-"]):
                    out.append(Cell(m, r, b, seed))
    return out


def overrides(cell: Cell, o: Options, setup: Any, n_tasks: int, length: float) -> list[str]:
    """The campaign keys of one cell (over ``o.campaign_file``); ``length``: executions per rollout."""
    method = methods()[cell.method]
    sets = [*setup.task_sets[o.task_set], *setup.settings, f"tasks.sample={o.sample}", f"seed={cell.seed}",
            f"concurrency={o.concurrency}", "budget.wall_time_s=0", "budget.usd=0", "budget.env_steps=0"]
    reward = cell.reward if method.scored else "oracle"  # search reward: read by no unscored method
    scoring = o.mc_k * length * length if reward == "mc" else 0.0
    sets += [f"search.reward={reward}", f"fitness.reward={reward if method.scored else 'env'}"]
    if reward == "mc":
        sets += [f"rewards.mc.k={o.mc_k}", "fitness.aggregate=mean"]
    if o.prm:
        sets.append(f"rewards.prm.path={o.prm}")
    sets += method.settings(registry.BenchBudget(cell.budget, length + scoring, n_tasks))
    return sets + list(o.sets)


def validate(o: Options) -> tuple[Options, list[Cell], Callable[[Cell, float], Any], float]:
    """Every check before any file is written: bad budgets, names, a PRM that saw these tasks.

    Returns the options with their defaults filled in, the cells, a function giving each cell's
    validated campaign for a measured rollout length, and the expected rollout length (what the
    campaigns are validated with).
    """
    from evoagent import campaign, launch

    if not o.budgets or any(type(b) is not int or b <= 0 for b in o.budgets):
        raise UserError(f"--budgets: positive integers only, got {list(o.budgets)}")
    if o.seeds < 1:
        raise UserError(f"--seeds: a positive integer, got {o.seeds}")
    env, o = resolve(o)
    runnable = [m for m, d in methods().items() if not d.reference]
    for name, given, known in (("--methods", o.methods, runnable), ("--rewards", o.rewards, registry.names("reward"))):
        bad = [x for x in given if x not in known]
        if bad or not given:
            raise UserError(f"{name}: unknown {bad[0]!r} (have {', '.join(known)})" if bad else f"{name}: none given")
    if "prm" in o.rewards and not o.prm:
        raise UserError("--rewards prm needs --prm PATH: a model trained on other tasks (evoagent rm train)")
    if "judge" in o.rewards and not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
        raise UserError("--rewards judge needs an LLM: set ANTHROPIC_API_KEY (or leave judge out)")
    setup = env.bench
    assert o.campaign_file is not None
    base = campaign.load(o.campaign_file, [*setup.task_sets[o.task_set], *setup.settings,
                                           f"tasks.sample={o.sample}", *o.sets])
    tasks = launch.select_tasks(base)
    if not tasks:
        raise UserError(f"no tasks in {o.env}'s task set {o.task_set!r} with these settings")
    expected = setup.rollout_length(base) if setup.rollout_length else float(base.get("env.max_steps"))
    todo = cells(o)

    def campaign_of(cell: Cell, length: float) -> Any:
        return campaign.load(o.campaign_file, overrides(cell, o, setup, len(tasks), length))

    for cell in {Cell(c.method, c.reward, c.budget, 0): None for c in todo}:
        campaign_of(cell, expected)
    if "prm" in o.rewards:
        prm_campaign = campaign_of(next(c for c in todo if c.reward == "prm"), expected)
        registry.get("reward", "prm").preflight(prm_campaign)  # unreadable model: one line
        from evoagent.rewards.prm import check_unseen

        check_unseen(prm_campaign, tasks)  # trained on these tasks: refused
    return o, todo, campaign_of, expected


def _rows(cell: Cell, store: Path, status: str) -> list[tuple[Any, ...]]:
    """Per task: success of the rank-0 member, a random pick's, executions used, pool-solvable."""
    from stores import open_reader

    with open_reader(store) as s:
        bound = json.loads(s.get_meta("upper_bound") or "{}")  # {}: a policy with no finite pool
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
             float(r["rnd"]), int(r["n"]), bool(bound.get(r["task_id"], not bound)), status, "")
            for r in got]


def measured_length(bench: Path) -> float:
    """Mean environment executions of one rollout in the reference cell (8 rollouts per task),
    from its rows in the bench table (a store of an older schema need not be opened)."""
    con = open_bench(bench)
    try:
        got = con.execute("SELECT sum(env_executions) / (? * count(*)) FROM bench WHERE cell = ?",
                          [float(REFERENCE_ROLLOUTS), reference_cell().name]).fetchone()[0]
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

    o, todo, campaign_of, length = validate(o)
    ref = reference_cell()
    (o.out / "cells").mkdir(parents=True, exist_ok=True)
    bench = o.out / "bench.duckdb"
    con = open_bench(bench)  # opened only to read and to commit: other invocations may share the folder
    done = {r[0] for r in con.execute("SELECT DISTINCT cell FROM bench").fetchall()}
    con.close()
    for i, cell in enumerate(todo):
        store = o.out / "cells" / f"{cell.name}.duckdb"
        if cell.name in done:
            if cell == ref:
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
        if cell == ref:
            length = measured_length(bench)
            note(f"  executions per rollout (reference cell): {length:.2f}")
    return bench


__all__ = ["BUDGETS", "Cell", "Options", "cells", "environments", "methods", "resolve", "run", "validate"]
