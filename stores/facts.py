"""What the writer knows of its archive, in memory: the stored trajectory ids, each with the
sources of its trajectory rows and the reward sources of its reward rows, and which
(id, reward source) pairs have reward rows for ids not stored as trajectories.

A batch's dedupe (is this id stored? under this source? with this reward source?) used to
join the batch with ``raw.trajectories`` and ``raw.rewards``: each such join scans the whole
archive (45 ms at 600k trajectories), several times per commit, so a generation's commit grew
with the archive. The writer owns the file (one writer), so it can keep these facts itself:
loaded from the file on its first write (a resume rebuilds them) and updated only after a
commit succeeds, they are exact. Entries share their value tuples (most trajectories have one
source and one reward source), so an entry costs about its id string and a dict slot.

A score may be written for an id before (or without) its trajectory: a prefix's score, whose id
is that of the shorter trajectory if it is ever committed. Such pairs are kept as 64-bit hashes
(:class:`_Hashes`, 8 bytes each), so a trajectory arriving later with a reward row of the same
source is still known to have one; a hash that matches is confirmed in ``raw.rewards``.
"""
from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable
from itertools import chain

import duckdb

_NO: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())


class _Hashes:
    """A set of 64-bit ints in about 8 bytes each: a sorted array, and a set of the recent ones
    merged into it once it holds an eighth as many."""

    def __init__(self, values: Iterable[int] = ()) -> None:
        self._sorted = array("q", sorted(set(values)))
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def __contains__(self, value: int) -> bool:
        if value in self._recent:
            return True
        a = self._sorted
        i = bisect_left(a, value)
        return i < len(a) and a[i] == value

    def add(self, value: int) -> None:
        if value in self:
            return
        self._recent.add(value)
        if len(self._recent) >= max(4096, len(self._sorted) >> 3):
            self._sorted = array("q", sorted(chain(self._sorted, self._recent)))
            self._recent.clear()


class StoredFacts:
    """traj_id -> (sources of its trajectory rows, reward sources of its reward rows), and the
    hashed (traj_id, reward_source) pairs of reward rows whose id had no trajectory row."""

    def __init__(self, con: duckdb.DuckDBPyConnection | None = None) -> None:
        self._of: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._shared: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._scored = _Hashes()
        self._con = con  # where a matching hash is confirmed

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection) -> StoredFacts:
        """The facts of every stored trajectory and reward (NULL sources never match a key, so
        they are left out)."""
        facts = cls(con)
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
        scored = con.execute(
            "SELECT DISTINCT r.traj_id, r.reward_source FROM raw.rewards r ANTI JOIN raw.trajectories t "
            "USING (traj_id) WHERE r.reward_source IS NOT NULL").fetchall()
        facts._scored = _Hashes(hash(p) for p in scored)
        return facts

    def _share(self, value: tuple[tuple[str, ...], tuple[str, ...]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return self._shared.setdefault(value, value)

    def __len__(self) -> int:
        return len(self._of)

    def __contains__(self, traj_id: object) -> bool:
        return traj_id in self._of

    def known(self, ids: list[str]) -> list[bool]:
        """Whether each of ``ids`` is stored, in order."""
        of = self._of
        return [i in of for i in ids]

    def stored(self, ids: Iterable[str]) -> list[str]:
        """The stored ones among ``ids`` (each once, in first-seen order)."""
        of = self._of
        return [i for i in dict.fromkeys(ids) if i in of]

    def sources(self, traj_id: str) -> tuple[str, ...]:
        return self._of.get(traj_id, _NO)[0]

    def rewarded(self, pairs: Iterable[tuple[str, str | None]]) -> set[tuple[str, str]]:
        """The (traj_id, reward_source) pairs among ``pairs`` that have a stored reward row."""
        of, scored = self._of, self._scored
        any_scored = len(scored) > 0
        out: set[tuple[str, str]] = set()
        maybe: set[tuple[str, str]] = set()
        for pair in pairs:
            tid, src = pair
            if src is None:
                continue
            if src in of.get(tid, _NO)[1]:
                out.add(pair)  # type: ignore[arg-type]
            elif any_scored and hash(pair) in scored:
                maybe.add(pair)  # type: ignore[arg-type]
        if maybe and self._con is not None:  # a hash matched: is the pair itself stored?
            ids = sorted({t for t, _ in maybe})
            found = self._con.execute(
                "SELECT DISTINCT traj_id, reward_source FROM raw.rewards WHERE traj_id IN (SELECT unnest($ids))",
                {"ids": ids}).fetchall()
            out.update(p for p in found if p in maybe)
        return out

    def add(self, trajectories: Iterable[tuple[str, str | None]], rewards: Iterable[tuple[str, str | None]]) -> None:
        """Record committed rows: (traj_id, source) of trajectory rows, then (traj_id, reward_source)
        of reward rows (of an id not stored as a trajectory, e.g. a prefix's score, as a hash)."""
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
        for pair in rewards:
            tid, src = pair
            if src is None:
                continue
            now = of.get(tid)
            if now is None:
                self._scored.add(hash(pair))
                continue
            if src in now[1]:
                continue
            nxt = moved.get((id(now), src))  # values are shared: one new value per (value, source)
            if nxt is None:
                nxt = moved[(id(now), src)] = share((now[0], tuple(sorted((*now[1], src)))))
            of[tid] = nxt
