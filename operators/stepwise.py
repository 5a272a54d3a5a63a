"""Step-level search: build one trajectory a step at a time, scoring sampled next actions.

The shared engine of ``rro`` (Reward Rising Optimization, Wang et al., COLM 2025,
arXiv 2505.20737) and ``ipr`` (Xiong et al., 2024, "Watch Every Step"):

    prefix, bar = (), rise_from
    for step i = 0 .. max_steps - 1:
        ask the policy (avoid = this step's candidates so far; generator (i, ask)) until it
        has proposed ``budget`` distinct candidates or been asked ASKS_PER_CANDIDATE * budget
        times; a proposal equal to an earlier candidate of the step is no new sample
        for each new candidate a (rank r = 0, 1, ...):
            execute a from the prefix's kept state (one execution); a == submit: the prefix, submitted
            v = search.reward(prefix + a)             # submit: the value of the submitted episode
            first_rising and (v > bar or v >= ceiling): take a, stop sampling     # RRO
            (submit = "hold": a submit is taken when sampled; see below)
        none taken (every candidate the step may sample was tried): fallback "best" (the highest
        v; on ties a candidate that goes on, then the first sampled) or "stop"
        a is submit, "stop", or a ended the episode (e.g. a game's last move): the episode
        ends; else prefix += a, bar = v

A ``submit`` executes nothing: the episode's answer is the last result already executed. By
default (``submit = "rise"``) it is one more candidate, valued as the episode submitted there
and taken when that value rises over the bar, the paper's rule with the submitted episode's value
(under ``mc`` and the oracle its outcome, 0 or 1: a right answer reaches ``ceiling``). With
``submit = "hold"`` (an option, not the default) its reward differential relative to the preceding
step is taken as zero (submitting holds the value already reached) and a tie counts for it: a
submit is taken as soon as it is sampled, its value still scored and recorded, so the policy
decides when to stop and the search what to execute.

Stopping rule (one per method): the episode ends when the taken candidate submits or
ends the episode, at ``env.max_steps``, or (fallback ``stop``) when no candidate rose.
A value cannot rise past the top of the reward scale: at ``ceiling`` (rro's
default 1.0) a candidate that reaches it is taken, or a solved prefix would
sample every one of its candidates in vain (the ``rising`` column stays strict).
Every proposal's generator is seeded from (the item's seed, step, ask), so a
result never depends on timing. Prefixes are never re-executed on an
environment that keeps snapshots (``envs.base.Restorable``): each candidate
runs from the accepted prefix's state (``rollout.begin(start=...)``), and the
taken one's state is the next step's; without snapshots every candidate
re-executes its prefix, with the same results. Every candidate becomes a
``stores.base.Candidate`` row (its reward, the bar it had to beat, its rank,
whether it was taken), committed with the work item. The environment's own
step reward is recorded, never used to decide (unless ``search.reward`` is the
oracle, whose values it is).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from evoagent.evolution import derive_seed
from evoagent.policies.base import SUBMIT, Guidance, is_submit, masked
from evoagent.rewards.base import Query
from evoagent.rollout import Context, Rollout, Started, begin, execute, finish
from evoagent.trajectory import Task, Trajectory, trajectory_id
from stores.base import Candidate

__all__ = ["ASKS_PER_CANDIDATE", "step_search"]

FALLBACKS = ("best", "stop")
SUBMIT_RULES = ("rise", "hold")  # when RRO takes a sampled submit: it rises over the bar, or always
# A step asks the policy at most this many times per candidate of its budget: a policy that has
# fewer distinct actions to offer (it keeps re-proposing) ends the step's sampling early.
ASKS_PER_CANDIDATE = 3
# A candidate row keeps this much of its observation (a taken action's whole one is in its step):
# an item holds every candidate's row until it ends, and an observation can be 8 million characters.
OBSERVATION_CHARS = 4000


@dataclass(frozen=True)
class _Sampled:
    """One candidate at a prefix: what the policy proposed and what executing it gave."""

    rank: int
    action: str  # "submit" for a candidate that ends the episode
    thought: str
    run: Trajectory  # the episode prefix + action (the prefix alone for a submit), submitted
    query: Query
    ended: bool  # no action can follow: the environment ended the episode, or the step limit
    start: Started  # the episode after the action, for the next step to continue from

    @property
    def submits(self) -> bool:
        return self.action == SUBMIT


@dataclass(frozen=True)
class _Row:
    """What a candidate's row keeps once its step is decided (not its whole episode)."""

    rank: int
    action: str
    observation: str | None
    env_reward: float | None

    @classmethod
    def of(cls, c: _Sampled) -> _Row:
        seen = c.run.steps[-1].observation if not c.submits and c.run.steps else None
        return cls(c.rank, c.action, seen[:OBSERVATION_CHARS] if seen is not None else None, c.query.observed)


def _execute(ctx: Context, task: Task, at: Started, action: str, thought: str, rank: int,
             operator: str) -> tuple[_Sampled, int]:
    """Run ``action`` after the prefix ``at`` (restored, or re-executed without snapshots), submitted;
    the query that scores it; acting env steps used."""
    submits = action == SUBMIT
    prefix = at.actions
    after = at if submits else begin(ctx, task, (action,), start=at)
    out, ended = finish(ctx, after, operator)
    run = out.trajectory
    seen = tuple(s.observation for s in run.steps)
    if submits:  # the value of this prefix submitted now: the terminal query
        query = Query(task.task_id, prefix, run.outcome_reward, terminal=True, observations=seen)
    else:
        if len(run.steps) != len(prefix) + 1:
            raise RuntimeError(f"the environment ended the episode before step {len(prefix)}")
        query = Query(task.task_id, prefix + (action,), run.steps[-1].reward, observations=seen)
    used = out.env_steps + (0 if submits else after.env_steps)
    return _Sampled(rank, action, thought, run, query, ended, after), used


def step_search(task: Task, rng: random.Random, ctx: Context, *, method: str, budget: int,
                first_rising: bool, fallback: str = "best", rise_from: float = 0.0,
                ceiling: float = math.inf, submit: str = "rise") -> Rollout:
    """Build one trajectory for ``task`` by step-level search; see the module docstring.

    ``budget``: candidates at most per step; ``first_rising``: take the first whose
    score beats the previous step's (RRO) instead of the best of all ``budget`` (IPR).
    ``submit``: with ``first_rising``, when a sampled submit is taken (``SUBMIT_RULES``; module docstring).
    ``method`` names the search in the candidate rows.
    """
    if ctx.search is None:
        raise RuntimeError(f"{method} needs the campaign's search signal (search.reward)")
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    if submit not in SUBMIT_RULES:
        raise ValueError(f"submit must be one of {SUBMIT_RULES}, got {submit!r}")
    holds = submit == "hold"
    shown = ctx.shown(task)  # the task as a policy may see it
    base = rng.getrandbits(63)
    at = begin(ctx, task, ())  # the accepted prefix's episode (its state, when the env keeps one)
    thoughts: list[str] = []
    current: Trajectory | None = None  # the accepted prefix, executed and submitted
    bar = float(rise_from)
    acting = 0
    cost, tokens_in, tokens_out = 0.0, 0, 0
    rows: list[tuple[int, _Row, float, float, bool]] = []  # (step, candidate, reward, bar, accepted)
    for step in range(ctx.max_steps):
        seen = masked(current.steps) if current is not None else ()
        sampled: list[_Sampled] = []
        scores: list[float] = []
        taken: int | None = None
        for ask in range(ASKS_PER_CANDIDATE * budget):
            if len(sampled) >= budget:
                break
            guidance = Guidance(avoid=frozenset(c.action for c in sampled if c.action != SUBMIT))
            act = ctx.policy.next_action(shown, seen, guidance, random.Random(derive_seed(base, step, ask)))
            cost, tokens_in, tokens_out = cost + act.cost_usd, tokens_in + act.input_tokens, tokens_out + act.output_tokens
            text = SUBMIT if is_submit(act.text) else act.text
            if any(c.action == text for c in sampled):  # proposed again: no new sample; ask again
                continue
            cand, used = _execute(ctx, task, at, text, act.thought, len(sampled), method)
            acting += used
            sampled.append(cand)
            if first_rising:  # RRO decides after each candidate
                value = ctx.search.scorer.score([cand.query])[0]
                scores.append(value)
                if value > bar or value >= ceiling or (holds and cand.submits):
                    taken = cand.rank
                    break
        if not first_rising:  # IPR: every candidate scored, in one batch
            scores = [float(v) for v in ctx.search.scorer.score([c.query for c in sampled])]
        if taken is None and fallback == "best" and scores:
            # every candidate the step may sample was tried and none rose: the best, a submit only
            # where it beats every other candidate (on a tie the search goes on)
            taken = max(range(len(sampled)), key=lambda i: (scores[i], not sampled[i].submits, -i))
        rows += [(step, _Row.of(c), scores[i], bar, i == taken) for i, c in enumerate(sampled)]
        if taken is None:  # fallback "stop": the episode ends with the prefix so far
            break
        chosen = sampled[taken]
        current = chosen.run
        if chosen.submits:
            break
        at = chosen.start
        thoughts.append(chosen.thought)
        bar = scores[taken]
        if chosen.ended:  # no next step to search
            break
    if current is None:  # nothing taken at step 0: the empty episode, submitted
        out = execute(ctx, task, (), method)
        current, acting = out.trajectory, acting + out.env_steps
    steps = tuple(replace(s, thought=t) for s, t in zip(current.steps, thoughts + [""] * len(current.steps)))
    final = replace(current, steps=steps, operator=method, cost_usd=cost, input_tokens=tokens_in,
                    output_tokens=tokens_out)
    source = ctx.search.source
    candidates = tuple(
        Candidate(strategy=method, task_id=task.task_id, traj_id=final.traj_id, step_idx=step,
                  prefix_id=trajectory_id(task.task_id, final.actions[:step]),
                  node_id=trajectory_id(task.task_id, final.actions[:step] + (c.action,)),
                  action=c.action, observation=c.observation, env_reward=c.env_reward, reward=value,
                  prev_reward=prev, reward_source=source, accepted=accepted, rank=c.rank)
        for step, c, value, prev, accepted in rows)
    return Rollout(final, acting, candidates=candidates)
