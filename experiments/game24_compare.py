"""Game of 24, puzzles 901..1000: success and cost of each registered strategy x offline policy x
reward model, and the judgment question: how well each reward model ranks states.

Every campaign is experiments/game24.toml with ``strategy.kind``, ``policy.kind`` and
``search.reward = fitness.reward = R`` set (so with ``recorded`` no decision reads gold;
success is judged by gold afterwards, as always: per task, the member ranked first).
Strategies: those of best_of_n, evolution, rro, ipr, mcts that are registered. Columns:
success (last round), env executions (work items' env steps, reward-model rollouts
included), policy calls (the offline policies' own count), reward-model scores (step scores
its source wrote to ``rewards``; the oracle's come free with each executed step) and wall seconds (a shared, loaded 2-core machine: compare
within one run only).

    python experiments/game24_compare.py [--rewards oracle recorded] [--policies replay enumerate]
        [--ranks 901 1000] [--set rewards.http.url=http://127.0.0.1:8000]   # e.g. a served learned PRM
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evoagent import campaign, launch, registry
from evoagent.envs.game24.policies import CALLS
from stores import SnapshotStore

STRATEGIES = ("best_of_n", "evolution", "rro", "ipr", "mcts")
ROUNDS = {"evolution": 3, "mcts": 3}  # budget.generations; the per-task strategies run one round


def run_one(strategy: str, policy: str, reward: str, ranks: list[int], extra: list[str], folder: Path) -> dict:
    sets = [f"strategy.kind={strategy}", f"policy.kind={policy}", f"search.reward={reward}",
            f"fitness.reward={reward}", f"tasks.ranks={ranks}", f"budget.generations={ROUNDS.get(strategy, 0)}",
            "strategy.best_of_n.allow_gold=true",  # the oracle rows pick with gold, by design: they are the ceiling
            *extra]
    c = campaign.load(ROOT / "experiments" / "game24.toml", sets)
    store = folder / f"{strategy}-{policy}-{reward}.duckdb"
    calls = CALLS[policy]
    t0 = time.perf_counter()
    out = launch.start(c, str(store))
    wall = time.perf_counter() - t0
    r = SnapshotStore(store)
    success = r.scalar("SELECT success_rate FROM generations WHERE status = 'committed' "
                       "ORDER BY generation DESC LIMIT 1")
    return {"strategy": strategy, "policy": policy, "reward": reward, "status": out.status,
            "success": success, "env": r.scalar("SELECT coalesce(sum(env_steps), 0) FROM work_items"),
            "calls": CALLS[policy] - calls,
            "scores": r.scalar("SELECT count(*) FROM rewards WHERE step_idx IS NOT NULL AND "
                               "split_part(reward_source, '(', 1) = ?", [reward]),
            "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rewards", nargs="+", default=["oracle", "recorded"])
    ap.add_argument("--policies", nargs="+", default=["replay", "enumerate"])
    ap.add_argument("--strategies", nargs="+", default=[s for s in STRATEGIES if s in registry.parts("strategy")])
    ap.add_argument("--ranks", nargs=2, type=int, default=[901, 1000])
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    print(f"puzzles {args.ranks[0]}..{args.ranks[1]}; strategies: {', '.join(args.strategies)}", flush=True)
    print("| strategy | policy | search/fitness reward | success | env executions | policy calls "
          "| reward-model scores | wall s |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in args.strategies:
            for policy in args.policies:
                for reward in args.rewards:
                    row = run_one(strategy, policy, reward, args.ranks, args.extra, Path(tmp))
                    print(f"| {strategy} | {policy} | {reward} | {100 * row['success']:.0f}% | {row['env']:,} | "
                          f"{row['calls']:,} | {row['scores']:,} | {row['wall']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
