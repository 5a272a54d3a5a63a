"""Persistence of an evolving trajectory population: evoagent's store vs the peers' own ways.

    python experiments/bench_peers.py --tasks 1000 --generations 10 --repeats 3
    python experiments/bench_peers.py --tasks 10000 --systems evoagent,deap_pop,deap_archive

One campaign shape for every system: ``tasks`` niches, ``lambda`` children per task and
generation, ``mu`` survivors per task, synthetic InterCode-like trajectories (5 steps, ~60-char
SQL actions drawn from a per-task pool, as replayed actions recur; ~120-char observations).
The children are built before the clock starts; each system is timed only on its own
persistence path, in its own process, back to back:

* ``evoagent``: the store exactly as the runner calls it — ``plan_generation`` (the journal),
  ``commit_items`` in groups of ``--group`` (trajectories, steps, lineage, item results),
  ``commit_generation`` (population and statistics), then one snapshot publish (Parquet for
  readers). It keeps every trajectory ever made.
* ``deap_pop``: DEAP's checkpoint recipe — pickle ``population``, ``halloffame``, ``logbook`` and
  the random state each generation (the survivors only: the archive is lost).
* ``deap_archive``: the same recipe, pickling every individual ever made (what evoagent keeps).
* ``openevolve``: OpenEvolve's ``ProgramDatabase.save()`` once per generation (one program per
  trajectory; its population limit raised so that it keeps the archive too).
* ``optuna``: Optuna's RDB storage on SQLite, one trial per trajectory (actions as user attrs).

Per system: persist seconds per generation (first, last, total; wall clock) and the CPU
seconds of that persist per generation (``time.process_time``: every thread of the process,
DuckDB's included; it moves less than wall time on a loaded machine), bytes on disk, seconds to
answer "success of the current population" from disk in a fresh process state, and seconds
to resume (load what a restart needs). ``--cap-s`` stops a slow system after the generation
that crosses it; its row says how many generations it finished. Peers come from the
``[peers]`` extra (``pip install -e '.[peers]'``); a missing one is reported, not fatal.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SYSTEMS = ("evoagent", "deap_pop", "deap_archive", "openevolve", "optuna")
BYTES_PER_TRAJECTORY = 1_200  # in memory while a generation is built (5 steps of ~180 chars + records)
_TABLES = ["singer", "concert", "stadium", "employee", "orders", "products", "students", "teacher"]
_COLS = ["name", "age", "city", "salary", "country", "title", "year", "price"]


# -- the synthetic campaign (identical for every system) ------------------------------------
def action_pool(task: int) -> list[str]:
    """Twelve ~60-char SQL actions of one task: replayed and edited actions recur across children."""
    r = random.Random(task)
    out = []
    for _ in range(12):
        t, c1, c2 = r.choice(_TABLES), r.choice(_COLS), r.choice(_COLS)
        out.append(f"SELECT {c1}, count(*) FROM {t} WHERE {c2} > {r.randint(1, 999)} GROUP BY {c1}"[:64])
    return out


def children(gen: int, tasks: int, lam: int) -> list[dict[str, Any]]:
    """The generation's children: per task ``lam`` trajectories of 5 steps, seeded by (gen, task)."""
    out = []
    for task in range(tasks):
        r = random.Random(gen * 1_000_003 + task)
        pool = action_pool(task)
        for child in range(lam):
            actions = [r.choice(pool) for _ in range(4)] + ["submit"]
            obs = [f"[({r.randint(0, 99)}, 'row {r.randint(0, 9999)}'), ({r.randint(0, 99)}, 'Alice'), "
                   f"({r.randint(0, 99)}, 'Bob')] 3 rows in set; reward {r.random():.3f}"[:120] for _ in actions]
            rewards = [round(r.random(), 3) for _ in actions]
            solved = r.random() < 0.3 + 0.04 * gen
            out.append({"task": f"sql/{task}", "actions": actions, "obs": obs, "rewards": rewards,
                        "outcome": 1.0 if solved else rewards[-1] * 0.9, "child": child, "seed": r.getrandbits(62)})
    return out


def select(population: dict[str, list[dict[str, Any]]], kids: list[dict[str, Any]], mu: int) -> None:
    """(mu+lambda) per task by outcome, ties by the order seen (the same survivors for every system)."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for k in kids:
        by_task.setdefault(k["task"], []).append(k)
    for task, new in by_task.items():
        both = population.get(task, []) + new
        population[task] = sorted(both, key=lambda t: -t["outcome"])[:mu]


# -- systems ---------------------------------------------------------------------------------
class EvoagentStore:
    """The store through the calls the runner makes (stores/base.py's contract)."""

    def __init__(self, folder: Path, group: int) -> None:
        from stores import DuckDBStore

        self.path = str(folder / "bench.duckdb")
        self.group = group
        self.store = DuckDBStore(self.path, snapshot_every_s=1e9)  # published once per generation, below
        self.store.put_meta("campaign", json.dumps({"name": "bench_peers"}))
        from evoagent.trajectory import Task

        self.Task = Task
        self.ids: dict[int, str] = {}

    def persist(self, gen: int, kids: list[dict[str, Any]], population: dict[str, list[dict[str, Any]]]) -> None:
        from evoagent.trajectory import Step, Trajectory
        from stores import ItemResult, WorkItem

        if gen == 0:
            self.store.add_tasks([self.Task(t, "intercode_sql", "q") for t in population])
        items = [WorkItem(gen, i, "init" if gen == 0 else "revise", k["task"],
                          () if gen == 0 else (k["parent"],), k["seed"]) for i, k in enumerate(kids)]
        # The operators hand the runner finished ItemResults: building them is the loop's work
        # (as DEAP's individuals are), so the clock starts at the journal write.
        results = []
        for item, k in zip(items, kids):
            steps = tuple(Step(i, a, o, r) for i, (a, o, r) in enumerate(zip(k["actions"], k["obs"], k["rewards"])))
            traj = Trajectory(k["task"], steps, k["outcome"], "evolve", gen, item.operator, item.parents, k["seed"])
            k["id"] = traj.traj_id
            results.append(ItemResult(item, traj, env_steps=5))
        pop = [(task, m["id"], rank) for task, members in population.items() for rank, m in enumerate(members)]
        t0, c0 = time.perf_counter(), time.process_time()
        self.store.plan_generation(gen, items)
        for lo in range(0, len(results), self.group):
            self.store.commit_items(results[lo:lo + self.group], "bench_peers")
        self.store.commit_generation(gen, pop, {"success": success(population)})
        self.store.snapshot()
        self.own_seconds, self.own_cpu = time.perf_counter() - t0, time.process_time() - c0

    def close(self) -> None:
        self.store.close()

    def answer(self) -> float:
        from stores import open_reader

        with open_reader(self.path) as r:
            return r.query("SELECT avg(CASE WHEN t.outcome_reward >= 1 THEN 1.0 ELSE 0 END) AS s FROM population p "
                           "JOIN trajectories t USING (traj_id) WHERE p.generation = "
                           "(SELECT max(generation) FROM population) AND p.rank = 0").column(0)[0].as_py()

    def resume(self) -> int:
        from stores import DuckDBStore

        with DuckDBStore(self.path) as s:
            gen = s.last_committed_generation()
            members = s.population(gen)
            return len(s.load_trajectories([m[1] for m in members]))


class DeapCheckpoint:
    """DEAP's checkpointing recipe: one pickle of population, hall of fame, logbook, random state."""

    def __init__(self, folder: Path, archive: bool) -> None:
        from deap import base, creator, tools

        if not hasattr(creator, "BenchFit"):
            creator.create("BenchFit", base.Fitness, weights=(1.0,))
            creator.create("BenchInd", list, fitness=creator.BenchFit, task=str)
        self.creator, self.tools = creator, tools
        self.path = folder / "checkpoint.pkl"
        self.archive: list[Any] | None = [] if archive else None
        self.hof = tools.HallOfFame(1)
        self.logbook = tools.Logbook()
        self.inds: dict[int, Any] = {}

    def _ind(self, k: dict[str, Any]) -> Any:
        ind = self.creator.BenchInd(zip(k["actions"], k["obs"], k["rewards"]))
        ind.fitness.values = (k["outcome"],)
        ind.task = k["task"]
        return ind

    def persist(self, gen: int, kids: list[dict[str, Any]], population: dict[str, list[dict[str, Any]]]) -> None:
        # Building individuals is the evolutionary loop's work in DEAP (they are its genomes), not persistence.
        self._pending = [self._ind(k) for k in kids]
        for k, ind in zip(kids, self._pending):
            self.inds[id(k)] = ind
        pop = [self.inds[id(m)] for members in population.values() for m in members]
        self.inds = {id(m): self.inds[id(m)] for members in population.values() for m in members}
        t0, c0 = time.perf_counter(), time.process_time()
        self.hof.update(pop)
        self.logbook.record(gen=gen, success=success(population))
        if self.archive is not None:
            self.archive.extend(self._pending)
        cp = {"population": pop, "generation": gen, "halloffame": self.hof, "logbook": self.logbook,
              "rndstate": random.getstate()}
        if self.archive is not None:
            cp["archive"] = self.archive
        with open(self.path, "wb") as f:
            pickle.dump(cp, f, protocol=pickle.HIGHEST_PROTOCOL)
        self.own_seconds, self.own_cpu = time.perf_counter() - t0, time.process_time() - c0

    def close(self) -> None:
        pass

    def answer(self) -> float:
        with open(self.path, "rb") as f:
            cp = pickle.load(f)
        best: dict[str, float] = {}
        for ind in cp["population"]:
            best[ind.task] = max(best.get(ind.task, -1.0), ind.fitness.values[0])
        return sum(v >= 1.0 for v in best.values()) / len(best)

    def resume(self) -> int:
        with open(self.path, "rb") as f:
            return len(pickle.load(f)["population"])


class OpenEvolveDB:
    """OpenEvolve's ProgramDatabase, one program per trajectory, saved once per generation."""

    def __init__(self, folder: Path, total: int) -> None:
        from openevolve.config import DatabaseConfig
        from openevolve.database import ProgramDatabase

        self.path = str(folder / "openevolve_db")
        self.cfg = DatabaseConfig(db_path=self.path, in_memory=True, population_size=total + 1,
                                  archive_size=100, num_islands=1, log_prompts=False)
        self.db = ProgramDatabase(self.cfg)
        self.Program = __import__("openevolve.database", fromlist=["Program"]).Program
        self.n = 0

    def persist(self, gen: int, kids: list[dict[str, Any]], population: dict[str, list[dict[str, Any]]]) -> None:
        for k in kids:
            self.n += 1
            code = "\n".join(f"{a}\n-- {o}" for a, o in zip(k["actions"], k["obs"]))
            self.db.add(self.Program(id=f"p{self.n}", code=code, generation=gen, iteration_found=gen,
                                     metrics={"combined_score": k["outcome"]}, metadata={"task": k["task"]}),
                        iteration=gen)
        t0, c0 = time.perf_counter(), time.process_time()
        self.db.save(self.path, iteration=gen)
        self.own_seconds, self.own_cpu = time.perf_counter() - t0, time.process_time() - c0

    def close(self) -> None:
        pass

    def answer(self) -> float:
        from openevolve.database import ProgramDatabase

        db = ProgramDatabase(self.cfg)
        db.load(self.path)
        best: dict[str, float] = {}
        for p in db.programs.values():
            task = p.metadata.get("task")
            best[task] = max(best.get(task, -1.0), p.metrics.get("combined_score", 0.0))
        return sum(v >= 1.0 for v in best.values()) / max(1, len(best))

    def resume(self) -> int:
        from openevolve.database import ProgramDatabase

        db = ProgramDatabase(self.cfg)
        db.load(self.path)
        return len(db.programs)


class OptunaRDB:
    """Optuna's RDB storage on SQLite: one finished trial per trajectory."""

    def __init__(self, folder: Path) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.url = f"sqlite:///{folder / 'optuna.db'}"
        self.study = optuna.create_study(storage=self.url, study_name="bench", direction="maximize")
        self.dist = {"task": optuna.distributions.IntDistribution(0, 10**7)}

    def persist(self, gen: int, kids: list[dict[str, Any]], population: dict[str, list[dict[str, Any]]]) -> None:
        trials = [self.optuna.trial.create_trial(
            params={"task": int(k["task"].split("/")[1])}, distributions=self.dist, value=k["outcome"],
            user_attrs={"actions": k["actions"], "observations": k["obs"], "rewards": k["rewards"], "generation": gen})
            for k in kids]
        t0, c0 = time.perf_counter(), time.process_time()
        self.study.add_trials(trials)
        self.own_seconds, self.own_cpu = time.perf_counter() - t0, time.process_time() - c0

    def close(self) -> None:
        pass

    def answer(self) -> float:
        study = self.optuna.load_study(study_name="bench", storage=self.url)
        best: dict[int, float] = {}
        for t in study.get_trials(deepcopy=False):
            best[t.params["task"]] = max(best.get(t.params["task"], -1.0), t.value)
        return sum(v >= 1.0 for v in best.values()) / max(1, len(best))

    def resume(self) -> int:
        return len(self.optuna.load_study(study_name="bench", storage=self.url).get_trials(deepcopy=False))


def success(population: dict[str, list[dict[str, Any]]]) -> float:
    return sum(m[0]["outcome"] >= 1.0 for m in population.values()) / len(population)


def du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_one(system: str, tasks: int, generations: int, lam: int, mu: int, group: int, cap_s: float) -> dict[str, Any]:
    """One system, one repeat, in this process: per-generation persist seconds and the read figures."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench_peers_{system}_"))
    try:
        if system == "evoagent":
            sysobj: Any = EvoagentStore(folder, group)
        elif system in ("deap_pop", "deap_archive"):
            sysobj = DeapCheckpoint(folder, archive=system == "deap_archive")
        elif system == "openevolve":
            sysobj = OpenEvolveDB(folder, tasks * lam * generations)
        else:
            sysobj = OptunaRDB(folder)
        population: dict[str, list[dict[str, Any]]] = {}
        persist: list[float] = []
        cpu: list[float] = []  # CPU seconds of the process (DuckDB's threads included): steadier under load
        for gen in range(generations):
            kids = children(gen, tasks, lam)
            for k in kids:  # a child's parent: the current best member of its task (revise)
                members = population.get(k["task"])
                k["parent"] = members[0].get("id", "") if members else ""
            select(population, kids, mu)
            t0 = time.perf_counter()
            sysobj.persist(gen, kids, population)
            # Systems whose genomes are built by the loop itself time only their own write.
            persist.append(getattr(sysobj, "own_seconds", None) or time.perf_counter() - t0)
            cpu.append(sysobj.own_cpu)
            sysobj.own_seconds = None
            if sum(persist) > cap_s:
                break
        sysobj.close()
        t0 = time.perf_counter()
        answered = sysobj.answer()
        answer_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        sysobj.resume()
        resume_s = time.perf_counter() - t0
        return {"system": system, "generations": len(persist), "first_s": persist[0], "last_s": persist[-1],
                "total_s": sum(persist), "cpu_s": sum(cpu), "bytes": du(folder), "answer_s": answer_s, "resume_s": resume_s,
                "success": round(answered, 4), "trajectories": tasks * lam * len(persist)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check_size(tasks: int, generations: int, lam: int) -> None:
    """Refuse, before any work, a campaign that cannot fit this machine (one line, exit 2)."""
    need_mem = tasks * lam * BYTES_PER_TRAJECTORY * 4  # a generation's children, their records, a copy
    need_disk = tasks * lam * generations * BYTES_PER_TRAJECTORY * 3  # the largest peer (pickled archive)
    avail_mem = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    avail_disk = shutil.disk_usage(tempfile.gettempdir()).free
    if tasks < 1 or generations < 1 or lam < 1:
        sys.exit("error: --tasks, --generations and --lam must be positive")
    if need_mem > avail_mem * 0.5 or need_disk > avail_disk * 0.5:
        print(f"error: {tasks:,} tasks x {lam} children x {generations} generations needs about "
              f"{need_mem / 2**30:.1f} GiB of memory and {need_disk / 2**30:.1f} GiB of disk; this machine has "
              f"{avail_mem / 2**30:.1f} GiB free memory and {avail_disk / 2**30:.1f} GiB free disk (half is the limit)",
              file=sys.stderr)
        sys.exit(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--lam", type=int, default=6)
    ap.add_argument("--mu", type=int, default=4)
    ap.add_argument("--group", type=int, default=2000, help="items per commit_items call (the runner's group commit)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--cap-s", type=float, default=300.0, help="stop a system once its persist time passes this")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one system in this process
    a = ap.parse_args()
    check_size(a.tasks, a.generations, a.lam)
    if a.one:
        print(json.dumps(run_one(a.one, a.tasks, a.generations, a.lam, a.mu, a.group, a.cap_s)))
        return
    systems = [s for s in a.systems.split(",") if s]
    bad = [s for s in systems if s not in SYSTEMS]
    if bad:
        print(f"error: unknown system {bad[0]!r} (have {', '.join(SYSTEMS)})", file=sys.stderr)
        sys.exit(2)
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    for rep in range(a.repeats):
        for s in systems:
            cmd = [sys.executable, __file__, "--one", s, "--tasks", str(a.tasks), "--generations", str(a.generations),
                   "--lam", str(a.lam), "--mu", str(a.mu), "--group", str(a.group), "--cap-s", str(a.cap_s)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"# {s} repeat {rep}: failed: {tail[:200]}", file=sys.stderr)
                continue
            rows[s].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"# {s} repeat {rep}: {rows[s][-1]}", file=sys.stderr)

    def rng(vals: list[float], fmt: str = "{:.2f}") -> str:
        lo, hi = min(vals), max(vals)
        return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}-{fmt.format(hi)}"

    print(f"{a.tasks:,} tasks, lambda={a.lam}, mu={a.mu}, {a.generations} generations, {a.repeats} repeats; "
          f"load {os.getloadavg()[0]:.1f}; ranges over repeats")
    head = ["system", "gens", "trajectories", "persist first s", "persist last s", "persist total s",
            "per gen vs deap_pop", "CPU s/gen", "CPU vs deap_pop", "MB on disk", "answer s", "resume s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    def med(rs: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] / r["generations"] for r in rs)

    base = med(rows["deap_pop"], "total_s") if rows.get("deap_pop") else None
    base_cpu = med(rows["deap_pop"], "cpu_s") if rows.get("deap_pop") else None
    for s in systems:
        rs = rows[s]
        if not rs:
            print(f"| {s} | not run (see stderr) |" + " |" * (len(head) - 2))
            continue
        per_gen, cpu_gen = med(rs, "total_s"), med(rs, "cpu_s")
        ratio = f"{per_gen / base:.2f}x" if base else "-"
        cpu_ratio = f"{cpu_gen / base_cpu:.2f}x" if base_cpu else "-"
        print(f"| {s} | {rng([r['generations'] for r in rs], '{:.0f}')} | {rs[0]['trajectories']:,} | "
              f"{rng([r['first_s'] for r in rs])} | {rng([r['last_s'] for r in rs])} | {rng([r['total_s'] for r in rs], '{:.1f}')} | "
              f"{ratio} | {cpu_gen:.2f} | {cpu_ratio} | {rng([r['bytes'] / 1e6 for r in rs], '{:.0f}')} | {rng([r['answer_s'] for r in rs])} | "
              f"{rng([r['resume_s'] for r in rs])} |")


if __name__ == "__main__":
    main()
