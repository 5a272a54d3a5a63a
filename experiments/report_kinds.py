"""One report per kind of store, each opened in headless Chromium and screenshotted.

    python experiments/report_kinds.py [--shots docs/] [--kinds evolution rro mcts http game24]

Runs a small campaign of each kind with the ``evoagent`` command, in a temporary folder
(evolution; RRO's step search scored by ``mc``; MCTS; evolution scored over HTTP by a PRM
that ``evoagent rm train`` learned from the evolution store and ``evoagent rm serve``
serves; Game of 24), writes its report, opens it offline in Chromium (the driver of
``report_screenshot.py``) and fails on a console error, a request that leaves the file
system, or a shown panel with no plot marks. With ``--shots`` it saves the top of each
report as ``report_<kind>.png``. Prints a table: panels shown, panels hidden (no data),
time to a rendered page.
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_screenshot import Chromium  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SQL = str(ROOT / "experiments" / "intercode_sql.toml")
KINDS = ("evolution", "rro", "mcts", "http", "game24")


def evoagent(*args: str) -> None:
    exe = Path(sys.executable).with_name("evoagent")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "evoagent.cli"]
    subprocess.run([*cmd, *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(kind: str, folder: Path) -> Path:
    """A small campaign of ``kind``; its store."""
    store = folder / f"{kind}.duckdb"
    small = ["--set", "tasks.sample=12"]
    if kind == "evolution":
        evoagent("run", SQL, "--store", str(store), *small, "--set", "budget.generations=3")
    elif kind == "rro":
        evoagent("run", SQL, "--store", str(store), *small, "--set", "strategy.kind=rro", "--set", "budget.generations=0",
                 "--set", "search.reward=mc", "--set", "rewards.mc.k=2")
    elif kind == "mcts":
        evoagent("run", SQL, "--store", str(store), *small, "--set", "strategy.kind=mcts", "--set", "budget.generations=3")
    elif kind == "game24":
        evoagent("run", str(ROOT / "experiments" / "game24.toml"), "--store", str(store), "--set", "tasks.ranks=[901, 920]",
                 "--set", "budget.generations=2")
    elif kind == "http":
        source = folder / "evolution.duckdb"
        if not source.exists():
            build("evolution", folder)
        evoagent("rm", "train", str(source), "--labels", "outcome", "--out", str(folder / "prm"))
        port = _free_port()
        exe = Path(sys.executable).with_name("evoagent")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "evoagent.cli"]
        server = subprocess.Popen([*cmd, "rm", "serve", str(folder / "prm"), "--port", str(port)], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while True:  # the server answers /health once its model is loaded
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("evoagent rm serve did not come up") from None
                    time.sleep(0.2)
            evoagent("run", SQL, "--store", str(store), "--set", "tasks.sample=12", "--set", "budget.generations=1", "--set", "search.reward=http",
                     "--set", "fitness.reward=http", "--set", f"rewards.http.url=http://127.0.0.1:{port}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    else:
        raise ValueError(kind)
    return store


def check(browser: Chromium, report: Path) -> dict:
    got = browser.open_report(report)
    shown = {k: v for k, v in got["panels"].items() if not v["hidden"]}
    hidden = sorted(k for k, v in got["panels"].items() if v["hidden"])
    # The charts' panels (lineage is the chosen trajectory's ancestry: one node when it has no parents)
    empty = sorted(k for k, v in shown.items() if v["svg"] and v["marks"] < 3 and k != "lineage")
    return {"problems": got["problems"] + [f"panel {k} shown with no data" for k in empty],
            "shown": sorted(k for k, v in shown.items() if v["svg"]), "hidden": hidden, "ready_ms": got["ready_ms"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shots", type=Path, help="save report_<kind>.png here")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    args = ap.parse_args()
    bad = 0
    with tempfile.TemporaryDirectory(prefix="report-kinds-") as tmp, Chromium(width=1400, height=1000) as browser:
        folder = Path(tmp)
        print("| store | panels drawn | hidden (no data) | ms to rendered | problems |\n|---|---|---|---:|---|")
        for kind in args.kinds:
            t = time.monotonic()
            store = build(kind, folder)
            report = folder / f"{kind}.html"
            evoagent("report", str(store), "-o", str(report))
            got = check(browser, report)
            if args.shots:
                browser.screenshot(args.shots / f"report_{kind}.png", height=1000)
            bad += bool(got["problems"])
            print(f"| {kind} | {', '.join(got['shown'])} | {', '.join(got['hidden']) or '-'} | {got['ready_ms'] or 0:.0f} | "
                  f"{'; '.join(got['problems']) or '-'} |  ({time.monotonic() - t:.0f} s)", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
