"""``mcts`` — one Monte Carlo tree search pass below a selected leaf (LATS: Zhou et al.,
2024, "Language Agent Tree Search Unifies Reasoning, Acting, and Planning in Language Models").

The ``mcts`` strategy (``evoagent/strategies/mcts.py``) selects a leaf by UCT and
hands its path here as the work item's ``args`` (``{"path": [node ids from the
root], "actions": [the leaf's actions]}``). This operator expands and evaluates:

1. executes the leaf's prefix once, for the history the policy sees, keeping
   the environment's state (``rollout.begin``; envs.base.Restorable);
2. asks the policy for ``strategy.mcts.children`` distinct next actions (the same
   history, independent draws, each told to avoid the children found so far);
   a proposal that repeats a child is asked again, at most
   ``ASKS_PER_CHILD`` times per child, before the expansion settles for fewer
   children; children are ranked by first proposal;
3. executes every child from the leaf's kept state (one execution each; an
   environment without snapshots re-executes the prefix per child, with the
   same results) and evaluates it with the campaign's search signal:
   a child that submits, or that reaches the depth limit, is terminal and gets
   the value of the episode submitted there; so is a child whose action ended the
   episode (e.g. a game's last move: no action can follow). A leaf whose episode
   has ended is not expanded: the pass backs up its value, as a terminal node's;
4. takes the best child (highest value, then lowest rank); with
   ``strategy.mcts.rollout = true`` and a non-terminal best child, the policy
   plays on from it to a submitted answer, and the value backed up is the
   search signal's value of that finished episode; otherwise it is the best
   child's value. Gold is read only if the search signal is the oracle (or
   ``mc``'s outcome checker).

With an LLM policy (and ``operators.llm``), a pass that ends at a terminal node
(or a rollout) whose value is below 1 gets a reflection from the operators' LLM
(LATS's self-reflection, through the call ledger), kept in its ``Simulation`` row
(``reflection``); the strategy hands the task's latest ones (``args["reflections"]``)
to later expansions, whose proposals see them as advice in the policy's prompt.

It returns every child as a ``Candidate`` row (``strategy = "mcts"``, the leaf's
id as ``prefix_id``), one ``Simulation`` (path + the best child, the value) and,
as the item's trajectory, the rollout or the best child's prefix submitted.
"""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from evoagent.policies.base import SUBMIT, Guidance, is_submit, masked
from evoagent.registry import Key, Part
from evoagent.rewards.base import Query
from evoagent.rewards.signal import queries
from evoagent.rollout import Context, Rollout, Started, begin, finish, rollout
from evoagent.trajectory import Task, Trajectory, trajectory_id
from stores.base import Candidate, Simulation

__all__ = ["ASKS_PER_CHILD", "depth_limit", "is_terminal", "mcts"]


REFLECTIONS, REFLECTION_CHARS = 3, 1000  # at most this many, this long, shown in one expansion's prompts
ASKS_PER_CHILD = 3  # an expansion asks the policy at most this many times per child it wants


def depth_limit(settings: Mapping[str, Any]) -> int:
    """The deepest node (in actions): ``strategy.mcts.max_depth``, at most the episode's ``env.max_steps``."""
    return min(int(settings["strategy.mcts.max_depth"]), int(settings["env.max_steps"]))


def is_terminal(action: str, depth: int, limit: int) -> bool:
    """A node that is never expanded: its action submits, or it is at the depth limit."""
    return is_submit(action) or depth >= limit


def _propose(ctx: Context, task: Task, leaf: Trajectory, n: int, rng: random.Random,
             guidance: Guidance) -> list[str]:
    """Up to ``n`` distinct next actions, in order of first proposal: each ask avoids the children
    found so far, and a repeat is asked again (at most ``ASKS_PER_CHILD * n`` asks in all)."""
    shown = ctx.shown(task)  # the task as a policy may see it
    seen = masked(leaf.steps)
    found: list[str] = []
    for _ in range(ASKS_PER_CHILD * n):
        if len(found) >= n:
            break
        ask = replace(guidance, avoid=guidance.avoid | frozenset(a for a in found if a != SUBMIT))
        text = ctx.policy.next_action(shown, seen, ask, rng).text
        text = SUBMIT if is_submit(text) else text
        if text not in found:
            found.append(text)
    return found


def _value(ctx: Context, episode: Trajectory, n_actions: int, terminal: bool) -> float:
    """The search signal's value of ``episode``'s first ``n_actions`` actions (of it submitted there)."""
    if ctx.search is None:  # no reward model: the environment's own (gold's)
        return episode.outcome_reward if terminal else float(episode.steps[n_actions - 1].reward or 0.0)
    if n_actions == 0:  # the empty answer, submitted at the root
        return ctx.search.scorer.score([Query(episode.task_id, (), episode.outcome_reward, terminal=True)])[0]
    q = queries(episode)[n_actions - 1]
    q = Query(q.task_id, q.actions, episode.outcome_reward if terminal else q.observed, terminal=terminal,
              observations=q.observations)
    return ctx.search.scorer.score([q])[0]


def _lessons(reflections: Sequence[str]) -> Guidance:
    """Advice for the proposals: the task's latest reflections (bounded: they are model text)."""
    lessons = [str(r)[:REFLECTION_CHARS] for r in reflections][:REFLECTIONS]
    return Guidance(notes="lessons from failed attempts at this task: " + " | ".join(lessons)) if lessons \
        else Guidance()


def _candidate(ctx: Context, task: Task, prefix: tuple[str, ...], action: str, episode: Trajectory, value: float,
               prev: float | None, traj_id: str, rank: int, accepted: bool) -> Candidate:
    """One child as a ``candidates`` row; ``episode`` is the one that executed it (submitted)."""
    step = episode.steps[len(prefix)] if action != SUBMIT else None
    return Candidate(
        strategy="mcts", task_id=task.task_id, traj_id=traj_id, step_idx=len(prefix),
        prefix_id=trajectory_id(task.task_id, prefix), node_id=trajectory_id(task.task_id, prefix + (action,)),
        action=action, observation=step.observation if step else "submitted",
        env_reward=step.reward if step else episode.outcome_reward, reward=value, prev_reward=prev,
        reward_source=ctx.search.source if ctx.search is not None else "env", accepted=accepted, rank=rank)


def _reflect(ctx: Context, task: Task, episode: Trajectory, value: float, rng: random.Random) -> str:
    """LATS's self-reflection on a failed leaf (LLM policies, ``operators.llm``); empty: none."""
    if ctx.advisor is None or not ctx.keys_of(PART).get("operators.llm", True) or value >= 1.0 or not episode.steps:
        return ""
    shown = ctx.view(episode)  # rewards as the search signal gives them (the advisor shows none from gold)
    return ctx.advisor.reflect(task, shown, shown.n_steps - 1, rng).strip()[:REFLECTION_CHARS]


def mcts(task: Task, rng: random.Random, ctx: Context, *, args: dict[str, Any]) -> Rollout:
    """Expand the leaf in ``args``, evaluate its children, simulate from the best; see the module docstring."""
    path: Sequence[str] = args["path"]
    prefix = tuple(args["actions"])
    own = ctx.keys_of(PART)
    limit = depth_limit(own)
    at = begin(ctx, task, prefix)  # the leaf's prefix, executed once
    leaf, ended = finish(ctx, at, "mcts")
    used = at.env_steps + leaf.env_steps
    if ended:  # a terminal node the tree did not know as one: back up its value, expand nothing
        value = _value(ctx, leaf.trajectory, leaf.trajectory.n_steps, True)
        note = _reflect(ctx, task, leaf.trajectory, value, rng)
        sim = Simulation(task.task_id, tuple(path), float(value), True, note)
        return Rollout(leaf.trajectory, used, simulations=(sim,))
    depth = len(prefix) + 1
    # action, its episode (submitted), terminal, the episode after it (to play on from)
    children: list[tuple[str, Trajectory, bool, Started]] = []
    guidance = _lessons(args.get("reflections", ()))
    for action in _propose(ctx, task, leaf.trajectory, int(own["strategy.mcts.children"]), rng, guidance):
        if action == SUBMIT:
            children.append((action, leaf.trajectory, True, at))
            continue
        after = begin(ctx, task, (action,), start=at)
        run, over = finish(ctx, after, "mcts")
        used += after.env_steps + run.env_steps
        children.append((action, run.trajectory, over or is_terminal(action, depth, limit), after))
    values = [_value(ctx, ep, len(prefix) if a == SUBMIT else depth, term) for a, ep, term, _ in children]
    best = max(range(len(children)), key=lambda i: (values[i], -i))
    action, episode, terminal, after = children[best]
    value = values[best]
    if own["strategy.mcts.rollout"] and not terminal:
        played = rollout(ctx, task, rng, start=after, operator="mcts")
        used += played.env_steps
        episode = played.trajectory
        value = _value(ctx, episode, episode.n_steps, True)
    note = _reflect(ctx, task, episode, value, rng) if terminal or own["strategy.mcts.rollout"] else ""
    prev = _value(ctx, leaf.trajectory, len(prefix), False) if prefix else None
    cands = tuple(_candidate(ctx, task, prefix, act, ep, v, prev, episode.traj_id, rank, rank == best)
                  for rank, ((act, ep, _, _), v) in enumerate(zip(children, values)))
    sim = Simulation(task.task_id, tuple(path) + (cands[best].node_id,), float(value), terminal, note)
    return Rollout(episode, used, candidates=cands, simulations=(sim,))


# The search's keys a pass reads (the mcts strategy declares them too, the same keys).
KEYS: dict[str, Key] = {
    "strategy.mcts.children": Key(int, 5, lambda x: 1 <= x <= 100, "within 1..100"),
    "strategy.mcts.max_depth": Key(int, 10, lambda x: 1 <= x <= 100, "within 1..100"),
    "strategy.mcts.rollout": Key(bool, False),
}
PART = Part("operator", "mcts", mcts, arity=0, takes_args=True, shared_keys=KEYS,
            doc="one MCTS pass (LATS): expand a selected leaf, evaluate its children, back up a value")
