"""A trained process reward model and its self-describing directory.

A model directory holds ``config.json`` (format, backbone, label source,
feature spec, the training store's hash, the task split), the weights (and,
for a transformer, its tokenizer and Hugging Face config) and ``metrics.json``
(held-out ROC-AUC, log-loss, counts). :func:`load_model` treats the directory
as untrusted input: it validates ``config.json`` and reads weights only from
formats that cannot run code (NumPy arrays with ``allow_pickle=False``,
safetensors); anything wrong is one :class:`UserError` line.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from evoagent.errors import UserError

__all__ = ["FORMAT", "ProcessRewardModel", "check_out", "content_digest", "load_model", "model_files"]

FORMAT = "evoagent-prm"
VERSION = 1
CONFIG, METRICS = "config.json", "metrics.json"
MAX_CONFIG_BYTES = 16 << 20  # the task split lists held-out ids; 16 MiB is far beyond any task set
MAX_MODEL_BYTES = 16 << 30  # a local checkpoint may be large; nothing bigger, in all, is hashed or read
BACKBONES = ("hashed-logistic", "transformer")


class Backbone(Protocol):
    kind: str

    def score_texts(self, texts: Sequence[str]) -> list[float]: ...

    def save(self, folder: Path) -> dict[str, Any]: ...


def model_files(folder: Path) -> list[Path]:
    """The regular files of a model directory, sorted. A symbolic link (which could make the
    digest or a loader read files outside the directory) or more than ``MAX_MODEL_BYTES`` in all
    is one UserError line."""
    root, files, total = folder.resolve(), [], 0
    for here, dirs, names in os.walk(folder):  # never descends into a linked folder
        for name in dirs + names:
            path = Path(here) / name
            if path.is_symlink() or not path.resolve().is_relative_to(root):
                raise UserError(f"{path}: a symbolic link; a model directory must hold its files itself")
            if name in names:
                if not path.is_file():
                    raise UserError(f"{path}: not a regular file; a model directory holds files and folders only")
                files.append(path)
                total += path.stat().st_size
    if total > MAX_MODEL_BYTES:
        raise UserError(f"{folder}: more than {MAX_MODEL_BYTES >> 30} GiB of files; refusing to read it")
    return sorted(files)


def content_digest(folder: Path) -> str:
    """12 hex characters of a hash of every file the model is made of (not its metrics):
    retraining changes it, so cached scores of an old model are never taken for the new one's."""
    h = hashlib.blake2b(digest_size=16)
    for path in model_files(folder):
        if path.name == METRICS:
            continue
        h.update(str(path.relative_to(folder)).encode() + b"\x00")
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        h.update(b"\x00")
    return h.hexdigest()[:12]


class ProcessRewardModel:
    """P(the prefix leads to success) for prefix texts (:func:`evoagent.rm.text.prefix_text`), in batches."""

    def __init__(self, backbone: Backbone, config: dict[str, Any], *, name: str = "prm", digest: str = ""):
        self.backbone, self.config, self.name, self.digest = backbone, config, name, digest

    @property
    def max_chars(self) -> int:
        return int(self.config["max_chars"])

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """One probability per text, from one batched forward pass (over-long texts keep their end)."""
        limit = self.max_chars
        return self.backbone.score_texts([t if len(t) <= limit else t[-limit:] for t in texts])

    def save(self, path: str | Path, metrics: dict[str, Any] | None = None) -> Path:
        """Write the directory (config, weights, metrics); refuses a non-empty folder that is not a model."""
        folder = Path(path)
        check_out(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {**self.config, **self.backbone.save(folder), "format": FORMAT, "version": VERSION,
                  "backbone": self.backbone.kind}
        _write_json(folder / CONFIG, config)
        if metrics is not None:
            _write_json(folder / METRICS, metrics)
        self.config, self.name, self.digest = config, folder.resolve().name, content_digest(folder)
        return folder


def check_out(folder: Path) -> None:
    """A folder a model may be written to: a new one, an empty one, or a model directory evoagent
    wrote (it is replaced whole). Anything else, e.g. a Hugging Face checkpoint, is one line."""
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
        return
    try:
        read_config(folder)
    except UserError:
        raise UserError(f"--out {folder}: exists and is not a model directory written by evoagent rm train; "
                        "give a new or empty folder") from None


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a model directory, validated; UserError (one line) otherwise."""
    where = folder / CONFIG
    if not folder.is_dir():
        raise UserError(f"{folder}: no model directory there (train one with: evoagent rm train STORE --out DIR)")
    if not where.is_file():
        raise UserError(f"{folder}: no {CONFIG}; not a model directory written by evoagent rm train")
    model_files(folder)  # no link out of it, bounded in size, before anything is read
    if where.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"{where}: larger than {MAX_CONFIG_BYTES >> 20} MiB; not a model config")
    try:
        config = json.loads(where.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UserError(f"{where}: damaged ({type(exc).__name__})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise UserError(f"{where}: not an evoagent process reward model (format is not {FORMAT!r})")
    if config.get("version") != VERSION:
        raise UserError(f"{where}: model format version {config.get('version')!r}; this evoagent reads {VERSION}")
    if config.get("backbone") not in BACKBONES:
        raise UserError(f"{where}: unknown backbone {config.get('backbone')!r} (have {', '.join(BACKBONES)})")
    limit = config.get("max_chars")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 64 <= limit <= 1_000_000:
        raise UserError(f"{where}: 'max_chars' must be an integer within 64..1000000")
    split = config.get("split", {})
    names = (split.get(k, []) for k in ("holdout_tasks", "holdout_dbs")) if isinstance(split, dict) else None
    if names is None or not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in names):
        raise UserError(f"{where}: 'split' must be an object whose holdout_tasks and holdout_dbs are lists of names")
    return config


def load_model(path: str | Path) -> ProcessRewardModel:
    """The model in directory ``path``; one UserError line for a missing, damaged or foreign one."""
    folder = Path(path)
    read_config(folder)  # a missing, foreign or linked directory is one line before anything is hashed
    digest = content_digest(folder)
    config = read_config(folder)
    try:
        if config["backbone"] == "hashed-logistic":
            from evoagent.rm.features import HashedLogistic

            backbone: Backbone = HashedLogistic.load(folder, config)
        else:
            from evoagent.rm.transformer import TransformerBackbone

            backbone = TransformerBackbone.load(folder, config)
    except UserError:
        raise
    except MemoryError:
        raise UserError(f"{folder}: damaged model (its weights would not fit in memory)") from None
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(f"{folder}: damaged model ({reason})") from None
    if content_digest(folder) != digest:  # retrained while it was read: the weights may be either model's
        raise UserError(f"{folder}: the model changed while it was being read; load it again once it is written")
    return ProcessRewardModel(backbone, config, name=folder.resolve().name, digest=digest)
