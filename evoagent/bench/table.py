"""The ``bench search`` table: success on three task sets, AUC over log B, paired bootstrap intervals.

Read from the ``bench`` table only (``evoagent.bench.search``), so it is the same
from any copy of ``bench.duckdb``:

- success: per task, the mean over seeds of "the rank-0 member is solved" (gold,
  afterwards); reported on all tasks, on tasks the recorded pool can solve
  (``pool_solvable``: some recorded action solves it), and on non-trivial tasks
  (pool-solvable and not solved by every one of the reference cell's 8 samples).
- a random pick (methods declared with ``random_pick``): the same members, each
  equally likely to be the answer (``random_pick``, exact expectation), from the
  method's ``oracle`` cell at that budget (else its first reward model's).
- AUC: the area under success (all tasks) against log B, divided by the area of
  the bound (the pool-solvable share at every B): 1.0 means the bound at every
  budget. With one budget it is success / bound.
- intervals: 95% paired bootstrap over tasks (the same 2,000 resamples of task
  ids for every row, seed 0), on the per-task means over seeds.
- comparisons: each method's row minus the rows of the methods it declares itself
  compared with (``BenchMethod.against``), at the same reward model and budget.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESAMPLES = 2000
RANDOM = "random pick"  # the reward column of a random pick's row

SQL_PER_TASK = """
SELECT method, reward, budget, task_id, avg(solved::INT) AS solved, avg(random_pick) AS random_pick,
       avg(env_executions) AS used, bool_or(pool_solvable) AS pool_solvable, count(*) AS seeds,
       string_agg(DISTINCT status, ', ') AS status
FROM bench GROUP BY ALL ORDER BY ALL
"""


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def bootstrap(values: dict[str, float], tasks: Sequence[str], draws: list[list[int]]) -> tuple[float, float]:
    """95% interval of the mean of ``values`` over ``tasks``, under the shared resamples ``draws``."""
    if not tasks:
        return math.nan, math.nan
    means = sorted(_mean([values[tasks[i]] for i in d]) for d in draws)
    return means[int(0.025 * len(means))], means[int(0.975 * len(means)) - 1]


def load(bench: Path) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """Per (method, reward, budget, task) rows, and which tasks are trivial (reference cell)."""
    import duckdb

    con = duckdb.connect(str(bench), read_only=True)
    try:
        rows = [dict(zip([d[0] for d in con.description], r)) for r in con.execute(SQL_PER_TASK).fetchall()]
    finally:
        con.close()
    trivial = {r["task_id"]: r["random_pick"] >= 1.0 for r in rows if r["method"] == "reference"}
    return [r for r in rows if r["method"] != "reference"], trivial


def table(bench: Path) -> str:
    """The markdown table (and the comparisons the issue asks for) of ``bench.duckdb``."""
    rows, trivial = load(bench)
    if not rows:
        return "(no finished cells yet)"
    tasks = sorted({r["task_id"] for r in rows})
    solvable = sorted({r["task_id"] for r in rows if r["pool_solvable"]})
    hard = [t for t in solvable if not trivial.get(t, False)]
    rng = random.Random(0)
    sets = {"all": tasks, "solvable": solvable, "non-trivial": hard}
    draws = {k: [[rng.randrange(len(v)) for _ in v] for _ in range(RESAMPLES)] if v else [] for k, v in sets.items()}
    series: dict[tuple[str, str, int], dict[str, float]] = {}
    extra: dict[tuple[str, str, int], dict[str, Any]] = {}
    declared = _declared()
    picked = {}  # (method, budget) -> the reward model whose cell gives the random pick
    for r in rows:
        if getattr(declared.get(r["method"]), "random_pick", False):
            have = picked.get((r["method"], r["budget"]))
            if have != "oracle" and (have is None or r["reward"] == "oracle" or r["reward"] < have):
                picked[(r["method"], r["budget"])] = r["reward"]
    for r in rows:
        key = (r["method"], r["reward"], r["budget"])
        series.setdefault(key, {})[r["task_id"]] = float(r["solved"])
        e = extra.setdefault(key, {"used": [], "status": set(), "seeds": r["seeds"]})
        e["used"].append(float(r["used"]))
        e["status"].add(r["status"])
        if picked.get((r["method"], r["budget"])) == r["reward"]:
            rk = (r["method"], RANDOM, r["budget"])
            series.setdefault(rk, {})[r["task_id"]] = float(r["random_pick"])
            extra.setdefault(rk, {"used": [], "status": set(), "seeds": r["seeds"]})["used"].append(float(r["used"]))
            extra[rk]["status"].add(r["status"])
    bound = len(solvable) / len(tasks)
    budgets = sorted({k[2] for k in series})
    lines = [f"{len(tasks)} tasks ({len(solvable)} pool-solvable, {len(hard)} non-trivial: "
             f"{sum(trivial.get(t, False) for t in solvable)} solved by all 8 reference samples); "
             f"bound (pool-solvable share) {100 * bound:.1f}%; 95% paired bootstrap over tasks\n",
             "| method | reward | B | success (all) | pool-solvable | non-trivial | AUC/bound | executions per task | seeds |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key in sorted(series, key=lambda k: (k[2], k[0], k[1])):
        vals, e = series[key], extra[key]
        cells = []
        for name, ts in sets.items():
            if not all(t in vals for t in ts):
                cells.append("incomplete")
                continue
            lo, hi = bootstrap(vals, ts, draws[name])
            cells.append(f"{100 * _mean([vals[t] for t in ts]):.1f}% [{100 * lo:.0f}, {100 * hi:.0f}]")
        used = _mean(e["used"])
        flag = f" (over B: {used / key[2]:.2f}x)" if used > 1.1 * key[2] else ""
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {' | '.join(cells)} | {auc(series, key, budgets, bound)} | "
                     f"{used:.1f}{flag} | {e['seeds']} |")
    lines.append("")
    lines += comparisons(series, sets["non-trivial"], draws["non-trivial"], declared)
    return "\n".join(lines)


def auc(series: dict[tuple[str, str, int], dict[str, float]], key: tuple[str, str, int], budgets: list[int],
        bound: float) -> str:
    """Area under success vs log B up to this row's budget, over the bound's area ("-" at the first B)."""
    method, reward, b = key
    pts = [(math.log(x), _mean(list(series[(method, reward, x)].values())))
           for x in budgets if x <= b and (method, reward, x) in series]
    if bound <= 0:
        return "-"
    if len(pts) == 1:
        return f"{pts[0][1] / bound:.2f}"
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(pts, pts[1:]))
    return f"{area / ((pts[-1][0] - pts[0][0]) * bound):.2f}"


def _diff(series: dict[tuple[str, str, int], dict[str, float]], a: tuple[str, str, int],
          b: tuple[str, str, int], tasks: list[str], draws: list[list[int]]) -> str:
    if a not in series or b not in series or not tasks:
        return "not run"
    d = {t: series[a][t] - series[b][t] for t in tasks if t in series[a] and t in series[b]}
    if len(d) != len(tasks):
        return "not run on every task"
    lo, hi = bootstrap(d, tasks, draws)
    return f"{100 * _mean(list(d.values())):+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _declared() -> dict[str, Any]:
    """The methods the strategies declare (``evoagent.bench.search.methods``)."""
    from evoagent.bench.search import methods

    return methods()


def comparisons(series: dict[tuple[str, str, int], dict[str, float]], tasks: list[str],
                draws: list[list[int]], declared: dict[str, Any]) -> list[str]:
    """Paired differences on non-trivial tasks: each row against the methods it declares itself
    compared with (``against``) and, where it declares one, its random pick."""
    out = ["Paired differences on non-trivial tasks (95% bootstrap):", ""]
    order = {m: i for i, m in enumerate(declared)}
    for b in sorted({k[2] for k in series}):
        for m, r, _ in sorted((k for k in series if k[2] == b and k[0] in declared and k[1] != RANDOM),
                              key=lambda k: (order[k[0]], k[1])):
            d = declared[m]
            others = [(a, r if getattr(declared.get(a), "scored", True) else "-") for a in d.against]
            others += [(m, RANDOM)] if d.random_pick else []
            for a, ar in others:
                if (a, ar, b) in series:
                    label = f"{m} {r} - {a}" + ("" if ar == "-" else f" {ar}")
                    out.append(f"- B={b}: {label}: {_diff(series, (m, r, b), (a, ar, b), tasks, draws)}")
    return out


__all__ = ["SQL_PER_TASK", "auc", "bootstrap", "load", "table"]
