"""The final pick on the same candidates (issue 20's headline): reward model alone vs a vote over results.

For each campaign store given (a bench cell, a novel_sql campaign), every task's last population
is ranked again by each ``selection.pick`` (``rank``: the fitness model alone; ``vote``: groups of
equal execution results by their fitness sum; ``vote_count``: the largest group) with the engine's
own code (``Ranked.picked``), and each pick's rank-0 member is judged by gold afterwards. The
candidates are the same for every pick: the pick ranks, it does not search (in a per-task
strategy the fitness model is not asked during the search). Also, per store: the replay pool's
bound on those tasks (``meta.upper_bound``), the tasks some member solves (found), the tasks
solved by SQL no recording contains (``NOVEL_SQL`` of ``novel_sql.py``; the stored rank 0, i.e.
the campaign's own pick, and anywhere), and, for the stored pick, why the pool-solvable tasks it
misses are missed (no member solves them, or one does and another was picked).

    python experiments/vote_pick.py runs/edits60/cells/rro-prm-B50-s0.duckdb [more stores]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoagent import escaping  # noqa: E402
from evoagent import evolution as evo  # noqa: E402
from evoagent.strategies.ranked import Ranked  # noqa: E402
from evoagent.strategies.vote import PICKS  # noqa: E402
from stores import open_reader  # noqa: E402

from novel_sql import NOVEL_SQL  # noqa: E402

FITNESS_SOURCE = ("SELECT DISTINCT reward_source FROM rewards WHERE step_idx IS NULL AND reward_source <> 'env' "
                  "AND reward_source LIKE '%:%'")


def picks(path: str) -> dict[str, object]:
    """Per pick, the tasks whose rank-0 member is solved; and the store's other counts (see the docstring)."""
    with open_reader(path) as s:
        sources = s.query(FITNESS_SOURCE).column(0).to_pylist()
        if len(sources) != 1:
            raise SystemExit(f"{path}: want one trajectory fitness source, found {sources}")
        campaign = json.loads(s.get_meta("campaign") or "{}")
        last = s.last_committed_generation()
        rows = s.population(last)
        tasks = sorted({t for t, _, _ in rows})
        bound = json.loads(s.get_meta("upper_bound") or "{}")
        out: dict[str, object] = {"tasks": tasks, "bound": {t for t in tasks if bound.get(t)},
                                  "source": sources[0], "env": s.scalar("SELECT sum(env_steps) FROM work_items"),
                                  "stored_pick": campaign.get("selection.pick", "rank")}
        for pick in PICKS:
            settings = {"selection.objectives": campaign.get("selection.objectives", ["reward", "steps"]),
                        "selection.pick": pick, "env.kind": campaign.get("env.kind", "intercode_sql")}
            ranked = Ranked(settings, s, tasks, sources[0])
            found = ranked.members([tid for _, tid, _ in rows])
            pop: dict[str, list[evo.Member]] = {t: [] for t in tasks}
            for task, tid, _ in rows:
                pop[task].append(found[tid])
            chosen = ranked.picked({t: evo.ranked(ms) for t, ms in pop.items()})
            out[pick] = {t for t, ms in chosen.items() if ms and ms[0].traj.solved}
            out["found"] = {t for t, ms in pop.items() if any(m.traj.solved for m in ms)}
        per = s.query(NOVEL_SQL).to_pylist()
    out["final_novel"] = {r["task_id"] for r in per if r["final_novel"]}
    out["found_novel"] = {r["task_id"] for r in per if r["found_novel"]}
    out["found_anywhere"] = {r["task_id"] for r in per if r["found"]}
    out["stored"] = {r["task_id"] for r in per if r["final_solved"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stores", nargs="+", help="campaign stores (e.g. bench cells)")
    args = ap.parse_args()
    escaping.install()  # sources, picks and ids come from the stores: shown escaped on a terminal
    load = os.getloadavg()
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load[0]:.1f}; success = the rank-0 "
          "member judged by gold afterwards; the same candidates for every pick\n")
    print("| store | tasks | pool bound | found (some member solved) | rank (model alone) | vote | vote_count "
          "| stored pick | its final answers by novel SQL | solved anywhere by novel SQL | beyond the bound "
          "(final / found) | pool-solvable missed: not found / found, not picked | env executions |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    notes = []
    for path in args.stores:
        r = picks(path)
        n, bound = len(r["tasks"]), r["bound"]

        def pct(key: str) -> str:
            return f"{100 * len(r[key]) / n:.1f}% ({len(r[key])})"

        stored = r[r["stored_pick"]]
        if stored != r["stored"]:
            raise SystemExit(f"{path}: recomputing the stored pick {r['stored_pick']!r} gives other answers than "
                             f"the stored rank 0 ({len(stored)} against {len(r['stored'])} solved)")
        missed = bound - stored
        print(f"| {Path(path).name} | {n} | {100 * len(bound) / n:.1f}% ({len(bound)}) | {pct('found')} | "
              f"{pct('rank')} | {pct('vote')} | {pct('vote_count')} | {r['stored_pick']} | "
              f"{len(r['final_novel'])} | {len(r['found_novel'])} | "
              f"{len(stored - bound)} / {len(r['found'] - bound)} | "
              f"{len(missed - r['found'])} / {len(missed & r['found'])} | {int(r['env'] or 0):,} |")
        notes.append(f"- {Path(path).name}: vote right where the model alone is wrong on "
                     f"{len(r['vote'] - r['rank'])} tasks, the reverse on {len(r['rank'] - r['vote'])}; "
                     f"vote_count {len(r['vote_count'] - r['rank'])} and {len(r['rank'] - r['vote_count'])}")
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
