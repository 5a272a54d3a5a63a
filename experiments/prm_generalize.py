"""Generalisation without gold: a PRM trained on some databases scores campaigns on others.

1. A campaign over the training databases (every bundled database but the
   test ones; ``search.reward = "oracle"``, ``fitness.reward = "env"``) gives
   labelled steps; ``evoagent rm train --labels outcome`` learns a CPU PRM from
   them. Gold of the training tasks enters through the labels only.
2. The same campaign on tasks of the test databases, three times, differing
   only in what scores it: ``oracle``/``env`` (gold), ``prm``/``prm`` (the
   model alone: no decision reads gold), ``mc``/``mc`` (Monte-Carlo rollouts,
   whose outcome checker reads gold).
3. Per campaign: final success (per task, the member ranked first, judged by
   gold afterwards), a random pick among the same final members (exact
   expectation), and the environment executions it took.

    python experiments/prm_generalize.py --out runs/prm_generalize

Prints one table (markdown). The training campaign's store is kept in --out and reused by
the next run (delete it to run that campaign again); the model and the test stores are new each run.
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoagent import campaign, launch  # noqa: E402
from evoagent.rm.train import TrainOptions, train  # noqa: E402
from stores import open_reader  # noqa: E402

TOML = Path(__file__).with_name("intercode_sql.toml")
TEST_DBS = ["concert_singer", "pets_1", "poker_player", "orchestra", "employee_hire_evaluation"]
SIGNALS = {
    "oracle / env": ["search.reward=oracle", "fitness.reward=env"],
    "prm / prm": ["search.reward=prm", "fitness.reward=prm"],
    "mc / mc": ["search.reward=mc", "fitness.reward=mc", "fitness.aggregate=mean"],
}


def dbs_set(dbs: list[str]) -> str:
    return "tasks.dbs=[" + ", ".join(f'"{d}"' for d in dbs) + "]"


def run(store: Path, sets: list[str]) -> float:
    """A fresh campaign into ``store`` (an old store of that name is removed first)."""
    for old in (store, Path(f"{store}.wal"), Path(f"{store}.snapshot")):
        shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
    started = time.perf_counter()
    out = launch.start(campaign.load(TOML, sets), str(store))
    if out.status != "completed":
        raise SystemExit(f"{store}: {out.status}")
    return time.perf_counter() - started


def figures(store: Path) -> dict[str, float]:
    """Final success of the rank-0 member, a random pick among the final members, env executions."""
    with open_reader(store) as s:
        row = s.query(
            "WITH last AS (SELECT max(generation) AS g FROM population), "
            "m AS (SELECT p.task_id, p.rank, t.solved FROM population p JOIN last ON p.generation = last.g "
            "JOIN (SELECT traj_id, bool_or(solved) AS solved FROM trajectories GROUP BY traj_id) t USING (traj_id)), "
            "per AS (SELECT task_id, bool_or(solved) FILTER (WHERE rank = 0) AS top, avg(solved::INT) AS rnd "
            "FROM m GROUP BY task_id) "
            "SELECT count(*) AS tasks, avg(top::INT) AS top, avg(rnd) AS rnd, "
            "(SELECT max(env_steps) FROM generations) AS env_steps FROM per").to_pylist()[0]
    return {k: float(v) for k, v in row.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/prm_generalize", help="folder for the stores and the model")
    ap.add_argument("--test-dbs", nargs="+", default=TEST_DBS)
    ap.add_argument("--sample", type=int, default=100, help="test tasks (seeded sample of the test databases)")
    ap.add_argument("--generations", type=int, default=3)
    ap.add_argument("--train-generations", type=int, default=2)
    ap.add_argument("--mc-k", type=int, default=3)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    every = {t.meta["db"] for t in launch.select_tasks(campaign.load(TOML))}
    train_dbs = sorted(every - set(args.test_dbs))
    t_train = 0.0
    if not (out / "train.duckdb").exists():  # kept between runs: delete it to run that campaign again
        t_train = run(out / "train.duckdb", [dbs_set(train_dbs), f"budget.generations={args.train_generations}"])
    shutil.rmtree(out / "prm", ignore_errors=True)
    got = train(str(out / "train.duckdb"), out / "prm", TrainOptions(labels="outcome"))
    print(f"training campaign: {len(train_dbs)} databases, {t_train:.0f} s; PRM: held-out ROC-AUC "
          f"{got['heldout']['roc_auc']:.3f}, trained in {got['seconds']['total']:.1f} s", flush=True)
    test = [dbs_set(args.test_dbs), f"tasks.sample={args.sample}", f"budget.generations={args.generations}",
            f"rewards.prm.path={(out / 'prm').resolve()}", f"rewards.mc.k={args.mc_k}"]
    rows = {}
    for name, sets in SIGNALS.items():
        secs = run(out / f"test-{name.split(' ')[0]}.duckdb", test + sets)
        rows[name] = {**figures(out / f"test-{name.split(' ')[0]}.duckdb"), "seconds": secs}
        print(f"{name}: {rows[name]}", flush=True)
    oracle, mc = rows["oracle / env"], rows["mc / mc"]
    print(f"\ntest databases: {', '.join(args.test_dbs)} ({int(oracle['tasks'])} tasks), "
          f"{args.generations} generations, mc k={args.mc_k}; {platform.machine()}, Python {platform.python_version()}\n")
    print("| campaign (search / fitness) | final success | vs oracle | random pick among its members | env executions | vs mc | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| `{name}` | {100 * r['top']:.1f}% | {r['top'] / oracle['top']:.2f}x | {100 * r['rnd']:.1f}% | "
              f"{int(r['env_steps']):,} | {r['env_steps'] / mc['env_steps']:.2f}x | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
