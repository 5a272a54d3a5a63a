"""Headline (issue 20): gold-free evolution with SQL edits on held-out databases, against the pool's bound.

Campaigns on the 205 tasks of the 5 databases a PRM never saw (trained on the
other 15 by ``experiments/bench_search.py``'s first step, or any ``--prm``):

1. ``prm + edits``: ``search.reward = fitness.reward = "prm"`` (no decision reads
   gold), the ``edit`` operator on (``operators.edit.rate``) and the replay policy
   proposing edits of executed queries (``policy.edit_p``).
2. ``oracle + edits``: the same with gold as both signals: what the edits can
   reach when the ranking is perfect (a ceiling, named so).
3. ``prm, no edits``: the same as 1 without edits: the recorded pool only.

Per campaign, judged by gold afterwards: final success (each task's rank-0
member), the replay pool's bound on those tasks (some recorded action solves it;
``meta.upper_bound``), tasks solved anywhere in the store, and tasks solved by SQL
no recording contains (``NOVEL_SQL`` below: the answer's thought says so), both as
the rank-0 answer and anywhere. Prints one markdown table with machine and load.

    python experiments/novel_sql.py --prm runs/bench/prm --out runs/novel_sql
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoagent import campaign, launch  # noqa: E402
from stores import open_reader  # noqa: E402

TOML = Path(__file__).with_name("intercode_sql.toml")
HELDOUT = ["concert_singer", "pets_1", "poker_player", "orchestra", "employee_hire_evaluation"]
EDITS = ["operators.edit.rate=0.3", "policy.edit_p=0.15"]
CAMPAIGNS = {
    "prm + edits": ["search.reward=prm", "fitness.reward=prm", *EDITS],
    "oracle + edits": ["search.reward=oracle", "fitness.reward=env", *EDITS],
    "prm, no edits": ["search.reward=prm", "fitness.reward=prm"],
}

# The SQL of the figures (docs/benchmarks-search.md shows it). An answer is a trajectory's last step.
NOVEL_SQL = """
WITH answers AS (
  SELECT t.task_id, t.traj_id, t.solved, s.thought LIKE 'novel SQL%' AS novel
  FROM trajectories t JOIN steps s ON s.traj_id = t.traj_id AND s.idx = t.n_steps - 1),
final AS (
  SELECT task_id, traj_id FROM population
  WHERE rank = 0 AND generation = (SELECT max(generation) FROM population))
SELECT task_id,
  bool_or(a.solved AND a.traj_id = f.traj_id) AS final_solved,
  bool_or(a.solved AND a.novel AND a.traj_id = f.traj_id) AS final_novel,
  bool_or(a.solved) AS found,
  bool_or(a.solved AND a.novel) AS found_novel
FROM final f JOIN answers a USING (task_id) GROUP BY task_id
"""


def run(store: Path, sets: list[str]) -> float:
    for old in (store, Path(f"{store}.wal"), Path(f"{store}.snapshot")):
        shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
    t0 = time.perf_counter()
    out = launch.start(campaign.load(TOML, sets), str(store))
    if out.status != "completed":
        raise SystemExit(f"{store}: {out.status}")
    return time.perf_counter() - t0


def figures(store: Path) -> dict[str, float]:
    """Counts of tasks (see the module docstring); ``*_beyond``: of those, tasks the pool cannot solve."""
    with open_reader(store) as s:
        per = s.query(NOVEL_SQL).to_pylist()
        bound = json.loads(s.get_meta("upper_bound") or "{}")
        env = s.scalar("SELECT sum(env_steps) FROM work_items")
    out: dict[str, float] = {"tasks": len(per), "bound": sum(bool(bound.get(r["task_id"])) for r in per), "env": env}
    for key in ("final_solved", "final_novel", "found", "found_novel"):
        out[key] = sum(bool(r[key]) for r in per)
        out[f"{key}_beyond"] = sum(bool(r[key]) and not bound.get(r["task_id"]) for r in per)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prm", required=True, help="a PRM trained on the other databases")
    ap.add_argument("--out", default="runs/novel_sql")
    ap.add_argument("--generations", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=None, help="campaign labels to run")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = ["tasks.dbs=[" + ", ".join(f'"{d}"' for d in HELDOUT) + "]", f"budget.generations={args.generations}",
              f"rewards.prm.path={Path(args.prm).resolve()}", "concurrency=2"]
    load = os.getloadavg()
    rows = {}
    for label, sets in CAMPAIGNS.items():
        if args.only is not None and label not in args.only:
            continue
        store = out / (label.replace(" ", "").replace("+", "_").replace(",", "_") + ".duckdb")
        secs = run(store, common + sets) if not store.exists() or args.only is not None else 0.0
        rows[label] = {**figures(store), "seconds": secs}
        print(f"{label}: {rows[label]}", file=sys.stderr, flush=True)
    print(f"held-out databases: {', '.join(HELDOUT)}; {args.generations} generations, mu 4, lambda 6; "
          f"edits: {', '.join(EDITS)}; {platform.machine()}, {os.cpu_count()} CPUs, load at start "
          f"{load[0]:.1f} / end {os.getloadavg()[0]:.1f}\n")
    print("| campaign (search / fitness) | final success | pool bound | final answers solved by novel SQL "
          "| solved anywhere | by novel SQL | solved beyond the bound (final / anywhere) | env executions | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in rows.items():
        n = r["tasks"]
        print(f"| {label} | {100 * r['final_solved'] / n:.1f}% ({r['final_solved']}) | "
              f"{100 * r['bound'] / n:.1f}% ({r['bound']}) | {r['final_novel']} | "
              f"{100 * r['found'] / n:.1f}% ({r['found']}) | {r['found_novel']} | "
              f"{r['final_solved_beyond']} / {r['found_beyond']} | {int(r['env'] or 0):,} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
