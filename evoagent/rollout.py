"""Executing trajectories: every child an operator makes is run in the environment.

``Context`` is what operators receive besides their parents and generator: the
task table, the policy, a per-thread environment and the step limit. Nothing
here is a text edit of an old trajectory: ``rollout`` re-executes a prefix of
actions and then lets the policy continue, so every observation and reward of
a child comes from the environment.
"""
from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from evoagent.policies.base import SUBMIT, Guidance, Policy, masked
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

    def close(self) -> None:
        for close in self.closers:
            close()
        self.closers.clear()
    _local: threading.local = field(default_factory=threading.local, repr=False)

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


def rollout(
    ctx: Context,
    task: Task,
    rng: random.Random,
    *,
    prefix: Sequence[str] = (),
    guidance: Guidance = Guidance(),
    operator: str = "sample",
) -> Rollout:
    """Run ``prefix`` in a fresh episode, let the policy continue, then submit."""
    env = ctx.env()
    env.reset(task)
    shown = replace(task, gold="")  # the task as a policy may see it: no gold answer
    steps: list[Step] = []
    seen: list[Step] = []  # the same steps with rewards masked, built once each
    cost = 0.0
    tokens_in = tokens_out = 0
    done = False

    def act(text: str, thought: str = "") -> None:
        nonlocal done
        # the environment judges the text as the policy wrote it; the Step stores it storable
        # (a lone surrogate becomes U+FFFD, see trajectory.storable)
        obs, reward, done, info = env.step(text)
        step = Step(len(steps), text, obs, float(reward), thought, bool(info.get("valid", True)))
        steps.append(step)
        seen.extend(masked((step,)))

    for text in prefix[: ctx.max_steps]:
        act(text)
        if done:
            break
    if not guidance.stop_after_prefix:
        while not done and len(steps) < ctx.max_steps:
            action = ctx.policy.next_action(shown, tuple(seen), guidance, rng)
            cost += action.cost_usd
            tokens_in += action.input_tokens
            tokens_out += action.output_tokens
            if action.text.strip().lower() == SUBMIT:
                break
            act(action.text, action.thought)
    _, outcome, _, _ = env.step(SUBMIT)
    traj = Trajectory(
        task_id=task.task_id, steps=tuple(steps), outcome_reward=float(outcome),
        source=ctx.policy.name, operator=operator, cost_usd=cost,
        input_tokens=tokens_in, output_tokens=tokens_out,
    )
    return Rollout(traj, len(steps))


def execute(ctx: Context, task: Task, actions: Sequence[str], operator: str) -> Rollout:
    """Re-execute exactly ``actions`` (no policy), e.g. to verify a refinement."""
    return rollout(ctx, task, random.Random(0), prefix=actions,
                   guidance=Guidance(stop_after_prefix=True), operator=operator)
