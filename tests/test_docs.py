"""The documentation's structure, checked fast (``mkdocs build --strict`` and the browser check run in
``.ci/run`` through experiments/docs_site.py): every page is in mkdocs.yml's nav, every page the nav
names exists, every relative link and image of a page or of the README points at a file that exists,
and the README stays short."""
from __future__ import annotations

import re
from pathlib import Path

from readme_commands import MKDOCS, README, doc_pages  # experiments/ (conftest)

DOCS = README.parent / "docs"
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.relative_to(DOCS).parts)


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    listed = doc_pages()
    missing = [str(p.relative_to(DOCS)) for p in pages() if p not in listed]
    assert missing == [], f"add these pages to the nav of {MKDOCS.name}: {missing}"
    assert [str(p) for p in listed if not p.exists()] == []
    assert len(set(listed)) == len(listed)


def broken_links(page: Path) -> list[str]:
    text = _FENCE.sub("", page.read_text())
    bad = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#")[0]
        if path and not (page.parent / path).exists():
            bad.append(f"{page.name}: {target}")
    return bad


def test_relative_links_and_images_point_at_files() -> None:
    assert [b for p in [README, *pages()] for b in broken_links(p)] == []


def test_the_readme_is_a_page_or_two() -> None:
    assert len(README.read_text().splitlines()) <= 250
