"""Labelled step prefixes from a store: what a process reward model learns from.

A PRM answers "does this prefix lead to success?". Every step ``i`` of every
stored trajectory gives one prefix (its actions ``0..i`` with what the
environment answered); its label comes from one of three sources:

- ``outcome``: the trajectory's final success (outcome reward 1.0 at submit),
  for every one of its steps (outcome supervision, as ORM-style PRM training).
- ``oracle``: 1.0 when this step or a later step of the same trajectory
  produced a result that gold accepts (its per-step environment reward is
  1.0), else 0.0: the prefix was continued, in this episode, to a correct
  answer, whether or not that answer was the last one before submit.
- ``mc``: the campaign's Monte-Carlo value of the prefix (rows of the
  ``rewards`` table from ``mc(...)`` sources, keyed like the campaign's own
  queries: the last step of a trajectory by its submitted episode), a soft
  label in [0, 1]; steps with no such row are left out.

The last step of a trajectory is its submitted episode (a terminal prefix,
rendered with the submit, :func:`evoagent.rm.text.submitted`): under
``outcome`` and ``oracle`` its label is the trajectory's success. A prefix
reached by several trajectories is one example whose (soft) label is the mean
of theirs. Gold enters only through the labels, never the text.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from evoagent.errors import UserError
from evoagent.rm.text import submitted
from evoagent.trajectory import Task, trajectory_id

__all__ = ["LABELS", "Episode", "Example", "episodes", "examples", "store_tasks"]

LABELS = ("mc", "oracle", "outcome")
OBS_CHARS = 4000  # observations are read clipped: prefix_text shows at most 400 characters of each


@dataclass(frozen=True)
class Episode:
    """One stored trajectory with its steps (gold-derived fields are for labels only)."""

    traj_id: str
    task_id: str
    actions: tuple[str, ...]
    observations: tuple[str | None, ...]
    rewards: tuple[float | None, ...]
    outcome: float

    @property
    def solved(self) -> bool:
        return self.outcome >= 1.0


@dataclass(frozen=True)
class Example:
    """One distinct prefix, its label (mean over the trajectories through it) and how many there were."""

    task_id: str
    actions: tuple[str, ...]
    observations: tuple[str | None, ...]
    label: float
    count: int


def store_tasks(store: Any) -> dict[str, Task]:
    """The store's tasks as the campaign saw them (question, database, tables): rebuilt from the
    stored campaign, or for a store of imported runs its environments' bundled tasks."""
    from evoagent import campaign
    from evoagent.envs import default_tasks, select_tasks

    rows = store.query("SELECT task_id, env FROM tasks").to_pylist()
    ids = {r["task_id"] for r in rows}
    stored = store.get_meta("campaign")
    if stored is not None:  # validated when it started; keys added since then take their defaults
        tasks = select_tasks(campaign.load_stored(stored))
    else:
        tasks = [t for env in sorted({r["env"] for r in rows if r["env"]}) for t in default_tasks(env)]
    found = {t.task_id: t for t in tasks if t.task_id in ids}
    if not found:
        raise UserError(f"{store.path}: no tasks to learn from")
    return found


def episodes(store: Any, task_ids: Iterable[str] | None = None) -> list[Episode]:
    """Every distinct trajectory with steps (of ``task_ids`` when given), in id order."""
    where, params = "", []
    if task_ids is not None:
        ids = sorted(set(task_ids))
        if not ids:
            return []
        where, params = "WHERE t.task_id IN (SELECT unnest(?::VARCHAR[]))", [ids]
    rows = store.query(
        "WITH t AS (SELECT traj_id, any_value(task_id) AS task_id, max(outcome_reward) AS outcome "
        "FROM trajectories GROUP BY traj_id), "
        "s AS (SELECT traj_id, idx, any_value(action) AS action, "
        f"any_value(left(observation, {OBS_CHARS})) AS obs, any_value(reward) AS reward "
        "FROM steps GROUP BY traj_id, idx) "
        "SELECT t.traj_id, t.task_id, t.outcome, list(s.action ORDER BY s.idx) AS actions, "
        "list(s.obs ORDER BY s.idx) AS obs, list(s.reward ORDER BY s.idx) AS rewards "
        f"FROM t JOIN s USING (traj_id) {where} GROUP BY ALL ORDER BY t.traj_id", params).to_pylist()
    return [Episode(r["traj_id"], r["task_id"], tuple(r["actions"]), tuple(r["obs"]), tuple(r["rewards"]),
                    float(r["outcome"] or 0.0)) for r in rows]


def prefix(ep: Episode, i: int) -> tuple[tuple[str, ...], tuple[str | None, ...]]:
    """(actions, observations) of step ``i``'s prefix as models read it: the last step submitted."""
    if i == len(ep.actions) - 1:
        return submitted(ep.actions, ep.observations)
    return ep.actions[: i + 1], ep.observations[: i + 1]


def query_key(ep: Episode, i: int) -> tuple[str, int]:
    """The ``rewards`` key a campaign gives step ``i`` of ``ep`` (the last step: the submitted episode)."""
    acts = ep.actions[: i + 1] + (("submit",) if i == len(ep.actions) - 1 else ())
    return trajectory_id(ep.task_id, acts), i


def _mc_values(store: Any, eps: Sequence[Episode]) -> dict[tuple[str, int], float]:
    rows = store.query("SELECT traj_id, step_idx, avg(value) AS v FROM rewards WHERE reward_source LIKE 'mc(%' "
                       "AND step_idx IS NOT NULL GROUP BY ALL").to_pylist()
    return {(r["traj_id"], r["step_idx"]): float(r["v"]) for r in rows}


def step_labels(ep: Episode, labels: str, mc: dict[tuple[str, int], float] | None = None) -> list[float | None]:
    """The label of each step of one episode under ``labels`` (None: no label for that step)."""
    n = len(ep.actions)
    if labels == "outcome":
        return [1.0 if ep.solved else 0.0] * n
    if labels == "oracle":
        out: list[float | None] = [0.0] * n
        reached = 0.0
        for i in range(n - 1, -1, -1):
            r = ep.rewards[i]
            reached = max(reached, 1.0 if r is not None and r >= 1.0 else 0.0)
            out[i] = reached
        return out
    assert mc is not None
    return [mc.get(query_key(ep, i)) for i in range(n)]


def examples(store: Any, eps: Sequence[Episode], labels: str) -> list[Example]:
    """One example per distinct prefix (task, actions) of ``eps``, labelled by ``labels``."""
    if labels not in LABELS:
        raise UserError(f"--labels: unknown label source {labels!r} (have {', '.join(LABELS)})")
    mc = _mc_values(store, eps) if labels == "mc" else None
    if mc is not None and not mc:
        raise UserError(f"{store.path}: no mc step values in its rewards table; run a campaign with "
                        "search.reward = mc, or use --labels oracle or outcome")
    sums: dict[tuple[str, tuple[str, ...]], list[Any]] = {}
    for ep in eps:
        for i, y in enumerate(step_labels(ep, labels, mc)):
            if y is None:
                continue
            actions, observations = prefix(ep, i)
            key = (ep.task_id, actions)
            acc = sums.get(key)
            if acc is None:
                sums[key] = [y, 1, observations]
            else:
                acc[0] += y
                acc[1] += 1
    return [Example(t, a, obs, total / n, n) for (t, a), (total, n, obs) in sums.items()]


def data_digest(exs: Sequence[Example]) -> str:
    """A content hash of the training examples (prefixes and labels): what the model learned from."""
    h = hashlib.blake2b(digest_size=8)
    for ex in sorted(exs, key=lambda e: (e.task_id, e.actions)):
        h.update(trajectory_id(ex.task_id, ex.actions).encode() + f":{ex.label:.6f};".encode())
    return h.hexdigest()
