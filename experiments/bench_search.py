"""The ``evoagent bench search`` table of docs/benchmarks-search.md, from nothing.

1. A PRM that never saw the benchmark's databases: a best-of-8 campaign (gold as
   fitness: it only labels) on the tasks of the other 15 databases, with the
   benchmark's policy (own stopping rule, distractors, edits), then
   ``evoagent rm train --labels oracle`` (split by gold-equivalence class).
   Both are kept in ``--out`` and reused (delete them to redo them).
2. ``evoagent bench search`` on the 5 held-out databases (205 tasks), policy with
   ``policy.distractors = 0.2``, at the given budgets, methods, reward models and
   seeds; finished cells are reused (the command resumes).
3. The table, with the machine and the load average before and after.

    python experiments/bench_search.py --out runs/bench --budgets 50 --seeds 1 --rewards prm
    python experiments/bench_search.py --out runs/bench --budgets 50 --seeds 1 --rewards oracle --methods best_of_n
    python experiments/bench_search.py --out runs/bench --budgets 50 --seeds 1 --rewards prm \
        --methods sample,rro,ipr,mcts,evolution --sample 60
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoagent import campaign, launch  # noqa: E402
from evoagent.bench.search import Options, run  # noqa: E402
from evoagent.bench.table import table  # noqa: E402
from evoagent.envs.intercode_sql import HELDOUT_DBS  # noqa: E402

TOML = Path(__file__).with_name("intercode_sql.toml")
POLICY = ["policy.distractors=0.2"]
TRAIN_POLICY = POLICY + ["policy.edit_p=0.2"]  # the PRM also sees edits (the headline campaign draws them)


def prm(out: Path) -> Path:
    """The PRM trained on the other databases (made once, then reused)."""
    from evoagent.rm.train import TrainOptions, train

    model, store = out / "prm", out / "train.duckdb"
    if not store.exists():
        every = sorted({t.meta["db"] for t in launch.select_tasks(campaign.load(TOML))})
        dbs = [d for d in every if d not in HELDOUT_DBS]
        sets = ["tasks.dbs=[" + ", ".join(f'"{d}"' for d in dbs) + "]", "strategy.kind=best_of_n",
                "strategy.best_of_n.n=8", "strategy.best_of_n.allow_gold=true", "budget.generations=0",
                "fitness.reward=env", "concurrency=2", *TRAIN_POLICY]
        launch.start(campaign.load(TOML, sets), str(store))
    if not model.exists():
        got = train(str(store), model, TrainOptions(labels="oracle"))
        print(f"PRM: held-out ROC-AUC {got['heldout']['roc_auc']:.3f}", file=sys.stderr)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    ap.add_argument("--budgets", default="50")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--rewards", default="prm")
    ap.add_argument("--methods", default="", help="comma-separated; default: every method the strategies declare")
    ap.add_argument("--sample", type=int, default=0, help="a seeded sample of that many benchmark tasks (0: all 205)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    load0, t0 = os.getloadavg(), time.perf_counter()
    model = prm(args.out)
    folder = "search" if not args.sample else f"search-sample{args.sample}"  # cells of one task set per folder
    o = Options(out=args.out / folder, budgets=tuple(int(b) for b in args.budgets.split(",")),
                methods=tuple(m for m in args.methods.split(",") if m), rewards=tuple(args.rewards.split(",")), seeds=args.seeds,
                prm=str(model.resolve()), sets=tuple(POLICY), sample=args.sample)
    bench = run(o, note=lambda s: print(s, file=sys.stderr, flush=True))
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; load average "
          f"{load0[0]:.1f} at start, {os.getloadavg()[0]:.1f} at the end; {time.perf_counter() - t0:.0f} s\n")
    print(table(bench))


if __name__ == "__main__":
    main()
