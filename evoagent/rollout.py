"""Executing trajectories: every child an operator makes is run in the environment.

``Context`` is what operators receive besides their parents and generator: the
task table, the policy, a per-thread environment and the step limit. Nothing
here is a text edit of an old trajectory: ``rollout`` re-executes a prefix of
actions and then lets the policy continue, so every observation and reward of
a child comes from the environment. ``begin`` executes a prefix once for
callers that continue it many times (Monte-Carlo scoring, the step searches'
candidates, MCTS's children); on an environment that can snapshot its state
(``envs.base.Restorable``) each ``rollout(start=...)`` or ``begin(start=...)``
restores it instead of re-executing the prefix, and can take further given
actions from there. ``finish`` submits a started episode as it is and says
whether any action could still follow.
"""
from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from evoagent.envs.base import Restorable
from evoagent.registry import environment, policy_part, settings_of
from evoagent.policies.base import SUBMIT, Action, Guidance, Policy, is_submit, masked
from evoagent.trajectory import Step, Task, Trajectory

if TYPE_CHECKING:
    from evoagent.envs.base import Env
    from evoagent.llm.advisor import Advisor
    from evoagent.llm.client import Budget
    from evoagent.rewards.signal import Signal


@dataclass
class Context:
    """Shared, read-only inputs of every operator call (safe across threads)."""

    tasks: dict[str, Task]
    policy: Policy
    make_env: Callable[[], Env]
    max_steps: int = 10
    advisor: Advisor | None = None  # the LLM side of the operators, when the policy is an LLM
    budget: Budget | None = None  # shared by every LLM call of the campaign
    closers: list[Callable[[], None]] = field(default_factory=list)  # release LLM clients, threads
    settings: dict[str, Any] = field(default_factory=dict)  # the campaign's validated keys, by path
    search: Signal | None = None  # search.reward: every step-level decision of the operators
    fitness: Signal | None = None  # fitness.reward, when not the outcome against gold (None)

    def keys_of(self, part: Any) -> Any:
        """What ``part`` (an operator) reads: its own keys and the engine's, frozen (``registry.Settings``)."""
        from evoagent.campaign import BASE
        from evoagent.registry import Settings

        return Settings(part, self.settings, BASE)

    def close(self) -> None:
        for close in self.closers:
            close()
        self.closers.clear()
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _shown: dict[str, tuple[Task, Task]] = field(default_factory=dict, repr=False)  # see shown()

    def shown(self, task: Task) -> Task:
        """``task`` as a policy may see it: no gold answer (made once per task, not per episode)."""
        hit = self._shown.get(task.task_id)
        if hit is None or hit[0] is not task:
            hit = self._shown[task.task_id] = (task, replace(task, gold=""))
        return hit[1]

    def env(self) -> Env:
        """This thread's environment (environments hold a cursor; never share one)."""
        env = getattr(self._local, "env", None)
        if env is None:
            env = self._local.env = self.make_env()
        return env

    def view(self, traj: Trajectory) -> Trajectory:
        """``traj`` as operators decide on it: rewarded by the search signal (the oracle without one)."""
        return traj if self.search is None else self.search.view(traj)


@dataclass(frozen=True)
class Rollout:
    """A finished episode and how many environment executions it took."""

    trajectory: Trajectory
    env_steps: int
    # Step-level search facts (stores.base.Candidate / Simulation) committed with the item.
    candidates: tuple[Any, ...] = ()
    simulations: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Started:
    """A prefix executed once, for several rollouts to continue from (``begin``).

    ``state`` is the environment's snapshot after ``steps`` (``envs.base.Restorable``);
    None when the environment has none: then nothing was executed (``steps`` is
    empty) and every rollout from it re-executes ``actions``, as without ``begin``.
    ``executed``: the environment executions the ``begin`` call that made it ran.
    """

    task: Task
    actions: tuple[str, ...]
    steps: tuple[Step, ...] = ()
    done: bool = False
    state: Any = None
    executed: int = 0

    @property
    def env_steps(self) -> int:
        """Environment executions ``begin`` made (the rollouts from it count only their own)."""
        return self.executed


class _Episode:
    """One episode in this thread's environment: the steps taken so far and what the policy sees."""

    def __init__(self, ctx: Context, task: Task, start: Started | None = None):
        self.env = ctx.env()
        self.steps: list[Step] = []
        self.seen: list[Step] = []  # the same steps with rewards masked, built once each
        self.done = False
        self.restored = 0  # steps taken over from ``start`` rather than executed here
        if start is not None and start.state is not None:
            self.env.restore(start.state)  # type: ignore[attr-defined]
            self.steps, self.done, self.restored = list(start.steps), start.done, len(start.steps)
            self.seen = list(masked(start.steps))
        else:
            self.env.reset(task)

    def act(self, text: str, thought: str = "") -> None:
        # the environment judges the text as the policy wrote it; the Step stores it storable
        # (a lone surrogate becomes U+FFFD, see trajectory.storable)
        obs, reward, self.done, info = self.env.step(text)
        step = Step(len(self.steps), text, obs, float(reward), thought, bool(info.get("valid", True)))
        self.steps.append(step)
        self.seen.extend(masked((step,)))

    def run(self, actions: Sequence[str], limit: int) -> None:
        """Take ``actions`` in order until the episode ends or holds ``limit`` steps."""
        for text in actions[: max(limit - len(self.steps), 0)]:
            if self.done:
                break
            self.act(text)


def _check_start(task: Task, start: Started) -> None:
    if start.task.task_id != task.task_id:
        raise ValueError(f"start is on {start.task.task_id}, not {task.task_id}")


def begin(ctx: Context, task: Task, prefix: Sequence[str], *, start: Started | None = None) -> Started:
    """Execute ``prefix`` once (after ``start``'s actions, when given) and keep the environment's state.

    For callers that continue one prefix many times: ``rollout(..., start=begin(...))``
    then restores the state instead of re-executing the prefix, with the same
    steps and results. With ``start``, only ``prefix`` is executed (from the
    restored state): a search extends an accepted prefix by one candidate at a
    cost of one execution. An environment without snapshots executes nothing
    here; the rollouts from the result re-execute all of its actions.
    """
    if start is not None:
        _check_start(task, start)
    actions = ((start.actions if start is not None else ()) + tuple(prefix))[: ctx.max_steps]
    if not isinstance(ctx.env(), Restorable) or (start is not None and start.state is None):
        return Started(task, actions)
    ep = _Episode(ctx, task, start)
    ep.run(tuple(prefix), ctx.max_steps)
    return Started(task, actions, tuple(ep.steps), ep.done, ep.env.snapshot(),  # type: ignore[attr-defined]
                   executed=len(ep.steps) - ep.restored)


def rollout(
    ctx: Context,
    task: Task,
    rng: random.Random,
    *,
    prefix: Sequence[str] = (),
    guidance: Guidance = Guidance(),
    operator: str = "sample",
    start: Started | None = None,
) -> Rollout:
    """Run ``prefix`` in a fresh episode (or after ``start``), let the policy continue, then submit.

    With ``start``, ``prefix`` holds further actions taken after the started
    episode's. ``env_steps`` counts what this call executed: with a restorable
    ``start``, the continuation only (the start's steps were counted once, by ``begin``).
    """
    if start is not None:
        _check_start(task, start)
        if start.state is None:  # nothing kept: re-execute the start's actions, then the given ones
            prefix = start.actions + tuple(prefix)
    ep = _Episode(ctx, task, start)
    shown = ctx.shown(task)
    cost = 0.0
    tokens_in = tokens_out = 0
    if not ep.done:
        ep.run(prefix, ctx.max_steps)
    if not guidance.stop_after_prefix:
        while not ep.done and len(ep.steps) < ctx.max_steps:
            action = ctx.policy.next_action(shown, tuple(ep.seen), guidance, rng)
            cost += action.cost_usd
            tokens_in += action.input_tokens
            tokens_out += action.output_tokens
            if is_submit(action.text):
                break
            ep.act(action.text, action.thought)
    _, outcome, _, _ = ep.env.step(SUBMIT)
    traj = Trajectory(
        task_id=task.task_id, steps=tuple(ep.steps), outcome_reward=float(outcome),
        source=ctx.policy.name, operator=operator, cost_usd=cost,
        input_tokens=tokens_in, output_tokens=tokens_out,
    )
    return Rollout(traj, len(ep.steps) - ep.restored)


def execute(ctx: Context, task: Task, actions: Sequence[str], operator: str) -> Rollout:
    """Re-execute exactly ``actions`` (no policy), e.g. to verify a refinement."""
    return rollout(ctx, task, random.Random(0), prefix=actions,
                   guidance=Guidance(stop_after_prefix=True), operator=operator)


@dataclass
class _AskedProbe:
    """A policy that submits at once, noting whether it was asked: a rollout asks only while its
    episode goes on (the environment did not end it and the step limit is not reached)."""

    name: str
    asked: bool = False

    def next_action(self, task: Task, history: Sequence[Step], guidance: Guidance,
                    rng: random.Random) -> Action:
        self.asked = True
        return Action(SUBMIT)


def finish(ctx: Context, start: Started, operator: str) -> tuple[Rollout, bool]:
    """The started episode submitted as it is, and whether it had ended there: the environment
    ended it (e.g. a game's last move) or the step limit, so no action could follow.

    ``env_steps`` counts what this call executed (nothing for a restorable start;
    every action of it otherwise)."""
    probe = _AskedProbe(ctx.policy.name)
    out = rollout(replace(ctx, policy=probe), start.task, random.Random(0), start=start, operator=operator)
    return out, not probe.asked


def build_context(c: Any, tasks: list[Task], store: Any = None) -> Context:
    """Tasks, the policy (for LLM policies: with its advisor and budget over the store's ledger), environments."""
    policy, env = policy_part(c), environment(c)
    made = policy.make(settings_of(c, policy), store)  # each part gets its own keys and the engine's
    return Context(tasks={t.task_id: t for t in tasks}, policy=made.policy, make_env=env.make_env(settings_of(c, env)),
                   max_steps=c.get("env.max_steps"), advisor=made.advisor, budget=made.budget,
                   closers=list(made.closers), settings=dict(c.values))
