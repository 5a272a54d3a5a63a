"""``evoagent rm eval``: how good a trained PRM is on tasks it never saw.

On the model's held-out tasks (its ``config.json`` split) found in a store:

- **ROC-AUC** of the step scores against the step labels (the model's label
  source unless another is asked for; a label >= 0.5 counts as success), over
  all held-out tasks and over those without a twin (no other task of the store
  shares their gold-equivalence class, :mod:`evoagent.rm.leakage`: a model
  split by task id may have trained on a held-out task's twin);
- **calibration**: a reliability table, 10 equal-width bins of the predicted
  probability, each with its mean prediction and the observed mean label;
- **best-of-N reranking**: per task with at least two distinct trajectories,
  the success of the one the model ranks first (trajectory score: the
  ``aggregate`` of its step scores, by default the last step's; ties share the
  pick, so its success is the mean over the tied), against a random pick (the
  exact expectation: the share of the N that succeed) and the oracle (any of
  the N succeeds).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evoagent.errors import UserError
from evoagent.rm.labels import episodes, examples, prefix, store_tasks
from evoagent.rm.model import load_model
from evoagent.rm.text import prefix_text
from evoagent.rm.train import heldout_metrics

__all__ = ["evaluate", "format_report"]

AGGREGATES = {"last": lambda xs: xs[-1], "min": min, "mean": lambda xs: sum(xs) / len(xs)}
BATCH = 256


def reliability(scores: Sequence[float], labels: Sequence[float], bins: int = 10) -> list[dict[str, Any]]:
    """Per bin of predicted probability: count, mean prediction, observed mean label."""
    acc: list[list[float]] = [[0, 0.0, 0.0] for _ in range(bins)]
    for s, y in zip(scores, labels):
        b = acc[min(int(s * bins), bins - 1)]
        b[0] += 1
        b[1] += s
        b[2] += y
    return [{"bin": f"{i / bins:.1f}-{(i + 1) / bins:.1f}", "n": int(n),
             "predicted": s / n if n else None, "observed": y / n if n else None}
            for i, (n, s, y) in enumerate(acc)]


def rerank(ranked: dict[str, list[tuple[float, bool]]]) -> dict[str, Any]:
    """Model pick vs random pick vs oracle over tasks with >= 2 (score, solved) trajectories."""
    picks, randoms, oracles, sizes = [], [], [], []
    for members in ranked.values():
        if len(members) < 2:
            continue
        top = max(s for s, _ in members)
        tied = [ok for s, ok in members if s == top]
        picks.append(sum(tied) / len(tied))
        randoms.append(sum(ok for _, ok in members) / len(members))
        oracles.append(float(any(ok for _, ok in members)))
        sizes.append(len(members))
    n = len(picks)
    if not n:
        return {"tasks": 0}
    return {"tasks": n, "mean_n": sum(sizes) / n, "model": sum(picks) / n, "random": sum(randoms) / n,
            "oracle": sum(oracles) / n}


def evaluate(model_dir: str | Path, store_path: str, *, labels: str | None = None,
             aggregate: str = "last") -> dict[str, Any]:
    """Score every prefix of the held-out tasks' trajectories in the store; AUC, reliability, best-of-N."""
    from stores import open_reader

    if aggregate not in AGGREGATES:
        raise UserError(f"--aggregate: must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
    model = load_model(model_dir)
    split = model.config.get("split") or {}
    held_ids, held_dbs = set(split.get("holdout_tasks") or ()), set(split.get("holdout_dbs") or ())
    labels = labels or model.config.get("labels", "outcome")
    with open_reader(store_path) as store:
        tasks = store_tasks(store)
        held = {i for i, t in tasks.items() if i in held_ids or t.meta.get("db") in held_dbs}
        if not held:
            raise UserError(f"{store_path}: none of the model's held-out tasks are in this store")
        eps = episodes(store, held)
        exs = examples(store, eps, labels)
    prefixes = {(e.task_id, a): o for e in eps for a, o in (prefix(e, i) for i in range(len(e.actions)))}
    keys = list(prefixes)
    scores: dict[tuple[str, tuple[str, ...]], float] = {}
    for at in range(0, len(keys), BATCH):
        chunk = keys[at:at + BATCH]
        texts = [prefix_text(tasks[t], a, prefixes[(t, a)], max_chars=model.max_chars) for t, a in chunk]
        scores.update(zip(chunk, model.score_texts(texts)))
    step_scores = [scores[(e.task_id, e.actions)] for e in exs]
    step_labels = [e.label for e in exs]
    from evoagent.rm.leakage import twinless

    alone = twinless(tasks) & held
    lone = [(s, e.label) for s, e in zip(step_scores, exs) if e.task_id in alone]
    ranked: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for e in eps:
        values = [scores[(e.task_id, prefix(e, i)[0])] for i in range(len(e.actions))]
        ranked[e.task_id].append((AGGREGATES[aggregate](values), e.solved))
    return {"model": str(model_dir), "store": store_path, "labels": labels, "aggregate": aggregate,
            "heldout_tasks": len(held), "trajectories": len(eps),
            "steps": heldout_metrics(step_scores, step_labels), "twinless_tasks": len(alone),
            "twinless_steps": heldout_metrics([s for s, _ in lone], [y for _, y in lone]),
            "reliability": reliability(step_scores, step_labels), "rerank": rerank(ranked)}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def format_report(r: dict[str, Any]) -> list[str]:
    """The tables ``evoagent rm eval`` prints."""
    s, b = r["steps"], r["rerank"]
    auc = "-" if s["roc_auc"] is None else f"{s['roc_auc']:.3f}"
    loss = "-" if s["log_loss"] is None else f"{s['log_loss']:.3f}"
    head = (f"held-out tasks: {r['heldout_tasks']}, trajectories: {r['trajectories']}, "
            f"labelled steps: {s['n']:,} (labels: {r['labels']}, {_pct(s['positive_rate'])} positive)")
    t = r["twinless_steps"]
    alone = "-" if t["roc_auc"] is None else f"{t['roc_auc']:.3f}"
    lines = [head,
             f"ROC-AUC: {auc}   log-loss: {loss}   "
             f"ROC-AUC on the {r['twinless_tasks']} tasks without a twin: {alone} ({t['n']:,} steps)", "",
             "reliability (predicted probability bins)",
             "| bin | steps | mean predicted | observed |", "|---|---:|---:|---:|"]
    for row in r["reliability"]:
        pred = "-" if row["predicted"] is None else f"{row['predicted']:.3f}"
        obs = "-" if row["observed"] is None else f"{row['observed']:.3f}"
        lines.append(f"| {row['bin']} | {row['n']:,} | {pred} | {obs} |")
    lines += ["", f"best-of-N on {b['tasks']} held-out tasks with >= 2 distinct trajectories"
              + (f" (mean N {b['mean_n']:.1f}; trajectory score: {r['aggregate']} step)" if b["tasks"] else ""),
              "| pick | success |", "|---|---:|"]
    if b["tasks"]:
        lines += [f"| model (top-ranked) | {_pct(b['model'])} |", f"| random (expected) | {_pct(b['random'])} |",
                  f"| oracle (any of N solved) | {_pct(b['oracle'])} |"]
    return lines
