"""RRO against IPR in a bench folder: candidates a step, how submits fare, executions per task.

Reads the ``rro`` and ``ipr`` cells of an ``evoagent bench search --out DIR`` folder (their stores
in ``DIR/cells/``, pool-solvable tasks from each store's ``upper_bound``) and prints, per cell:

- cand/step: candidates sampled per searched step (``search_steps``), on the tasks the recorded
  pool can solve and on all tasks (the RRO paper reports 1.64 a step);
- p after step 0: the share of candidates after step 0 that rose over their bar (first-rising
  sampling of at most k takes ``(1 - (1 - p)^k) / p`` a step); submits: sampled, the share that
  rose, the share taken, the share whose answer in hand was wrong, and their mean value and bar
  split by whether the answer in hand was
  right (the submit row's ``env_reward`` is that episode's outcome: for judging, never used to decide);
- trajectories and executions per task (acting plus scoring: ``work_items.env_steps``), and for
  RRO its executions as a share of IPR's with the same reward model, budget and seed;
- then, from ``DIR/bench.duckdb``, RRO at a smaller budget against IPR at a larger one (the RRO
  paper's claim is RRO >= IPR at <= 40% of IPR's executions): success on non-trivial tasks, the
  paired difference with the bench's own bootstrap (the same 2,000 resamples), executions.

With ``--against DIR2`` (a folder with the same reference cell, e.g. run with another
``operators.rro.*`` setting), also the paired difference of each RRO row of DIR minus DIR2's.

    python experiments/step_search_budget.py DIR [--against DIR2]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CELL = re.compile(r"^(rro|ipr)-(.+)-B(\d+)-s(\d+)\.duckdb$")
PER_STEP = ("SELECT round(avg(candidates), 2) FROM search_steps WHERE task_id IN (SELECT unnest(?::VARCHAR[]))")
SUBMITS = ("SELECT count(*) AS n, avg((env_reward < 1)::INT) AS wrong, avg((reward > prev_reward)::INT) AS rose, "
           "avg(accepted::INT) AS taken, "
           "avg(reward) FILTER (WHERE env_reward >= 1) AS v_right, avg(prev_reward) FILTER (WHERE env_reward >= 1) "
           "AS bar_right, avg(reward) FILTER (WHERE env_reward < 1) AS v_wrong, "
           "avg(prev_reward) FILTER (WHERE env_reward < 1) AS bar_wrong, "
           "avg((reward > prev_reward)::INT) FILTER (WHERE env_reward >= 1) AS rose_right, "
           "avg((reward > prev_reward)::INT) FILTER (WHERE env_reward < 1) AS rose_wrong "
           "FROM candidates WHERE action = 'submit'")


def measure(store: Path) -> dict[str, Any]:
    """One cell's figures (SQL over its store)."""
    from stores import open_reader

    with open_reader(store) as s:
        bound = json.loads(s.get_meta("upper_bound") or "{}")
        every = [r["task_id"] for r in s.query("SELECT DISTINCT task_id FROM work_items").to_pylist()]
        solvable = [t for t in every if bound.get(t, not bound)]
        out = {"all": s.scalar(PER_STEP, [every]), "solvable": s.scalar(PER_STEP, [solvable]),
               "p": s.scalar("SELECT avg((reward > prev_reward)::INT) FROM candidates WHERE step_idx > 0"),
               "tasks": len(every), "n_solvable": len(solvable),
               **s.query(SUBMITS).to_pylist()[0]}
        out["executions"] = s.scalar("SELECT sum(coalesce(env_steps, 0)) / count(DISTINCT task_id) FROM work_items")
        out["trajectories"] = s.scalar("SELECT count(*) / count(DISTINCT task_id) FROM work_items "
                                       "WHERE status = 'done'")
    return out


def _f(x: Any, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="an `evoagent bench search --out` folder")
    ap.add_argument("--against", type=Path, help="another folder: RRO here minus RRO there, paired")
    a = ap.parse_args(argv)
    from evoagent import escaping

    escaping.install()  # methods and reward sources come from bench.duckdb: shown escaped on a terminal
    cells = {}
    for path in sorted((a.folder / "cells").glob("*.duckdb")):
        m = CELL.match(path.name)
        if m:
            cells[m.groups()] = measure(path)
    if not cells:
        print(f"no rro or ipr cells in {a.folder / 'cells'}", file=sys.stderr)
        return 2
    print("| cell | cand/step (pool-solvable) | cand/step (all) | p after step 0 | submits: sampled, rose, "
          "taken, wrong | submit value / bar, answer right | answer wrong | trajectories per task | executions "
          "per task | RRO / IPR executions |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (method, reward, budget, seed), m in cells.items():
        ipr = cells.get(("ipr", reward, budget, seed))
        share = f"{100 * m['executions'] / ipr['executions']:.0f}%" if method == "rro" and ipr else "-"
        print(f"| {method}-{reward}-B{budget}-s{seed} | {_f(m['solvable'])} | {_f(m['all'])} | {_f(m['p'], '.3f')} | "
              f"{m['n']:,}, {_f(m['rose'], '.1%')}, {_f(m['taken'], '.1%')}, {_f(m['wrong'], '.1%')} | "
              f"{_f(m['v_right'], '.3f')} / {_f(m['bar_right'], '.3f')} ({_f(m['rose_right'], '.1%')} rose) | "
              f"{_f(m['v_wrong'], '.3f')} / {_f(m['bar_wrong'], '.3f')} ({_f(m['rose_wrong'], '.1%')} rose) | "
              f"{_f(m['trajectories'], '.1f')} | "
              f"{_f(m['executions'], '.1f')} | {share} |")
    print()
    for line in across_budgets(a.folder / "bench.duckdb") if (a.folder / "bench.duckdb").exists() else []:
        print(line)
    for line in across_folders(a.folder / "bench.duckdb", a.against / "bench.duckdb") if a.against else []:
        print(line)
    return 0


def _series(bench: Path) -> tuple[dict[tuple[str, str, int], dict[str, float]], dict[tuple[str, str, int], list[float]],
                                  list[list[list[int]]], list[str]]:
    """Per (method, reward, B): success per task and executions; the bench's draws; non-trivial tasks."""
    import random

    from evoagent.bench.table import RESAMPLES, load

    rows, trivial = load(bench)
    tasks = sorted({r["task_id"] for r in rows})
    solvable = sorted({r["task_id"] for r in rows if r["pool_solvable"]})
    hard = [t for t in solvable if not trivial.get(t, False)]
    rng = random.Random(0)  # the draws of evoagent.bench.table.table, in its order: all, solvable, non-trivial
    draws = [[[rng.randrange(len(v)) for _ in v] for _ in range(RESAMPLES)] if v else [] for v in (tasks, solvable, hard)]
    series: dict[tuple[str, str, int], dict[str, float]] = {}
    used: dict[tuple[str, str, int], list[float]] = {}
    for r in rows:
        series.setdefault((r["method"], r["reward"], r["budget"]), {})[r["task_id"]] = float(r["solved"])
        used.setdefault((r["method"], r["reward"], r["budget"]), []).append(float(r["used"]))
    return series, used, draws, hard


def across_folders(here: Path, there: Path) -> list[str]:
    """RRO in one folder minus RRO in another, same reward model and B (the same tasks): paired bootstrap."""
    from evoagent.bench.table import _diff

    mine, _, draws, hard = _series(here)
    theirs, _, _, hard_there = _series(there)
    if hard != hard_there:
        return [f"{here.parent} and {there.parent} differ in their non-trivial tasks: not compared"]
    out = []
    for key in sorted(k for k in mine if k[0] == "rro" and k in theirs):
        both = {("here", *key[1:]): mine[key], ("there", *key[1:]): theirs[key]}
        out.append(f"- rro {key[1]} B={key[2]}: {here.parent.name} - {there.parent.name} (non-trivial tasks): "
                   f"{_diff(both, ('here', *key[1:]), ('there', *key[1:]), hard, draws[2])}")
    return out


def across_budgets(bench: Path) -> list[str]:
    """RRO at B1 against IPR at B2 > B1, same reward model: the bench's paired bootstrap on non-trivial tasks."""
    from evoagent.bench.table import _diff

    series, used, draws, hard = _series(bench)
    out = []
    for (m, reward, b1) in sorted(series):
        for (m2, reward2, b2) in sorted(series):
            if m == "rro" and m2 == "ipr" and reward == reward2 and b1 < b2:
                a, b = (m, reward, b1), (m2, reward2, b2)
                share = sum(used[a]) / sum(used[b])
                out.append(f"- rro {reward} B={b1} - ipr {reward} B={b2} (non-trivial tasks): "
                           f"{_diff(series, a, b, hard, draws[2])}, at {100 * share:.0f}% of IPR's executions "
                           f"({sum(used[a]) / len(used[a]):.1f} against {sum(used[b]) / len(used[b]):.1f} per task)")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
