"""A learned PRM on code trajectories vs the gold-free ``visible`` reward, on HumanEval tasks it never saw.

1. Training data: ``experiments/code.toml`` on all 164 HumanEval tasks with the oracle as search and
   fitness signal (the replay policy's programs, each step labelled by the hidden tests), and the
   bundled LATS/Reflexion logs imported (HumanEval rows: each program with the feedback of the
   agent's own tests; label: the recorded verdict). Gold enters through the labels only.
2. Per store and seed: ``evoagent rm train`` (CPU backbone) splits the tasks (a seeded 30% held out),
   learns on the rest; on the held-out tasks' labelled steps, the ROC-AUC of the model and of
   ``visible`` (the share of visible tests the prefix's last program passes), and best-of-N per
   held-out task: the trajectory each ranks first (ties share the pick) vs a random pick.
3. The model of seed 0 on the campaign store scores a campaign on its held-out tasks
   (``search.reward = fitness.reward = "prm"``) beside the same campaign with ``visible``:
   hidden-test pass@1 of each.

    python experiments/code_prm.py [--seeds 5] [--holdout 0.3] [--only campaign|imported]

Prints markdown tables, with the machine's load.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evoagent import campaign, launch  # noqa: E402
from evoagent.envs.code.data import BUNDLED, DATA  # noqa: E402
from evoagent.envs.code.recorded import import_logs  # noqa: E402
from evoagent.envs.code.values import VisibleTests  # noqa: E402
from evoagent.rm.evaluate import evaluate, rerank  # noqa: E402
from evoagent.rm.labels import episodes, examples, store_tasks  # noqa: E402
from evoagent.rm.model import load_model  # noqa: E402
from evoagent.rm.train import TrainOptions, heldout_metrics, train  # noqa: E402
from stores import open_reader  # noqa: E402

TOML = ROOT / "experiments" / "code.toml"


def campaign_store(path: Path) -> None:
    c = campaign.load(TOML, ["search.reward=oracle", "fitness.reward=env", "name=code-prm-labels"])
    out = launch.start(c, str(path))
    if out.status != "completed":
        raise SystemExit(f"{path}: {out.status}")


def imported_store(path: Path) -> None:
    for kind in ("lats", "reflexion"):
        files = [DATA / rel for rel in BUNDLED if rel.startswith(kind) and "humaneval" in rel]
        import_logs(files, kind, str(path))


def measure(store: Path, model_dir: Path, labels: str, seed: int, holdout: float) -> dict:
    """Train, then the model's and ``visible``'s AUC and best-of-N on the same held-out steps."""
    train(str(store), model_dir, TrainOptions(labels=labels, holdout=holdout, seed=seed))
    report = evaluate(model_dir, str(store), labels=labels)
    held = set(load_model(model_dir).config["split"]["holdout_tasks"])
    with open_reader(str(store)) as r:
        tasks = store_tasks(r)
        eps = episodes(r, held)
        exs = examples(r, eps, labels)
    visible = VisibleTests(tasks)
    scores = [visible.value(e.task_id, e.actions) for e in exs]
    ranked: dict[str, list[tuple[float, bool]]] = {}
    for ep in eps:
        ranked.setdefault(ep.task_id, []).append((visible.value(ep.task_id, ep.actions), ep.solved))
    return {"prm": report["steps"]["roc_auc"], "visible": heldout_metrics(scores, [e.label for e in exs])["roc_auc"],
            "steps": len(exs), "positive": report["steps"]["positive_rate"], "tasks": len(held),
            "bon_prm": report["rerank"], "bon_visible": rerank(ranked)}


def _mean(xs: list[float | None]) -> str:
    vals = [x for x in xs if x is not None]
    if not vals:
        return "-"
    return f"{statistics.mean(vals):.3f} ({min(vals):.3f}-{max(vals):.3f})"


def _pct(xs: list[float]) -> str:
    return f"{100 * statistics.mean(xs):.1f}%" if xs else "-"


def guided(model_dir: Path, folder: Path) -> list[tuple[str, float, float]]:
    """The held-out tasks' campaign scored by the model, and by ``visible``: hidden-test pass@1."""
    held = load_model(model_dir).config["split"]["holdout_tasks"]
    ids = "tasks.ids=[" + ", ".join(f'"{t}"' for t in held) + "]"
    rows = []
    for name, sets in (("prm", ["search.reward=prm", "fitness.reward=prm", f"rewards.prm.path={model_dir}"]),
                       ("visible", ["search.reward=visible", "fitness.reward=visible"])):
        t0 = time.perf_counter()
        store = folder / f"guided-{name}.duckdb"
        out = launch.start(campaign.load(TOML, [ids, *sets, f"name=code-prm-{name}"]), str(store))
        if out.status != "completed":
            raise SystemExit(f"{store}: {out.status}")
        with open_reader(str(store)) as r:
            success = r.scalar("SELECT success_rate FROM generations WHERE status = 'committed' "
                               "ORDER BY generation DESC LIMIT 1")
        rows.append((name, success, time.perf_counter() - t0))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--holdout", type=float, default=0.3)
    ap.add_argument("--only", choices=["campaign", "imported"], help="one training store (default: both)")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at start", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stores = {"campaign (replay programs, visible-test feedback)": (folder / "campaign.duckdb", campaign_store),
                  "imported LATS/Reflexion logs (own-test feedback)": (folder / "imported.duckdb", imported_store)}
        print("| store | labels | held-out tasks | steps (positive) | ROC-AUC prm | ROC-AUC visible | "
              "best-of-N: prm | visible | random |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, (path, build) in stores.items():
            if args.only and not name.startswith(args.only):
                continue
            build(path)
            for labels in ("oracle", "outcome") if "campaign" in name else ("outcome",):
                runs = [measure(path, folder / f"m-{labels}-{s}", labels, s, args.holdout) for s in range(args.seeds)]
                bon = [r for r in runs if r["bon_prm"]["tasks"]]
                print(f"| {name} | {labels} | {runs[0]['tasks']} | {statistics.mean(r['steps'] for r in runs):.0f} "
                      f"({_pct([r['positive'] for r in runs])}) | {_mean([r['prm'] for r in runs])} | "
                      f"{_mean([r['visible'] for r in runs])} | {_pct([r['bon_prm']['model'] for r in bon])} | "
                      f"{_pct([r['bon_visible']['model'] for r in bon])} | {_pct([r['bon_prm']['random'] for r in bon])} |",
                      flush=True)
        print(f"\n(AUC: mean over seeds 0-{args.seeds - 1}, (min-max); best-of-N: mean over seeds of the "
              "held-out tasks with >= 2 distinct trajectories)\n")
        if args.only == "imported":
            return
        print("| held-out tasks' campaign (seed 0 split), search and fitness by | hidden-test pass@1 | wall s |")
        print("|---|---:|---:|")
        for name, success, wall in guided(folder / "m-oracle-0", folder):
            print(f"| {name} | {100 * success:.1f}% | {wall:.0f} |", flush=True)
    load = os.getloadavg()
    print(f"load average at end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()
