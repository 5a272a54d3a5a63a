"""The final pick by a vote over answers (``selection.pick``): self-consistency weighted by fitness.

A reward model scores each candidate alone; several candidates of a task that end on the same
answer (the same normalised execution result) agree, and agreement is evidence a single score
does not see (self-consistency, Wang et al. 2023, "Self-Consistency Improves Chain of Thought
Reasoning in Language Models"). ``selection.pick`` ranks one task's members:

- ``rank`` (default): by ``selection.objectives`` alone, as before.
- ``vote``: members are grouped by their answer (``Environment.answer_key`` of the last step's
  action and observation; members with no answer, such as an error or a look at the schema, form
  no group); a group's score is the sum of its members' fitness (the ``fitness.reward`` scores,
  e.g. the PRM's, non-negative). Groups are ranked by that sum, members within a group by the
  objectives; members with no answer come after every group, by the objectives. Rank 0 is the
  best member of the best group.
- ``vote_count``: the same with each member counting 1 (plain majority; the group whose best
  member ranks first wins a tie).

Gold never enters: the answer is what the environment printed for the agent's own query, and the
weights are the fitness model's. With ``fitness.reward = env`` the fitness is the gold outcome, as
it is for ``rank``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from evoagent import evolution as evo

__all__ = ["PICKS", "default_answer_key", "vote"]

PICKS = ("rank", "vote", "vote_count")


def default_answer_key(action: str, observation: str | None) -> str | None:
    """An environment without its own ``answer_key``: the observation's text, None if empty."""
    text = (observation or "").strip()
    return text or None


def vote(members: Sequence[evo.Member], answers: Mapping[str, str | None], *,
         count: bool = False) -> list[evo.Member]:
    """``members`` of one task ranked by the vote (see the module docstring); ``answers``: trajectory id
    -> normalised answer (None or absent: no answer). ``count``: each member weighs 1, not its fitness."""
    ranked = evo.ranked(members)
    position = {m.traj_id: i for i, m in enumerate(ranked)}
    groups: dict[str, list[evo.Member]] = {}
    for m in ranked:
        key = answers.get(m.traj_id)
        if key is not None:
            groups.setdefault(key, []).append(m)
    weight: Callable[[evo.Member], float] = (lambda m: 1.0) if count else (lambda m: max(m.traj.fitness, 0.0))
    order = sorted(groups.values(), key=lambda ms: (-sum(weight(m) for m in ms), position[ms[0].traj_id]))
    rest = [m for m in ranked if answers.get(m.traj_id) is None]
    return [m for ms in order for m in ms] + rest
