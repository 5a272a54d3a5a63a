"""The offline replay policies: real recorded LLM actions, recombined.

For each task they keep every action a recorded agent (GPT-4, GPT-3.5, a human)
took, and for each action what that agent did next. A rollout is a walk on
that graph: start where some agent started, continue as some agent that took
the same action continued, and with probability ``explore`` jump to any other
action of the task's pool. They never see the gold answer or any reward; their
choices depend only on the history's actions and observations, the guidance,
the task's schema and the per-item random generator, so the same seed gives
the same rollout.

When to submit is the part that differs:

- ``replay`` (the default) stops by its own rule: after every executed action
  it proposes ``submit`` with the fixed probability ``submit_p`` (default
  0.3), whatever the action was. Where a recording ended plays no part.
- ``replay_recorder_stops`` follows the recorders' stopping: ``submit`` is the
  edge after each recording's last action. InterCode's recordings end at the
  first action whose reward is 1 (every solved GPT-4/GPT-3.5 run ends exactly
  there), so this walk mostly submits right after a gold-correct action: the
  recorders' gold leaks into when it stops. It is kept only to reproduce
  figures measured before the change; never use it to compare methods.

Both can mix schema-aware SQL edits (``evoagent.envs.intercode_sql.edits``) in:
``distractors`` is the share of each task's pool made of edits of its recorded
actions (near misses, fixed per task; ``n = round(s / (1 - s) * recorded)``),
and ``edit_p`` the probability that a step proposes an edit of an action
already executed in the episode, with values from its observations. An edit
that no recording of the task contains has a thought starting with
``NOVEL_SQL``; the store counts tasks solved that way by SQL on ``steps``.
"""
from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Sequence

from evoagent.errors import UserError
from evoagent.policies.base import SUBMIT, Action, Guidance, is_submit
from evoagent.trajectory import Step, Task, Trajectory

SUBMIT_P = 0.3
NOVEL_SQL = "novel SQL"  # thought prefix of an edit absent from every recording of the task


class ReplayPolicy:
    """Walks the graph of recorded actions and submits by its own rule; see the module docstring."""

    name = "replay"
    recorder_stops = False

    def __init__(self, runs: Iterable[Trajectory], *, explore: float = 0.1, submit_p: float = SUBMIT_P,
                 distractors: float = 0.0, edit_p: float = 0.0, recorded: Iterable[Trajectory] | None = None):
        if not 0.0 <= explore <= 1.0:
            raise UserError(f"policy.explore must be within [0, 1], got {explore}")
        if not 0.0 <= submit_p <= 1.0:
            raise UserError(f"policy.submit_p must be within [0, 1], got {submit_p}")
        if not 0.0 <= distractors < 1.0:
            raise UserError(f"policy.distractors must be within [0, 1), got {distractors}")
        if not 0.0 <= edit_p <= 1.0:
            raise UserError(f"policy.edit_p must be within [0, 1], got {edit_p}")
        self.explore, self.submit_p, self.distractors, self.edit_p = explore, submit_p, distractors, edit_p
        self._starts: dict[str, list[str]] = {}
        self._next: dict[str, dict[str, list[str]]] = {}
        self._recorded: dict[str, list[str]] = {}
        runs = list(runs)
        for run in runs:
            # only what the recorder executed: a logged but never-executed action (``blocked``: the
            # provider gave no answer; no observation) is no action of the agent's to propose
            acts = [s.action for s in run.steps if s.observation is not None and s.action.strip()]
            if not acts:
                continue
            self._starts.setdefault(run.task_id, []).append(acts[0])
            nxt = self._next.setdefault(run.task_id, {})
            for i, a in enumerate(acts):
                nxt.setdefault(a, [])
                if i + 1 < len(acts):
                    nxt[a].append(acts[i + 1])
                elif self.recorder_stops:
                    nxt[a].append(SUBMIT)  # the recording ended here (solved runs: at gold)
        for task_id, nxt in self._next.items():
            self._recorded[task_id] = sorted(nxt)
        self._known = self._every_recorded(runs if recorded is None else recorded)
        self._pools: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _every_recorded(runs: Iterable[Trajectory]) -> dict[str, frozenset[str]]:
        from evoagent.envs.intercode_sql.edits import normal

        seen: dict[str, set[str]] = {}
        for run in runs:
            seen.setdefault(run.task_id, set()).update(normal(s.action) for s in run.steps)
        return {k: frozenset(v) for k, v in seen.items()}

    @classmethod
    def from_bundled(cls, sources: Sequence[str] | None = None, **options: float) -> ReplayPolicy:
        """Build from the recorded InterCode-SQL runs shipped with evoagent (options: see ``__init__``)."""
        from evoagent.envs.intercode_sql.data import bundled_runs, load_recorded

        files = bundled_runs()
        chosen = list(sources) if sources else sorted(files)
        unknown = [s for s in chosen if s not in files]
        if unknown:
            raise UserError(
                f"policy.sources: unknown recorded source {unknown[0]!r} (have {', '.join(sorted(files))})"
            )
        every = {s: load_recorded(files[s]) for s in sorted(files)}
        runs = [t for s in chosen for t in every[s]]
        return cls(runs, recorded=[t for ts in every.values() for t in ts], **options)

    def recorded_pool(self, task_id: str) -> list[str]:
        """Every distinct recorded action for a task."""
        return list(self._recorded.get(task_id, ()))

    def pool(self, task_id: str, task: Task | None = None) -> list[str]:
        """The policy's fixed repertoire for a task: its recorded actions plus its distractors.

        Distractors are edits of the recorded actions, drawn once per task from a generator
        seeded by the task id, with the task's schema (``task``; none without it).
        """
        with self._lock:
            found = self._pools.get(task_id)
        if found is not None:
            return list(found)
        recorded = self._recorded.get(task_id, [])
        made = list(recorded)
        if self.distractors and recorded and task is not None:
            made += self._distractors(task, recorded)
        with self._lock:
            self._pools.setdefault(task_id, made)
        return list(made)

    def _distractors(self, task: Task, recorded: list[str]) -> list[str]:
        from evoagent.envs.intercode_sql.edits import edit, normal

        want = round(self.distractors / (1.0 - self.distractors) * len(recorded))
        rng = random.Random(f"distractors:{task.task_id}")
        have = {normal(a) for a in recorded}
        out: list[str] = []
        for _ in range(4 * want):
            if len(out) >= want:
                break
            got = edit(rng.choice(recorded), task.meta.get("schema") or {}, [], rng)
            if got is not None and normal(got[1]) not in have:
                have.add(normal(got[1]))
                out.append(got[1])
        return out

    def novel(self, task_id: str, sql: str) -> bool:
        """Whether no recording of the task (any bundled source) contains ``sql``."""
        from evoagent.envs.intercode_sql.edits import normal

        return normal(sql) not in self._known.get(task_id, frozenset())

    def _edit(self, task: Task, history: Sequence[Step], blocked: set[str], rng: random.Random) -> Action | None:
        from evoagent.envs.intercode_sql.edits import edit, observed_values

        executed = [s for s in history if s.observation is not None and not is_submit(s.action)]
        if not executed:
            return None
        values = observed_values([s.observation for s in history])
        for base in rng.sample(executed, min(len(executed), 3)):  # a few tries: not every query parses
            got = edit(base.action, task.meta.get("schema") or {}, values, rng)
            if got is not None and got[1] not in blocked:
                kind, sql = got
                label = NOVEL_SQL if self.novel(task.task_id, sql) else "recorded SQL"
                return Action(sql, thought=f"{label}: {kind} of step {base.idx}")
        return None

    def next_action(
        self, task: Task, history: Sequence[Step], guidance: Guidance, rng: random.Random
    ) -> Action:
        if history and not self.recorder_stops and rng.random() < self.submit_p:
            return Action(SUBMIT, thought=f"submit after an action with probability {self.submit_p}")
        done = {s.action for s in history}
        blocked = done | guidance.avoid
        if history and self.edit_p and rng.random() < self.edit_p:
            action = self._edit(task, history, blocked, rng)
            if action is not None:
                return action
        if history:
            follow = self._next.get(task.task_id, {}).get(history[-1].action, [])
        else:
            follow = self._starts.get(task.task_id, [])
        follow = [a for a in follow if a == SUBMIT or a not in blocked]
        explore = rng.random() < self.explore
        if follow and not explore:  # the repertoire is not needed (nor built) for this step
            return Action(rng.choice(follow), thought="as a recorded agent continued")
        pool = [a for a in self.pool(task.task_id, task) if a not in blocked]
        if follow and not pool:
            return Action(rng.choice(follow), thought="as a recorded agent continued")
        if pool:
            pick = rng.choice(pool)
            recorded = pick in self._next.get(task.task_id, {})
            if recorded:
                return Action(pick, thought="another recorded action for this task")
            label = NOVEL_SQL if self.novel(task.task_id, pick) else "recorded SQL"
            return Action(pick, thought=f"{label}: a distractor (an edit of a recorded action)")
        return Action(SUBMIT, thought="no untried recorded action left")


class RecorderStopsReplayPolicy(ReplayPolicy):
    """The walk before its own stopping rule: submits where the recordings ended (at gold when solved).

    Only for reproducing old figures; see the module docstring.
    """

    name = "replay_recorder_stops"
    recorder_stops = True
