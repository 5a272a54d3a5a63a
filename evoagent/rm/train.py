"""``evoagent rm train``: a step-level process reward model from a store's labelled steps.

The tasks are split before anything is learned: held-out tasks (every task
of the databases named by ``--holdout-dbs``, else a seeded fraction of the
gold-equivalence classes, :mod:`evoagent.rm.leakage`, so that a question
asked twice in other words never has one wording on each side) give no
example to training, so the metrics written beside the model, and
``evoagent rm eval`` later, measure it on tasks it never saw. The model is
written to a temporary folder beside ``--out`` and moved into place whole.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoagent.errors import UserError
from evoagent.rm.labels import (
    LABELS,
    Example,
    data_digest,
    episodes,
    examples,
    store_tasks,
)
from evoagent.rm.model import ProcessRewardModel, check_out
from evoagent.rm.text import prefix_text
from evoagent.trajectory import Task

__all__ = ["TrainOptions", "heldout_metrics", "split_tasks", "train"]

Note = Callable[[str], None]


@dataclass(frozen=True)
class TrainOptions:
    """What ``evoagent rm train`` was asked for (the CLI's flags)."""

    labels: str = "outcome"
    backbone: str = "cpu"  # cpu | minilm | a local Hugging Face checkpoint directory
    holdout: float = 0.2
    holdout_dbs: tuple[str, ...] = ()
    seed: int = 0
    max_chars: int = 4000
    epochs: int = 1
    max_steps: int = 0  # transformer: stop after this many optimiser steps (0: the epochs decide)
    batch_size: int = 16
    extra: dict[str, Any] = field(default_factory=dict)


def split_by(opts: TrainOptions) -> str:
    """What the split keeps apart: ``database`` (``--holdout-dbs``) or ``gold_class``."""
    return "database" if opts.holdout_dbs else "gold_class"


def split_tasks(tasks: dict[str, Task], opts: TrainOptions) -> tuple[set[str], set[str]]:
    """(training task ids, held-out task ids), disjoint, and no gold-equivalence class on both sides:
    by database when ``holdout_dbs``, else a seeded fraction of the classes (every task of a class together)."""
    from evoagent.rm.leakage import classes

    if opts.holdout_dbs:
        known = {t.meta.get("db") for t in tasks.values()}
        bad = [d for d in opts.holdout_dbs if d not in known]
        if bad:
            raise UserError(f"--holdout-dbs: no task of database {bad[0]!r} in the store")
        held = {i for i, t in tasks.items() if t.meta.get("db") in opts.holdout_dbs}
    else:
        of = classes(tasks.values())
        names = sorted(set(of.values()))
        if len(names) == len(of):  # every class one task (e.g. Game of 24): the same draw as by task
            ids = sorted(tasks)
            held = set(random.Random(opts.seed).sample(ids, round(len(ids) * opts.holdout)))
        else:
            held_classes = set(random.Random(opts.seed).sample(names, round(len(names) * opts.holdout)))
            held = {i for i, c in of.items() if c in held_classes}
    train_ids = set(tasks) - held
    if not train_ids:
        raise UserError("the split leaves no task to train on (lower --holdout or name fewer --holdout-dbs)")
    return train_ids, held


def texts_of(exs: Sequence[Example], tasks: dict[str, Task], max_chars: int) -> list[str]:
    """The prefix text of each example, as every model reads it."""
    return [prefix_text(tasks[e.task_id], e.actions, e.observations, max_chars=max_chars) for e in exs]


def heldout_metrics(scores: Sequence[float], labels: Sequence[float]) -> dict[str, Any]:
    """ROC-AUC (a label >= 0.5 counts as success), log-loss against the soft labels, base rate."""
    from sklearn.metrics import roc_auc_score

    n = len(scores)
    hard = [1 if y >= 0.5 else 0 for y in labels]
    auc = float(roc_auc_score(hard, scores)) if 0 < sum(hard) < n else None
    eps = 1e-6
    loss = -sum(y * math.log(max(s, eps)) + (1 - y) * math.log(max(1 - s, eps))
                for s, y in zip(scores, labels)) / n if n else None
    return {"n": n, "roc_auc": auc, "log_loss": loss, "positive_rate": sum(hard) / n if n else None,
            "mean_score": sum(scores) / n if n else None}


def _fit(opts: TrainOptions, texts: list[str], labels: list[float], note: Note) -> Any:
    if opts.backbone == "cpu":
        from evoagent.rm.features import HashedLogistic

        return HashedLogistic.train(texts, labels, [1.0] * len(texts), seed=opts.seed)
    from evoagent.rm.transformer import TransformerBackbone, resolve_checkpoint

    return TransformerBackbone.train(texts, labels, base=resolve_checkpoint(opts.backbone), epochs=opts.epochs,
                                     max_steps=opts.max_steps, batch_size=opts.batch_size, seed=opts.seed, note=note)


def _check(opts: TrainOptions, out: Path) -> None:
    if opts.labels not in LABELS:
        raise UserError(f"--labels: unknown label source {opts.labels!r} (have {', '.join(LABELS)})")
    if not 0 < opts.holdout < 1:
        raise UserError(f"--holdout: must be within 0..1 (exclusive), got {opts.holdout}")
    check_out(out)
    if opts.backbone not in ("cpu", "minilm") and not Path(opts.backbone).is_dir():
        raise UserError(f"--backbone: {opts.backbone!r} is neither cpu, minilm nor a checkpoint directory")


def _replace(out: Path, write: Callable[[Path], Any]) -> None:
    """Write into a staging folder beside ``out``, then swap it in by renames: ``out`` is always
    either the old model or the new one, and only a folder :func:`check_out` accepts is removed."""
    tmp, old = (out.parent / f".{out.name}.{kind}-{os.getpid()}" for kind in ("tmp", "old"))
    for stale in (tmp, old):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        write(tmp)
        check_out(out)  # still what it was when training started
        if out.exists():
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except OSError:
            if old.exists():
                os.replace(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def train(store_path: str, out: str | Path, opts: TrainOptions, note: Note = lambda s: None) -> dict[str, Any]:
    """Train on the store's labelled prefixes of the training tasks; write the model directory to ``out``."""
    from stores import open_reader

    out = Path(out)
    _check(opts, out)
    started = time.perf_counter()
    with open_reader(store_path) as store:
        tasks = store_tasks(store)
        train_ids, held_ids = split_tasks(tasks, opts)
        eps = episodes(store)
        exs = examples(store, eps, opts.labels)
        campaign = store.get_meta("campaign")
    fit_ex = [e for e in exs if e.task_id in train_ids]
    held_ex = [e for e in exs if e.task_id in held_ids]
    if not fit_ex or len({e.label >= 0.5 for e in fit_ex}) < 2:
        raise UserError(f"{store_path}: the training tasks need labelled steps of both kinds (success and "
                        f"failure) under --labels {opts.labels}; got {len(fit_ex)} examples")
    from evoagent.rm.leakage import classes

    of = classes(tasks.values())
    trained_classes = sorted({of[i] for i in train_ids})
    how = (f"by database (held out: {', '.join(sorted(opts.holdout_dbs))})" if split_by(opts) == "database" else
           f"by gold-equivalence class ({len(set(of.values()))} classes of identical normalised gold; "
           f"{opts.holdout:g} of them held out, seed {opts.seed})")
    note(f"split {how}")
    note(f"{len(fit_ex):,} training prefixes from {len(train_ids)} tasks; {len(held_ex):,} held out "
         f"from {len(held_ids)} tasks; labels: {opts.labels}")
    loaded = time.perf_counter()
    backbone = _fit(opts, texts_of(fit_ex, tasks, opts.max_chars), [e.label for e in fit_ex], note)
    fitted = time.perf_counter()
    config = {
        "max_chars": opts.max_chars, "labels": opts.labels, "text": "evoagent.rm.text.prefix_text",
        "training": {"store": str(Path(store_path).resolve()), "data_digest": data_digest(fit_ex),
                     "campaign": json.loads(campaign).get("name") if campaign else None,
                     "n_examples": len(fit_ex), "n_tasks": len(train_ids), "seed": opts.seed,
                     "backbone": opts.backbone, "epochs": opts.epochs, "max_steps": opts.max_steps,
                     "tasks": sorted(train_ids),  # their gold made the labels: the prm kind refuses them
                     "gold_classes": trained_classes},  # and their twins (evoagent.rm.leakage)
        "split": {"by": split_by(opts), "holdout": None if opts.holdout_dbs else opts.holdout,
                  "holdout_dbs": sorted(opts.holdout_dbs), "holdout_tasks": sorted(held_ids)},
    }
    model = ProcessRewardModel(backbone, config)
    scores = model.score_texts(texts_of(held_ex, tasks, opts.max_chars))
    metrics = {"heldout": heldout_metrics(scores, [e.label for e in held_ex]), "labels": opts.labels,
               "seconds": {"load": round(loaded - started, 2), "fit": round(fitted - loaded, 2),
                           "total": round(time.perf_counter() - started, 2)}}
    _replace(out, lambda tmp: model.save(tmp, metrics))
    metrics["seconds"]["total"] = round(time.perf_counter() - started, 2)
    return {"out": str(out), **metrics}
