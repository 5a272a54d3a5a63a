"""Search strategies side by side: one engine, tasks, policy, seed and reward model.

Runs each registered strategy as its own campaign (a fresh store each) on the
same sampled InterCode-SQL tasks, with the replay policy, the same seed and the
same reward model as both signals (``search.reward`` = ``fitness.reward``,
``fitness.aggregate = "mean"``): sample (best-of-1), best-of-N, SE-Agent
evolution, IPR (k candidates a step), RRO, and MCTS when it is registered. Then
prints one row per strategy:

- success: per task, the member the strategy ranks first, judged by gold afterwards;
- reward: the mean gold outcome of those answers;
- cand/step: candidates sampled per searched step (``search_steps``; "-": no step search);
- env acting / scoring: environment executions of the items themselves, and those the
  reward model spent scoring (Monte-Carlo rollouts);
- policy acting / scoring: ``next_action`` calls, the same split;
- scores: reward-model scores computed (rows the model wrote to ``rewards``);
- rising: share of the answers' steps whose search value rose over the step before
  (step 0: over 0), RRO's "rising" measure, the same for every strategy;
- accepted rose: share of the searched steps whose taken candidate rose over the bar
  (``search_steps.accepted_rose``; strategies with step search only);
- wall: seconds of the campaign.

Everything but the policy-call counts and wall time is SQL on the stores.

    python experiments/search_compare.py --tasks 100 --k 3 [--keep DIR]
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evoagent import campaign, launch, registry
from evoagent.errors import UserError
from stores import DuckDBStore

# name -> overrides of experiments/intercode_sql.toml (besides tasks, seed and reward model)
STRATEGIES: dict[str, list[str]] = {
    "sample (best-of-1)": ["strategy.kind=best_of_n", "strategy.best_of_n.n=1", "budget.generations=0"],
    "best-of-N": ["strategy.kind=best_of_n", "budget.generations=0"],
    "SE-Agent evolution": ["strategy.kind=evolution"],
    "IPR": ["strategy.kind=ipr", "budget.generations=0"],
    "RRO": ["strategy.kind=rro", "budget.generations=0"],
    "MCTS": ["strategy.kind=mcts"],
}

SQL = {
    "success": "SELECT success_rate FROM generations WHERE status = 'committed' ORDER BY generation DESC LIMIT 1",
    "reward": "SELECT avg(t.outcome_reward) FROM population p JOIN (SELECT traj_id, any_value(outcome_reward) "
              "AS outcome_reward FROM trajectories GROUP BY traj_id) t USING (traj_id) WHERE p.rank = 0 "
              "AND p.generation = (SELECT max(generation) FROM population)",
    "cand_per_step": "SELECT avg(candidates) FROM search_steps",
    "accepted_rose": "SELECT avg(accepted_rose::INT) FROM search_steps WHERE accepted_reward IS NOT NULL",
    "full": "SELECT avg((candidates >= ?)::INT) FROM search_steps",
    "env_total": "SELECT sum(env_steps) FROM work_items",
    "scores": "SELECT count(*) FROM rewards WHERE reward_source = ? AND step_idx IS NOT NULL",
    "rising": "WITH a AS (SELECT traj_id FROM population WHERE rank = 0 AND generation = "
              "(SELECT max(generation) FROM population)), s AS (SELECT DISTINCT traj_id, idx, process_reward "
              "FROM steps WHERE traj_id IN (SELECT traj_id FROM a)), d AS (SELECT process_reward > "
              "coalesce(lag(process_reward) OVER (PARTITION BY traj_id ORDER BY idx), 0) AS rose FROM s) "
              "SELECT avg(rose::INT) FROM d",
}


class CountingPolicy:
    """The campaign's policy, counting ``next_action`` calls: acting, or scoring (reward-model threads)."""

    def __init__(self, inner: Any):
        self.inner, self.name = inner, inner.name
        self.acting, self.scoring = itertools.count(), itertools.count()
        self._lock = threading.Lock()
        self.pool = getattr(inner, "pool", None)  # the replay pool (the upper bound reads it)
        if self.pool is None:
            del self.pool

    def next_action(self, *args: Any) -> Any:
        with self._lock:
            next(self.scoring if threading.current_thread().name.startswith("mc") else self.acting)
        return self.inner.next_action(*args)


def run_one(label: str, overrides: Sequence[str], store: Path, budget: int) -> dict[str, Any]:
    """One campaign into ``store``; its row of the table."""
    made: list[Any] = []
    real = launch.build_context

    def counted(*args: Any, **kwargs: Any) -> Any:
        ctx = real(*args, **kwargs)
        ctx.policy = CountingPolicy(ctx.policy)
        made.append(ctx)
        return ctx

    c = campaign.load(ROOT / "experiments" / "intercode_sql.toml", list(overrides))
    launch.build_context = counted  # type: ignore[assignment]
    try:
        t0 = time.perf_counter()
        out = launch.start(c, str(store))
        wall = time.perf_counter() - t0
    finally:
        launch.build_context = real  # type: ignore[assignment]
    ctx = made[-1]
    scorer = ctx.search.scorer
    with DuckDBStore(store) as s:
        params = {"scores": [scorer.source], "full": [budget]}
        row = {k: s.scalar(q, params.get(k)) for k, q in SQL.items()}
        bound = json.loads(s.get_meta("upper_bound") or "{}")  # task -> can the policy's pool solve it
        solvable = [[t for t, ok in bound.items() if ok]]
        row["cand_per_step_solvable"] = s.scalar(
            "SELECT avg(candidates) FROM search_steps WHERE task_id IN (SELECT unnest(?))", solvable)
        # the chance that one sampled candidate rises over its step's bar (or reaches the ceiling):
        # first-rising sampling of at most K candidates then takes (1 - (1 - p)^K) / p a step
        row["p_rise_solvable"] = s.scalar(
            "SELECT avg((rising OR (accepted AND reward >= 1.0))::INT) FROM candidates "
            "WHERE task_id IN (SELECT unnest(?))", solvable)
    row.update(label=label, status=out.status, wall=wall, env_scoring=scorer.stats.env_steps, budget=budget,
               policy_acting=next(ctx.policy.acting), policy_scoring=next(ctx.policy.scoring))
    row["env_acting"] = int(row["env_total"] or 0) - row["env_scoring"]
    return row


def _fmt(row: dict[str, Any]) -> str:
    cps = "-" if row["cand_per_step"] is None else f"{row['cand_per_step']:.2f}"
    rising = "-" if row["rising"] is None else f"{100 * row['rising']:.1f}%"
    rose = "-" if row["accepted_rose"] is None else f"{100 * row['accepted_rose']:.1f}%"
    return (f"| {row['label']} | {100 * row['success']:.1f}% | {row['reward']:.3f} | {cps} | "
            f"{row['env_acting']:,} / {row['env_scoring']:,} | {row['policy_acting']:,} / {row['policy_scoring']:,} | "
            f"{row['scores']:,} | {rising} | {rose} | {row['wall']:.0f} s |")


def _p_for(per_step: float, k: int) -> float:
    """The rise chance p at which (1 - (1 - p)^k) / p = per_step (bisection; decreasing in p)."""
    lo, hi = 1e-9, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (1 - (1 - mid) ** k) / mid > per_step else (lo, mid)
    return hi


def goals(rows: dict[str, dict[str, Any]]) -> list[str]:
    """The issue's goals, each marked met or not."""
    out = []
    rro, ipr, mcts = rows.get("RRO"), rows.get("IPR"), rows.get("MCTS")
    if rro:
        v = rro["cand_per_step"]
        w = rro["cand_per_step_solvable"]
        w_text = "-" if w is None else f"{w:.2f} -> {'met' if w <= 1.64 else 'not met'}"
        out.append(f"RRO <= 1.64 candidates per step on tasks the policy's pool can solve: {w_text}; "
                   f"on all tasks: {v:.2f} (steps where none rose before the last allowed candidate: "
                   f"{100 * rro['full']:.1f}%)")
        p = rro["p_rise_solvable"]
        if p:
            k = rro["budget"]
            out.append(f"  a candidate rises with p = {p:.3f} on those tasks: first-rising sampling of at most {k} "
                       f"takes (1 - (1 - p)^{k}) / p = {(1 - (1 - p) ** k) / p:.2f} a step; 1.64 needs p >= "
                       f"{_p_for(1.64, k):.2f}")
    if rro and ipr:
        for kind in ("acting", "scoring"):
            share = rro[f"env_{kind}"] / max(ipr[f"env_{kind}"], 1)
            ok = rro["reward"] >= ipr["reward"] and share <= 0.40
            out.append(f"RRO reward >= IPR's ({rro['reward']:.3f} vs {ipr['reward']:.3f}) at <= 40% of IPR's "
                       f"{kind} env executions ({100 * share:.0f}%) -> {'met' if ok else 'not met'}")
    if mcts and ipr:
        ok = mcts["success"] >= ipr["success"]
        out.append(f"MCTS success >= IPR's ({100 * mcts['success']:.1f}% vs {100 * ipr['success']:.1f}%) -> "
                   f"{'met' if ok else 'not met'}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=100, help="sampled InterCode-SQL tasks (seeded)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--reward", default="mc", help="the reward model of both signals (a registered name)")
    ap.add_argument("--k", type=int, default=3, help="mc: rollouts per prefix")
    ap.add_argument("--n", type=int, default=8, help="best-of-N: rollouts per task")
    ap.add_argument("--candidates", type=int, default=5, help="IPR's k and RRO's max_candidates")
    ap.add_argument("--generations", type=int, default=2, help="evolution: generations after generation 0")
    ap.add_argument("--mcts-rounds", type=int, default=6, help="MCTS: rounds of simulations")
    ap.add_argument("--only", nargs="*", default=None, help="strategy labels to run (default: all registered)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                    help="more campaign keys for every strategy, e.g. rewards.prm.path=DIR with --reward prm")
    ap.add_argument("--keep", type=Path, default=None, metavar="DIR", help="write the stores here (a new folder)")
    args = ap.parse_args()
    common = [f"tasks.sample={args.tasks}", f"seed={args.seed}", f"search.reward={args.reward}",
              f"fitness.reward={args.reward}", "fitness.aggregate=mean", f"strategy.best_of_n.n={args.n}",
              "strategy.best_of_n.allow_gold=true",  # mc's pick sees gold through its outcome checker
              f"operators.ipr.k={args.candidates}", f"operators.rro.max_candidates={args.candidates}"]
    if args.reward == "mc":
        common.append(f"rewards.mc.k={args.k}")
    common += args.sets
    extra = {"SE-Agent evolution": [f"budget.generations={args.generations}"],
             "MCTS": [f"budget.generations={args.mcts_rounds}", "mu=1"]}
    strategies = registry.parts("strategy")
    rows: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = str(args.keep or scratch)
        if args.keep is not None:
            args.keep.mkdir(parents=True)  # a new folder: the stores must not exist yet
        for label, overrides in STRATEGIES.items():
            if args.only is not None and label not in args.only:
                continue
            kind = overrides[0].split("=", 1)[1]
            if kind not in strategies:
                notes.append(f"{label}: strategy {kind!r} is not registered in this checkout")
                continue
            try:
                rows[label] = run_one(label, common + overrides + extra.get(label, []),
                                      Path(tmp) / f"{len(rows) + len(notes)}-{kind}.duckdb", args.candidates)
            except UserError as exc:
                notes.append(f"{label}: not run: {exc}")
            print(f"done: {label}", file=sys.stderr, flush=True)
    print(f"{args.tasks} tasks, seed {args.seed}, replay policy, reward model {args.reward}"
          + (f" (k={args.k})" if args.reward == "mc" else "") + f", N={args.n}, candidates={args.candidates}\n")
    print("| strategy | success | reward | cand/step | env acting / scoring | policy acting / scoring "
          "| scores | rising | accepted rose | wall |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows.values():
        print(_fmt(row))
    print()
    for line in goals(rows) + notes:
        print(f"- {line}")


if __name__ == "__main__":
    main()
