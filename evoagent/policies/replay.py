"""The offline ``replay`` policy: real recorded LLM actions, recombined.

For each task it keeps every action a recorded agent (GPT-4, GPT-3.5, a human)
took, and for each action what that agent did next. A rollout is a walk on
that graph: start where some agent started, continue as some agent that took
the same action continued, and with probability ``explore`` jump to any other
recorded action of the task. It never sees the gold answer or any reward; its
choices depend only on the history's actions, the guidance and the per-item
random generator, so the same seed gives the same rollout.
"""
from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from evoagent.errors import UserError
from evoagent.policies.base import SUBMIT, Action, Guidance
from evoagent.trajectory import Step, Task, Trajectory


class ReplayPolicy:
    """Walks the graph of recorded actions; see the module docstring."""

    name = "replay"

    def __init__(self, runs: Iterable[Trajectory], *, explore: float = 0.1):
        if not 0.0 <= explore <= 1.0:
            raise UserError(f"policy.explore must be within [0, 1], got {explore}")
        self.explore = explore
        self._starts: dict[str, list[str]] = {}
        self._next: dict[str, dict[str, list[str]]] = {}
        self._pool: dict[str, list[str]] = {}
        for run in runs:
            # only what the recorder executed: a logged but never-executed action (``blocked``: the
            # provider gave no answer; no observation) is no action of the agent's to propose
            acts = [s.action for s in run.steps if s.observation is not None and s.action.strip()]
            if not acts:
                continue
            self._starts.setdefault(run.task_id, []).append(acts[0])
            nxt = self._next.setdefault(run.task_id, {})
            for i, a in enumerate(acts):
                nxt.setdefault(a, []).append(acts[i + 1] if i + 1 < len(acts) else SUBMIT)
        for task_id, nxt in self._next.items():
            self._pool[task_id] = sorted(nxt)

    @classmethod
    def from_bundled(cls, sources: Sequence[str] | None = None, *, explore: float = 0.1) -> ReplayPolicy:
        """Build from the recorded InterCode-SQL runs shipped with evoagent."""
        from evoagent.envs.intercode_sql.data import bundled_runs, load_recorded

        files = bundled_runs()
        chosen = list(sources) if sources else sorted(files)
        unknown = [s for s in chosen if s not in files]
        if unknown:
            raise UserError(
                f"policy.sources: unknown recorded source {unknown[0]!r} (have {', '.join(sorted(files))})"
            )
        runs = [t for s in chosen for t in load_recorded(files[s])]
        return cls(runs, explore=explore)

    def pool(self, task_id: str) -> list[str]:
        """Every distinct recorded action for a task (the policy's whole repertoire)."""
        return list(self._pool.get(task_id, ()))

    def next_action(
        self, task: Task, history: Sequence[Step], guidance: Guidance, rng: random.Random
    ) -> Action:
        done = {s.action for s in history}
        blocked = done | guidance.avoid
        pool = [a for a in self._pool.get(task.task_id, ()) if a not in blocked]
        if history:
            follow = self._next.get(task.task_id, {}).get(history[-1].action, [])
        else:
            follow = self._starts.get(task.task_id, [])
        follow = [a for a in follow if a == SUBMIT or a not in blocked]
        explore = rng.random() < self.explore
        if follow and not (explore and pool):
            return Action(rng.choice(follow), thought="as a recorded agent continued")
        if pool:
            return Action(rng.choice(pool), thought="another recorded action for this task")
        return Action(SUBMIT, thought="no untried recorded action left")
