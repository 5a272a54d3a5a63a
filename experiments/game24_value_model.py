"""The learned Game of 24 state value (``state_value``) against GPT-4's recorded values, on unseen multisets.

Test states: the 4,469 distinct (puzzle, state) pairs GPT-4 valued in Tree of
Thoughts' log after valid steps (``game24_values.valued_states``, the same
states as the 0.956 ROC-AUC of GPT-4's values), labelled by exact solvability.
Training states: multisets reachable from puzzles of ``--train-ranks``
(default 1..900, outside ToT's test puzzles), minus every multiset among the
test states (a split by number multiset: the script checks that none is
shared), a seeded sample of ``--states``. Two models: the state's own
description only, and with the one-step look-ahead (the ``state_value``
reward model's features). Prints ROC-AUC by depth, as game24_values.py does.

    python experiments/game24_value_model.py [--states 20000] [--train-ranks 1 900]
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from game24_values import valued_states

from evoagent.envs.game24.env import advance
from evoagent.envs.game24.solver import solvable
from evoagent.envs.game24.value_model import StateValueModel, training_states


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", type=int, default=20000, help="training states (a seeded sample)")
    ap.add_argument("--train-ranks", type=int, nargs=2, default=[1, 900], metavar=("FIRST", "LAST"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = valued_states()
    for r in rows:
        r["state"] = tuple(sorted(advance(r["task"], r["actions"]).state))
    test = {r["state"] for r in rows}
    train = training_states(args.train_ranks, test, args.states)
    shared = len(set(train) & test)
    assert shared == 0, "a test multiset among the training states"
    scores = {}
    for name, look in (("state only", False), ("state + one-step look-ahead", True)):
        model = StateValueModel(look_ahead=look).fit(train)
        values = model.value([r["state"] for r in rows])
        scores[name] = values
    wall = time.perf_counter() - t0
    from sklearn.metrics import roc_auc_score

    solvable_train = sum(1 for s in train if solvable(s))
    print(f"training: {len(train):,} multisets from puzzles {args.train_ranks[0]}-{args.train_ranks[1]} "
          f"({solvable_train:,} solvable); test: {len(rows):,} states, {len(test):,} distinct multisets, "
          f"{shared} shared with training\n")
    names = list(scores)
    print("| states GPT-4 valued | n | solvable | AUC GPT-4 values | " + " | ".join(f"AUC {n}" for n in names) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(names))
    groups = collections.defaultdict(list)
    for i, r in enumerate(rows):
        groups[f"after step {r['depth']} ({4 - r['depth']} left)"].append(i)
    groups["all"] = list(range(len(rows)))
    for g in sorted(groups, key=lambda g: (g == "all", g)):
        idx = groups[g]
        labels = [rows[i]["label"] for i in idx]
        gpt4 = [sum(rows[i]["values"]) / len(rows[i]["values"]) for i in idx]
        both = 0 < sum(labels) < len(labels)
        cells = [f"{roc_auc_score(labels, [scores[n][i] for i in idx]):.3f}" if both else "-" for n in names]
        auc = f"{roc_auc_score(labels, gpt4):.3f}" if both else "-"
        print(f"| {g} | {len(idx):,} | {sum(labels):,} | {auc} | " + " | ".join(cells) + " |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{wall:.0f} s wall (both models, features included); load average {load:.1f} at the end")


if __name__ == "__main__":
    main()
