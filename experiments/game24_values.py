"""GPT-4's recorded Game of 24 runs, judged exactly: its errors, and how well its values rank states.

1. Every action in the three bundled logs (ToT's proposals and final answers, the CoT and
   standard samples) replayed through the game24 environment: valid, inexact decimals
   accepted, GPT-4's own errors by kind (earlier lines all valid), errors that follow an
   earlier error, and whether the environment's verdict agrees with the log's ``r``.
2. ROC-AUC against exact solvability of GPT-4's recorded values (ToT's value prompt:
   sure/likely/impossible x 3) on every distinct state its search valued with valid steps,
   by depth; with ``--prm DIR``, a learned PRM (``evoagent rm train ... --out DIR``) scored
   on the same states (the text of the first recorded path to each state).

    python experiments/game24_values.py [--prm runs/prm_game24]
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoagent.envs.game24.data import load_tasks
from evoagent.envs.game24.env import play, start
from evoagent.envs.game24.recorded import bundled, tally
from evoagent.envs.game24.solver import solvable

KINDS = ("operand", "arithmetic", "left", "division_by_zero", "format", "answer_format", "over")


def errors_table() -> None:
    print("| log | actions | valid | inexact decimals | GPT-4's errors | " + " | ".join(KINDS)
          + " | after an earlier error | verdict = log's r |")
    print("|---|" + "---:|" * (len(KINDS) + 6))
    for rec in bundled():
        t = tally(rec)
        print(f"| {t.source} | {t.actions:,} | {t.valid:,} | {t.inexact:,} | {sum(t.errors.values()):,} | "
              + " | ".join(f"{t.errors[k]:,}" for k in KINDS)
              + f" | {sum(t.after_error.values()):,} | {t.verdict_agrees:,}/{t.runs:,} |")


def valued_states() -> list[dict]:
    """Each distinct (puzzle, state) GPT-4 valued after valid steps: mean value, label, first path."""
    tasks = {t.task_id: t for t in load_tasks()}
    states: dict[tuple, dict] = {}
    for p in bundled(["gpt-4-tot"])[0].proposals:
        task = tasks[p.task_id]
        episode, observations, ok = start(task), [], True
        for line in p.lines:
            episode, obs, _, info = play(episode, line)
            observations.append(obs)
            ok = ok and bool(info.get("valid"))
        if not ok or episode.answered or not p.lines:
            continue
        key = (p.task_id, episode.state)
        entry = states.setdefault(key, {"task": task, "actions": p.lines, "observations": tuple(observations),
                                        "depth": len(p.lines), "values": [],
                                        "label": int(solvable(episode.state))})
        entry["values"].append(p.value)
    return list(states.values())


def auc_table(prm: str | None) -> None:
    from sklearn.metrics import roc_auc_score

    rows = valued_states()
    learned = None
    if prm:
        from evoagent.rm.model import load_model
        from evoagent.rm.text import prefix_text

        model = load_model(prm)
        learned = model.score_texts([prefix_text(r["task"], r["actions"], r["observations"]) for r in rows])
        for r, s in zip(rows, learned):
            r["prm"] = float(s)
    print("| states | n | solvable | AUC GPT-4 values | AUC learned PRM |")
    print("|---|---:|---:|---:|---:|")
    groups = collections.defaultdict(list)
    for r in rows:
        groups[f"after step {r['depth']}"].append(r)
    groups["all"] = rows
    for name in sorted(groups, key=lambda g: (g == "all", g)):
        g = groups[name]
        labels = [r["label"] for r in g]
        gpt4 = [sum(r["values"]) / len(r["values"]) for r in g]
        both = 0 < sum(labels) < len(labels)
        auc = f"{roc_auc_score(labels, gpt4):.3f}" if both else "-"
        auc_prm = f"{roc_auc_score(labels, [r['prm'] for r in g]):.3f}" if both and learned is not None else "-"
        print(f"| {name} | {len(g):,} | {sum(labels):,} | {auc} | {auc_prm} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prm", help="a learned PRM's folder (evoagent rm train --out DIR) to score the same states")
    args = ap.parse_args()
    errors_table()
    print()
    auc_table(args.prm)


if __name__ == "__main__":
    main()
