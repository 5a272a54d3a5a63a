"""Build the documentation site and look at it in headless Chromium, offline.

    python experiments/docs_site.py [--site DIR] [--shots docs/]

Runs ``mkdocs build --strict`` (a broken link, a missing page or a failing generated
reference fails it), then opens every built page from ``file://`` in Debian's ``chromium``
with the network unused (the Chromium driver of ``report_screenshot.py``) and fails on any
request that leaves the file system (a web font, a CDN script), any console error or
uncaught exception. With ``--shots`` it saves ``site_home.png`` and ``site_guide.png`` (the
SQL guide) there: the screenshots in the docs come from this script.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_screenshot import Chromium  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GUIDE = "sql.html"


def build(site: Path) -> None:
    """``mkdocs build --strict`` into ``site``; a warning is an error (mkdocs.yml: strict)."""
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
                   cwd=ROOT, check=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def visit(browser: Chromium, page: Path, timeout_s: float = 30.0) -> list[str]:
    """Open one page and wait for it to finish loading; the problems seen meanwhile."""
    browser.events.clear()
    browser.send("Page.navigate", url=page.resolve().as_uri())
    deadline = time.monotonic() + timeout_s
    while browser.evaluate("document.readyState") != "complete" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # scripts that run after load (search index, code-copy buttons) get to request
    browser.evaluate("1")  # collect the events that came meanwhile
    return browser.problems()


def check_site(site: Path, shots: Path | None = None) -> dict[str, list[str]]:
    """Every page's problems (empty lists when all is well); screenshots into ``shots``."""
    pages = sorted(p for p in site.rglob("*.html") if p.name != "404.html")
    found: dict[str, list[str]] = {}
    with Chromium(width=1280, height=900) as browser:
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable")
        for page in pages:
            found[str(page.relative_to(site))] = visit(browser, page)
            if shots is not None and page.relative_to(site).as_posix() in ("index.html", GUIDE):
                name = "site_home.png" if page.name == "index.html" else "site_guide.png"
                browser.screenshot(shots / name, height=900, width=1280)
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--site", type=Path, help="build into this folder (default: a temporary one)")
    ap.add_argument("--shots", type=Path, help="save site_home.png and site_guide.png here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="evoagent-site-") as tmp:
        site = (args.site or Path(tmp) / "site").resolve()
        t = time.monotonic()
        build(site)
        print(f"mkdocs build --strict: {time.monotonic() - t:.1f} s, "
              f"{sum(1 for _ in site.rglob('*.html'))} pages")
        found = check_site(site, args.shots)
    bad = {page: probs for page, probs in found.items() if probs}
    for page, probs in bad.items():
        for p in probs:
            print(f"{page}: {p}")
    print(f"{len(found)} pages opened offline in headless Chromium: "
          + ("no outside request, no console error" if not bad else f"{len(bad)} with problems"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
