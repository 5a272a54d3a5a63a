"""Ancestry of trajectories: a breadth-first walk up the lineage that always ends.

The walk keeps a visited set and a depth bound, so a store whose lineage has
self-edges or cycles (stores written before lineage became a DAG) is walked
in at most one visit per trajectory. One function serves the terminal views
(one SQL query per level) and the HTML report (many roots at once).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from stores.base import Store


@dataclass(frozen=True)
class Edge:
    """``child`` was made from ``parent`` by ``operator`` in ``generation``."""

    child: str
    parent: str
    operator: str | None
    generation: int | None


@dataclass
class Ancestry:
    """The visited trajectories (with their distance from the nearest root) and the edges between them."""

    depth: dict[str, int] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    cut: set[str] = field(default_factory=set)  # reached the depth bound with parents left unwalked

    def parents(self) -> dict[str, list[Edge]]:
        """Edges grouped by child, in the order they were found."""
        out: dict[str, list[Edge]] = {}
        for e in self.edges:
            out.setdefault(e.child, []).append(e)
        return out


ParentsOf = Callable[[Sequence[str]], Iterable[Edge]]


def walk(parents_of: ParentsOf, roots: Sequence[str], max_depth: int | None = None) -> Ancestry:
    """Walk from ``roots`` up to ``max_depth`` generations of parents (None: all)."""
    result = Ancestry(depth={r: 0 for r in dict.fromkeys(roots)})
    frontier = list(result.depth)
    seen_edges: set[tuple[str, str, str | None]] = set()
    level = 0
    while frontier:
        if max_depth is not None and level >= max_depth:
            found = {e.child for e in parents_of(frontier) if e.child != e.parent}
            result.cut.update(found)
            break
        level += 1
        nxt: list[str] = []
        for e in parents_of(frontier):
            key = (e.child, e.parent, e.operator)
            if e.child == e.parent or key in seen_edges:
                continue
            seen_edges.add(key)
            result.edges.append(e)
            if e.parent not in result.depth:
                result.depth[e.parent] = level
                nxt.append(e.parent)
        frontier = nxt
    return result


def store_parents(store: Store) -> ParentsOf:
    """Parents from the store's ``lineage`` view, one query per call."""

    def parents_of(ids: Sequence[str]) -> list[Edge]:
        rows = store.query(
            "SELECT child_id, parent_id, operator, generation, min(parent_idx) AS k FROM lineage "
            "WHERE child_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL "
            "ORDER BY child_id, k NULLS LAST, parent_id", [list(ids)]
        ).to_pylist()
        return [Edge(r["child_id"], r["parent_id"], r["operator"], r["generation"]) for r in rows]

    return parents_of
