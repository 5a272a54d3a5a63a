"""What the writer knows of its archive, in memory: the stored trajectory ids, each with the
sources of its trajectory rows and the reward sources of its reward rows.

A batch's dedupe (is this id stored? under this source? with this reward source?) used to
join the batch with ``raw.trajectories`` and ``raw.rewards``: each such join scans the whole
archive (45 ms at 600k trajectories), several times per commit, so a generation's commit grew
with the archive. The writer owns the file (one writer), so it can keep these facts itself:
loaded from the file on its first write (a resume rebuilds them) and updated only after a
commit succeeds, they are exact. Entries share their value tuples (most trajectories have one
source and one reward source), so an entry costs about its id string and a dict slot.
"""
from __future__ import annotations

from collections.abc import Iterable

import duckdb

_NO: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())


class StoredFacts:
    """traj_id -> (sources of its trajectory rows, reward sources of its reward rows)."""

    def __init__(self) -> None:
        self._of: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._shared: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[tuple[str, ...], tuple[str, ...]]] = {}

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection) -> StoredFacts:
        """The facts of every stored trajectory (NULL sources never match a key, so they are left out)."""
        facts = cls()
        rows = con.execute(
            "SELECT t.traj_id, t.sources, coalesce(r.rws, []::VARCHAR[]) FROM "
            "(SELECT traj_id, list(DISTINCT source ORDER BY source) FILTER (WHERE source IS NOT NULL) AS sources "
            "FROM raw.trajectories GROUP BY traj_id) t LEFT JOIN "
            "(SELECT traj_id, list(DISTINCT reward_source ORDER BY reward_source) AS rws FROM raw.rewards "
            "WHERE reward_source IS NOT NULL AND traj_id IN (SELECT traj_id FROM raw.trajectories) "
            "GROUP BY traj_id) r USING (traj_id)"
        ).fetchall()
        for tid, sources, rws in rows:
            facts._of[tid] = facts._share((tuple(sources or ()), tuple(rws)))
        return facts

    def _share(self, value: tuple[tuple[str, ...], tuple[str, ...]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return self._shared.setdefault(value, value)

    def __len__(self) -> int:
        return len(self._of)

    def __contains__(self, traj_id: object) -> bool:
        return traj_id in self._of

    def stored(self, ids: Iterable[str]) -> list[str]:
        """The stored ones among ``ids`` (each once, in first-seen order)."""
        of = self._of
        return [i for i in dict.fromkeys(ids) if i in of]

    def sources(self, traj_id: str) -> tuple[str, ...]:
        return self._of.get(traj_id, _NO)[0]

    def reward_sources(self, traj_id: str) -> tuple[str, ...]:
        return self._of.get(traj_id, _NO)[1]

    def add(self, trajectories: Iterable[tuple[str, str | None]], rewards: Iterable[tuple[str, str | None]]) -> None:
        """Record committed rows: (traj_id, source) of trajectory rows, then (traj_id, reward_source)
        of reward rows (kept only for stored trajectories: a reward of an id not stored yet, e.g. a
        prefix's score, is not one of a trajectory's facts)."""
        of, share = self._of, self._share
        fresh: dict[str | None, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        for tid, src in trajectories:
            now = of.get(tid)
            if now is None:  # the usual case: a new id, one source
                if src not in fresh:
                    fresh[src] = share(((src,) if src is not None else (), ()))
                of[tid] = fresh[src]
            elif src is not None and src not in now[0]:
                of[tid] = share((tuple(sorted((*now[0], src))), now[1]))
        moved: dict[tuple[int, str], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        for tid, src in rewards:
            now = of.get(tid)
            if now is None or src is None or src in now[1]:
                continue
            nxt = moved.get((id(now), src))  # values are shared: one new value per (value, source)
            if nxt is None:
                nxt = moved[(id(now), src)] = share((now[0], tuple(sorted((*now[1], src)))))
            of[tid] = nxt
