"""The HTML report: one self-contained file (SVG charts, styles, script and data inlined; no library loaded).

Data goes into the page as one JSON document inside ``<script
type="application/json">``, with ``<``, ``>`` and ``&`` escaped so that no
text from the store (an observation holding ``</script>``, say) can end the
element; the page's script renders text only through ``textContent``.
Strings repeat a lot between trajectories of a task (the same observation,
the same action), so every string is stored once and referred to by index.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

from evoagent.report import data, figures
from evoagent.report.ancestry import Ancestry, store_parents, walk
from stores.base import Store

# Longest text kept per thought/action/observation (the page shows a shorter head, expandable).
TEXT_CAP = 4000
# Characters of distinct transcript text embedded at most; past it, further transcripts are left
# out (best trajectories first, then their ancestors nearest first) and the page says so.
TEXT_BUDGET = 8_000_000


class Strings:
    """An interning table: each distinct string once, referred to by its index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.chars = 0

    def __call__(self, text: Any, cap: int | None = None) -> int | None:
        if text is None:
            return None
        s = str(text)
        if cap is not None and len(s) > cap:
            s = s[:cap] + f"\n… [{len(s) - cap} more characters: evoagent show --full]"
        if s not in self.index:
            self.index[s] = len(self.index)
            self.chars += len(s)
        return self.index[s]

    def table(self) -> list[str]:
        return list(self.index)


def collect(store: Store) -> dict[str, Any]:
    """Everything the page shows, as one JSON-ready document."""
    best = data.best_per_task(store)
    roots = [b["traj_id"] for b in best]
    tree = walk(store_parents(store), roots)
    info = data.trajectories(store, list(tree.depth))
    strings = Strings()
    order = sorted(tree.depth, key=lambda t: (tree.depth[t], data.natural_key(info.get(t, {}).get("task_id")), t))
    node_of = {t: i for i, t in enumerate(order)}
    nodes = [_node(strings, t, info.get(t, {})) for t in order]
    _add_transcripts(store, strings, nodes, order)
    edges = [[node_of[e.child], node_of[e.parent], strings(e.operator), e.generation] for e in tree.edges]
    gens, ops, cost = data.progress(store), data.operators(store), data.costs(store)
    figs: dict[str, str] = {}  # a panel without data is left out, not drawn as an empty box
    if gens:
        figs["progress"] = figures.progress(gens)
    if ops:
        figs["operators"] = figures.operators(ops)
    if cost["work"] or cost["llm"]:
        figs["cost"] = figures.costs(cost)
    if (found := data.search(store)):
        figs["search"] = figures.search(found)
    if (scored := data.reward_models(store)):
        figs["rewards"] = figures.reward_models(scored)
    c = data.campaign(store)
    return {
        "meta": {"campaign": c.get("name") or "(imported data)", "store": str(store.path),
                 "read_from": _read_from(store), "generated_at": _when(time.time()),
                 "tasks": len(best), "nodes": len(nodes), "edges": len(edges), "text_cap": TEXT_CAP},
        "figures": figs,
        "progress": gens,
        "budget": cost["budget"],
        "operators": ops,
        "best": [[node_of[b["traj_id"]], b["db"], b["hardness"], strings(b["question"]), b["tried"]] for b in best],
        "nodes": nodes, "edges": edges, "cut": sorted(node_of[t] for t in tree.cut),
        "default": _default_root(tree, roots, node_of, {t: i.get("outcome_reward") for t, i in info.items()}),
        "strings": strings.table(),
    }


def _read_from(store: Store) -> str:
    """What the numbers come from: the file itself, or the snapshot a running campaign last published."""
    published = getattr(store, "published_at", None)
    return "the store file" if published is None else f"its snapshot of {_when(published)}"


def _when(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _node(strings: Strings, traj_id: str, t: dict[str, Any]) -> list[Any]:
    # [id, task, reward, steps, generation, operator, source, transcript or None]
    return [traj_id, strings(t.get("task_id")), t.get("outcome_reward"), t.get("n_steps"), t.get("generation"),
            strings(t.get("operator")), strings(t.get("source")), None]


def _add_transcripts(store: Store, strings: Strings, nodes: list[list[Any]], order: list[str],
                     chunk: int = 2000) -> None:
    """Steps of each node, in priority order, until the text budget is spent."""
    before = strings.chars
    for start in range(0, len(order), chunk):
        ids = order[start:start + chunk]
        got = data.steps(store, ids)
        for k, tid in enumerate(ids, start):
            if strings.chars - before > TEXT_BUDGET:
                return
            nodes[k][7] = [[strings(s["thought"], TEXT_CAP), strings(s["action"], TEXT_CAP),
                            strings(s["observation"], TEXT_CAP), s["reward"], s["valid"], s["process_reward"]]
                           for s in got.get(tid, [])]


def _default_root(tree: Ancestry, roots: list[str], node_of: dict[str, int], reward: dict[str, Any]) -> int | None:
    """The highest-reward best trajectory with the longest ancestry: the most to look at first."""
    if not roots:
        return None
    parents = tree.parents()

    def height(root: str) -> int:
        seen, frontier, h = {root}, [root], 0
        while frontier:
            nxt = [e.parent for t in frontier for e in parents.get(t, []) if e.parent not in seen]
            seen.update(nxt)
            frontier = list(dict.fromkeys(nxt))
            h += bool(frontier)
        return h

    def key(kr: tuple[int, str]) -> tuple[float, int, int]:
        r = reward.get(kr[1])
        return (r if r is not None else float("-inf"), height(kr[1]), -kr[0])

    return node_of[max(enumerate(roots), key=key)[1]]


def _asset(name: str) -> str:
    return resources.files("evoagent.report").joinpath("assets", name).read_text(encoding="utf-8")


def safe_json(doc: Any) -> str:
    """JSON that can sit inside a <script> element whatever the strings hold."""
    # ASCII only: lone surrogates and line separators become escapes too.
    text = json.dumps(doc, ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=str)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


OPTIONAL = {"search": "step-level search", "rewards": "reward models"}


def _reload(refresh_s: float | None, note: str) -> tuple[str, str]:
    """The head's reload tag and the header's line for a report rewritten every ``refresh_s`` seconds."""
    if not refresh_s:
        return "", ""
    written = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (f'<meta http-equiv="refresh" content="{refresh_s:g}">',
            f'<p id="live">{html.escape(note)}: rewritten every {refresh_s:g} s while the campaign runs '
            f"(this one at {written}); the page reloads itself</p>")


def waiting_page(store_path: str, refresh_s: float) -> str:
    """What ``report --every`` writes before the store has any trajectory: a page that reloads itself."""
    head, line = _reload(refresh_s, f"no trajectories yet in {store_path}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{head}<title>evoagent report</title>"
            f"<style>{_asset('report.css')}</style></head><body><header><h1>evoagent report</h1>{line}</header>"
            "</body></html>\n")


def render(doc: dict[str, Any], refresh_s: float | None = None) -> str:
    """The whole page as one string; the charts are inline SVG, everything else is drawn by the page's script.

    ``refresh_s``: the page reloads itself at that pace (``report --every``) and says when it was written."""
    figs = doc.pop("figures")
    head, line = _reload(refresh_s, "live")
    body = _asset("body.html").replace('<p id="meta"></p>', f'<p id="meta"></p>{line}', 1)
    fixed = [n for n in ("progress", "operators", "cost") if n in figs]
    for name in ("progress", "operators", "cost"):
        if name in figs:
            body = body.replace(f"<!--fig:{name}-->", figs[name])
        else:  # no data: the panel and its link are hidden
            body = body.replace(f'<section id="{name}" class="panel">', f'<section id="{name}" class="panel" hidden>')
            body = body.replace(f'<a href="#{name}">{name}</a> ', "")
    if not doc["edges"]:  # no trajectory has a parent (imported runs, one-round strategies): no lineage to draw
        body = body.replace('<section id="lineage" class="panel">', '<section id="lineage" class="panel" hidden>')
        body = body.replace(' <a href="#lineage">lineage</a>', "")
    present = [n for n in OPTIONAL if n in figs]
    body = body.replace("<!--nav:optional-->", " ".join(f'<a href="#{n}">{OPTIONAL[n]}</a>' for n in present))
    body = body.replace("<!--panels:optional-->", "".join(
        f'<section id="{n}" class="panel"><div class="plot">{figs[n]}</div></section>' for n in present))
    doc["panels"] = [*fixed, *present]
    return (
        f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{head}"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>evoagent report</title>"
        f"<style>{_asset('report.css')}</style></head><body>{body}"
        f"<script type=\"application/json\" id=\"report-data\">{safe_json(doc)}</script>"
        f"<script>{_asset('report.js')}</script></body></html>\n"
    )


def write_page(text: str, out: str | Path) -> Path:
    """Write a page atomically: a browser (re)loading it never sees half a file."""
    target = Path(out)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_report(store: Store, out: str | Path, refresh_s: float | None = None) -> dict[str, Any]:
    """Collect, render and write the report atomically (a reader never sees half a file)."""
    doc = collect(store)
    target = write_page(render(doc, refresh_s), out)  # render takes the figures out of doc
    return {"path": str(target), "bytes": target.stat().st_size, "tasks": doc["meta"]["tasks"],
            "trajectories": doc["meta"]["nodes"],
            "transcripts": sum(1 for n in doc["nodes"] if n[7] is not None), "panels": doc["panels"]}
