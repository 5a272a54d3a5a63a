"""The reward-model server under load, against the same model in-process.

For each model directory (``--model DIR``, repeatable; without one, a CPU
process reward model is trained here with ``evoagent rm train`` on the bundled
InterCode runs, and its training time is reported), on the same prefix texts
(every step prefix of the recorded GPT-4 and GPT-3.5 runs, rendered by
``prefix_text``):

- in-process: ``score_texts`` on batches of ``--max-batch`` texts, scores/s;
- served: ``evoagent rm serve`` in its own process on loopback (with the model
  in the server's process, and with ``--workers N`` replica processes), and
  ``concurrency`` asyncio clients (aiohttp) in this process, each sending one
  text per request (``POST /get_reward``), then ``--max-batch`` texts per
  request as the ``http`` reward kind sends them: scores/s, p50 and p99 latency, and
  the ratio to in-process (the goal: >= 0.8x at concurrency >= 64), whose rate
  is measured again right after each level (a shared machine's load drifts).

The served answers are checked against the in-process scores. Client, server
and model share this machine's cores, as they would on one host. The last
column is CPU time per score (server with its replicas, and the clients; Linux
/proc), which a loaded machine does not distort as it does wall-clock rates.

``--device-report`` adds, for transformer models, tokens/s and the achieved
FLOP/s (2 x parameters x tokens per forward pass: an estimate that leaves out
attention's own matmuls) of the in-process forward pass on the device it runs on.

    python experiments/bench_rm.py                       # trains the CPU PRM, then benchmarks it
    python experiments/bench_rm.py --backbone cpu minilm --device-report
    python experiments/bench_rm.py --model runs/prm-minilm --workers 0 --device-report
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from evoagent.rm.model import ProcessRewardModel, load_model  # noqa: E402
from evoagent.rm.text import prefix_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVE = "from evoagent.rm.server import serve_command; serve_command()"


def bundled_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` step-prefix texts of the recorded InterCode runs (GPT-4 and GPT-3.5), seeded shuffle."""
    from evoagent.envs.intercode_sql.data import bundled_runs, load_recorded, load_tasks

    tasks = {t.task_id: t for t in load_tasks()}
    texts = []
    for source in ("gpt-4", "gpt-3.5"):
        for run in load_recorded(bundled_runs()[source], list(tasks.values())):
            for i in range(run.n_steps):
                obs = [s.observation for s in run.steps[: i + 1]]
                texts.append(prefix_text(tasks[run.task_id], run.actions[: i + 1], obs))
    random.Random(seed).shuffle(texts)
    return (texts * (n // len(texts) + 1))[:n]


def train_prm(workdir: Path, backbone: str, max_steps: int) -> tuple[Path, float]:
    """Train a PRM (``evoagent rm train``, outcome labels) on the bundled runs; (model dir, training seconds)."""
    from evoagent.rm.train import TrainOptions, train

    store = workdir / "recorded.duckdb"
    if not store.exists():
        subprocess.run([sys.executable, "-c", "from evoagent.cli import main; main()", "import", "intercode",
                        "--bundled", "--store", str(store)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    out = workdir / f"prm-{backbone}"
    t0 = time.perf_counter()
    train(str(store), out, TrainOptions(labels="outcome", backbone=backbone, max_steps=max_steps))
    return out, time.perf_counter() - t0


def in_process(model: ProcessRewardModel, texts: list[str], batch: int, min_s: float = 2.0) -> float:
    """Scores per second of ``score_texts`` on batches of ``batch`` texts (repeated for at least ``min_s``)."""
    return in_process_cpu(model, texts, batch, min_s)[0]


def in_process_cpu(model: ProcessRewardModel, texts: list[str], batch: int, min_s: float = 2.0) -> tuple[float, float]:
    """(scores per second, CPU milliseconds per score) of ``score_texts`` on batches of ``batch``."""
    model.score_texts(texts[:batch])  # warm-up (lazy imports, CUDA kernels)
    done, at, t0, c0 = 0, 0, time.perf_counter(), own_cpu()
    while True:
        chunk = texts[at:at + batch]
        model.score_texts(chunk)
        done += len(chunk)
        at = at + batch if at + batch < len(texts) else 0
        if time.perf_counter() - t0 >= min_s:
            return done / (time.perf_counter() - t0), 1000 * (own_cpu() - c0) / done


async def load(url: str, texts: list[str], concurrency: int, requests: int,
               per_request: int = 1) -> tuple[float, list[float], dict[int, float]]:
    """``requests`` requests of ``per_request`` texts each from ``concurrency`` clients;
    (seconds, latencies, text index -> score)."""
    latencies: list[float] = []
    scores: dict[int, float] = {}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def client(todo: Any) -> None:
            for i in todo:
                which = [(i * per_request + j) % len(texts) for j in range(per_request)]
                t = time.perf_counter()
                async with session.post(url + "/get_reward", json={"query": [texts[k] for k in which]}) as r:
                    body = await r.json()
                    if r.status != 200:
                        raise RuntimeError(f"HTTP {r.status}: {body}")
                latencies.append(time.perf_counter() - t)
                scores.update(zip(which, body["rewards"]))

        warm = iter(range(2 * concurrency))
        await asyncio.gather(*(client(warm) for _ in range(concurrency)))  # open the connections
        latencies.clear()
        todo = iter(range(requests))
        t0 = time.perf_counter()
        await asyncio.gather(*(client(todo) for _ in range(concurrency)))
        return time.perf_counter() - t0, latencies, scores


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live children (the server and its replicas), from /proc (Linux)."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
    except (OSError, IndexError, ValueError):
        pass
    return total


def own_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def start_server(model_dir: Path, max_batch: int, max_wait_ms: float, workers: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(model_dir), "--port", "0", "--workers", str(workers),
                             "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if " at http" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, line.split(" at ", 1)[1].split(" ", 1)[0]


def device_report(model: ProcessRewardModel, texts: list[str], batch: int) -> str:
    """Tokens/s and achieved FLOP/s of a transformer model's in-process forward pass."""
    backbone: Any = model.backbone
    tokenizer, net = getattr(backbone, "tokenizer", None), getattr(backbone, "model", None)
    if tokenizer is None or net is None:
        return f"{model.name}: not a transformer model; no device report"
    import torch

    params = sum(p.numel() for p in net.parameters())
    limit = getattr(backbone, "max_tokens", 512)
    tokens = sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=limit)["input_ids"])
    rate = in_process(model, texts, batch)
    seconds = len(texts) / rate
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    return (f"{model.name} on {device}: {params / 1e6:.1f} M parameters, {tokens / seconds:,.0f} tokens/s, "
            f"{2 * params * tokens / seconds / 1e12:.2f} TFLOP/s achieved (2 x parameters x tokens)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", type=Path, default=[], help="model directory (repeatable)")
    ap.add_argument("--backbone", nargs="+", default=["cpu"], choices=["cpu", "minilm"],
                    help="without --model: backbones to train here on the bundled runs and benchmark")
    ap.add_argument("--minilm-steps", type=int, default=30, help="optimiser steps when training minilm here")
    ap.add_argument("--texts", type=int, default=4096, help="distinct prefix texts")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    ap.add_argument("--batched", type=int, nargs="*", default=[1, 4],
                    help="concurrency levels also run with --max-batch texts per request")
    ap.add_argument("--seconds", type=float, default=3.0, help="about how long each concurrency level runs")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=float, default=2.0, help="rm serve --max-wait-ms")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1],
                    help="rm serve --workers values to compare (0: the model in the server's process)")
    ap.add_argument("--device-report", action="store_true")
    args = ap.parse_args()

    texts = bundled_texts(args.texts)
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{len(texts)} prefix texts of the recorded InterCode runs, mean {sum(map(len, texts)) / len(texts):.0f} chars")
    with tempfile.TemporaryDirectory() as tmp:
        dirs = list(args.model)
        for backbone in [] if dirs else args.backbone:
            trained, seconds = train_prm(Path(tmp), backbone, args.minilm_steps if backbone == "minilm" else 0)
            steps = f", {args.minilm_steps} steps" if backbone == "minilm" else ""
            print(f"# trained the {backbone} PRM (evoagent rm train --labels outcome{steps}, on the bundled "
                  f"runs) in {seconds:.1f} s")
            dirs.append(trained)
        print("| model | mode | concurrency | scores/s | p50 ms | p99 ms | vs in-process | CPU ms/score (server + client) |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for model_dir in dirs:
            model = load_model(model_dir)
            kind = model.config.get("backbone", "?")
            base, base_cpu = in_process_cpu(model, texts, args.max_batch)
            print(f"| {kind} | in-process, batches of {args.max_batch} | - | {base:,.0f} | - | - | 1.00x | "
                  f"{base_cpu:.3f} |", flush=True)
            for workers in args.workers:
                proc, url = start_server(model_dir, args.max_batch, args.max_wait_ms, workers)
                mode = f"served, `--workers {workers}`" if workers else "served (model in the server's process)"
                try:
                    levels = [(c, 1) for c in args.concurrency] + [(c, args.max_batch) for c in args.batched]
                    for c, k in levels:
                        n = max(4 * c, int(base * args.seconds / 2 / k))
                        server0, client0 = cpu_seconds(proc.pid), own_cpu()
                        seconds, lat, got = asyncio.run(load(url, texts, c, n, k))
                        server_ms = 1000 * (cpu_seconds(proc.pid) - server0) / (n * k)
                        client_ms = 1000 * (own_cpu() - client0) / (n * k)  # with the warm-up requests: a bound
                        some = sorted(got)[:256]
                        worst = max(abs(got[i] - v) for i, v in zip(some, model.score_texts([texts[i] for i in some])))
                        if worst > 1e-5:
                            raise SystemExit(f"served scores differ from in-process ones by {worst}")
                        rate = len(lat) * k / seconds
                        # the in-process rate again, right after: a shared machine's load drifts
                        near = in_process(model, texts, args.max_batch, min_s=max(1.0, seconds / 2))
                        shown = mode if k == 1 else f"{mode}, {k} texts per request (as the `http` kind sends)"
                        print(f"| {kind} | {shown} | {c} | {rate:,.0f} | {1000 * percentile(lat, 0.5):.1f} | "
                              f"{1000 * percentile(lat, 0.99):.1f} | {rate / near:.2f}x | "
                              f"{server_ms:.3f} + {client_ms:.3f} |", flush=True)
                finally:
                    proc.terminate()
                    proc.wait(30)
            if args.device_report:
                print("#", device_report(model, texts, args.max_batch))


if __name__ == "__main__":
    main()
