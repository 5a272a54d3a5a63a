"""Open an evoagent report in headless Chromium, check it, time it and take the README's screenshots.

    python experiments/report_screenshot.py runs/main.duckdb --out docs/ [--html report.html]

builds the report from the store (``evoagent report``), opens it from
``file://`` in Debian's ``chromium`` kept off the network, fails on any console
error, exception or non-file request, counts the rendered plot elements of
every panel, prints the file size and the time to a fully rendered page, and
saves ``report.png`` (the top of the page) and ``report_lineage.png``. The
:class:`Chromium` driver (the DevTools protocol over one websocket) is also
what ``tests/test_report.py`` uses.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-extensions", "--disable-sync",
         "--disable-default-apps", "--hide-scrollbars", "--mute-audio"]


def chromium_binary() -> str | None:
    """Debian's chromium (``.ci/run`` installs it), or ``$EVOAGENT_CHROMIUM``."""
    return os.environ.get("EVOAGENT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """A headless Chromium with a fresh profile, driven over the DevTools protocol."""

    def __init__(self, width: int = 1400, height: int = 1000, timeout_s: float = 60.0):
        from websockets.sync.client import connect

        binary = chromium_binary()
        if not binary:
            raise RuntimeError("chromium not found (apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix="evoagent-chromium-")
        self.events: list[dict[str, Any]] = []
        self._stack = contextlib.ExitStack()
        self._ids = itertools.count(1)
        self._log = open(Path(self.profile) / "stderr.log", "wb")
        self.proc = subprocess.Popen(
            [binary, *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True)
        try:
            port = self._port(timeout_s)
            deadline = time.monotonic() + timeout_s
            while True:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
                if pages or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            self.ws = self._stack.enter_context(
                connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout_s))
        except BaseException:
            self.close()
            raise

    def _port(self, timeout_s: float) -> int:
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}: "
                                   f"{(Path(self.profile) / 'stderr.log').read_text(errors='replace')[-800:]}")
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.05)
        raise RuntimeError("chromium did not open its DevTools port")

    def send(self, method: str, timeout_s: float = 60.0, **params: Any) -> dict[str, Any]:
        """Call one DevTools method and return its result; events seen meanwhile are kept."""
        mid = next(self._ids)
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def evaluate(self, expression: str) -> Any:
        got = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in got:
            raise RuntimeError(f"evaluate failed: {got['exceptionDetails']}")
        return got["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and requests that left the file system, seen so far."""
        out = []
        for ev in self.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}".rstrip())
            elif m == "Network.requestWillBeSent":
                url = p["request"]["url"]
                if not url.startswith(("file:", "data:", "blob:", "about:")):
                    out.append(f"network request: {url}")
        return out

    def open_report(self, path: Path, fragment: str = "", timeout_s: float = 60.0) -> dict[str, Any]:
        """Load the page, wait until every panel is drawn; the time taken and what each panel shows."""
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        start = time.monotonic()
        self.send("Page.navigate", url=path.resolve().as_uri() + (f"#{fragment}" if fragment else ""))
        deadline = start + timeout_s
        while not self.evaluate("!!(window.__report && window.__report.ready)"):
            if time.monotonic() > deadline or any(e.get("method") == "Runtime.exceptionThrown" for e in self.events):
                break
            time.sleep(0.05)
        wall = time.monotonic() - start
        counts = self.evaluate("""(() => { const out = {}; for (const s of document.querySelectorAll('section.panel'))
            out[s.id] = {hidden: s.hidden, svg: s.querySelectorAll('svg').length,
                         marks: s.querySelectorAll('svg path, svg circle, svg line').length,
                         rows: s.querySelectorAll('tr').length, steps: s.querySelectorAll('.step').length};
            return out; })()""")
        ready_ms = self.evaluate("window.__report ? window.__report.ms : null")
        return {"ready_ms": ready_ms, "wall_s": wall, "panels": counts, "problems": self.problems()}

    def screenshot(self, out: Path, height: int, width: int = 1400, scroll_to: str | None = None) -> None:
        """A PNG of ``height`` pixels from the top of the page or of the element ``scroll_to``."""
        top = 0.0
        if scroll_to:
            box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(scroll_to)})"
                                ".getBoundingClientRect(); return [r.top + window.scrollY, r.height]; })()")
            top, height = box[0] - 10, min(height, int(box[1]) + 20)
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": top, "width": width, "height": height, "scale": 1})
        out.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            try:
                self.send("Browser.close", timeout_s=5)
            except Exception:  # noqa: BLE001 - already gone is fine
                pass
        self._stack.close()
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group we started: chromium and its helpers
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _timed(cmd: list[str], runs: int) -> tuple[str, str]:
    """Median wall and CPU seconds of ``runs`` runs of a command (as text), and its output.

    CPU time is printed too: on a shared 2-core machine the wall time mostly measures the neighbours."""
    walls, cpus, out = [], [], ""
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        walls.append(time.monotonic() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    med = len(walls) // 2
    return f"median {sorted(walls)[med]:.2f} s wall, {sorted(cpus)[med]:.2f} s CPU of {runs} runs", out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store")
    ap.add_argument("--out", default="docs", help="folder for the screenshots")
    ap.add_argument("--html", help="the report file to write (default: report.html in a temporary folder)")
    ap.add_argument("--runs", type=int, default=5, help="runs per timing (median printed)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    html = Path(args.html) if args.html else Path(tempfile.mkdtemp(prefix="evoagent-report-")) / "report.html"
    evoagent = str(Path(sys.executable).with_name("evoagent"))
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    built, _ = _timed([evoagent, "report", args.store, "-o", str(html)], 1)
    print(f"evoagent report: {built}; {html.stat().st_size / 1e6:.2f} MB")
    opened, problems = [], []
    for k in range(args.runs):  # a fresh browser and profile each time: nothing cached
        with Chromium(height=1000) as browser:
            got = browser.open_report(html)
            opened.append(got["ready_ms"] / 1000)
            problems += got["problems"]
            if k == 0:
                for name, c in got["panels"].items():
                    shown = "hidden (no data)" if c["hidden"] else (
                        f"{c['svg']} svg, {c['marks']} marks, {c['rows']} table rows, {c['steps']} steps")
                    print(f"  panel {name:<11} {shown}")
                browser.screenshot(out / "report.png", height=1500)
                browser.screenshot(out / "report_lineage.png", height=1300, scroll_to="#lineage")
                chosen = browser.evaluate("document.getElementById('transcript-body').textContent")
    print(f"opened in headless Chromium (navigation start to every panel drawn): median "
          f"{sorted(opened)[len(opened) // 2]:.2f} s of {len(opened)} cold opens (max {max(opened):.2f} s)")
    traj = chosen.split("trajectory ", 1)[1].split()[0][:32]
    for view in (["show"], ["lineage"]):
        took, text = _timed([evoagent, *view, args.store, traj], args.runs)
        print(f"\n$ evoagent {view[0]} STORE {traj}    # {took}\n{text.rstrip()}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    if problems:
        print("problems:\n  " + "\n  ".join(problems))
        return 1
    print(f"\nno console errors, no network requests; screenshots: {out / 'report.png'}, {out / 'report_lineage.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
