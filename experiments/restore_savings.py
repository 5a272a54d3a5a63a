"""Environment executions of the step searches and MCTS with prefixes restored vs re-executed.

Runs each search twice on the same tasks and seed: once as it runs (the environment's
``snapshot``/``restore`` keep each accepted prefix, ``rollout.begin(start=...)``), once
with the environment wrapped so that it cannot snapshot (every candidate and child
re-executes its prefix, as before issue 20). Checks that both give the same rows
(candidates, simulations, steps, population) and prints the acting executions
(``work_items.env_steps``) of each.

    python experiments/restore_savings.py [--tasks 20] [--env intercode_sql|game24]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evoagent import campaign, launch
from evoagent.testing.runs import run_in_new_store, search_rows, without_restore
from stores import DuckDBStore

SEARCHES = {
    "rro (5 candidates)": ["strategy.kind=rro", "operators.rro.max_candidates=5", "budget.generations=0"],
    "ipr (k = 5)": ["strategy.kind=ipr", "operators.ipr.k=5", "budget.generations=0"],
    "mcts (5 children, rollout, 3 rounds)": ["strategy.kind=mcts", "strategy.mcts.children=5",
                                             "strategy.mcts.rollout=true", "budget.generations=3", "mu=1"],
}
FILES = {"intercode_sql": "intercode_sql.toml", "game24": "game24.toml"}


def _rows(store: DuckDBStore) -> tuple[dict[str, list], int]:
    return search_rows(store), int(store.scalar("SELECT coalesce(sum(env_steps), 0) FROM work_items") or 0)


def run(c: campaign.Campaign, restore: bool, path: Path) -> tuple[dict[str, list], int, float]:
    ctx = launch.build_context(c, launch.select_tasks(c))
    if not restore:
        without_restore(ctx)
    t0 = time.perf_counter()
    _, (rows, used) = run_in_new_store(c, ctx, path, _rows)
    return rows, used, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=20, help="sampled tasks (seeded)")
    ap.add_argument("--env", choices=sorted(FILES), default="intercode_sql")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(f"{args.tasks} tasks of {args.env}, seed {args.seed}, its campaign file's policy, search.reward = oracle\n")
    print("| search | env executions, re-executed | restored | restored / re-executed | same rows | wall s (re-executed / restored) |")
    print("|---|---:|---:|---:|---|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, keys in SEARCHES.items():
            sets = [*keys, f"tasks.sample={args.tasks}", f"seed={args.seed}", "search.reward=oracle"]
            c = campaign.load(ROOT / "experiments" / FILES[args.env], sets)
            name = label.split()[0]
            plain, n_plain, w_plain = run(c, False, Path(tmp) / f"{name}-plain.duckdb")
            kept, n_kept, w_kept = run(c, True, Path(tmp) / f"{name}-kept.duckdb")
            same = "yes" if plain == kept else "NO"
            print(f"| {label} | {n_plain:,} | {n_kept:,} | {n_kept / max(n_plain, 1):.2f} | {same} | "
                  f"{w_plain:.0f} / {w_kept:.0f} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
