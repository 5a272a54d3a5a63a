"""The Game of 24 environment: state = the numbers left, actions in Tree of Thoughts' format.

``reset(task)`` starts from the puzzle's four numbers. ``step(line)`` judges
one line with exact arithmetic (``rules.judge``): a valid step replaces two
numbers by their result; an invalid one (wrong result, wrong ``left`` list,
an operand that is not left, division by zero, garbage, over-long text) is an
``Error:`` observation with ``valid`` False and the state unchanged, never an
exception. The step reward is the oracle's: 1.0 if the state after the step
can still make 24 exactly (``solver.solvable``), else 0.0 (0.0 for an invalid
step). The episode ends when one number is left or an answer is given; then
only ``submit`` or, if no answer was given yet, one ``Answer:`` line (ToT's
last step) are taken. The outcome (``submit``): the answer's verdict if one
was given, else 1.0 iff the one number left is exactly 24.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evoagent.envs.base import EpisodeValue
from evoagent.envs.game24.rules import State, judge, parse_state, show_state
from evoagent.envs.game24.solver import TARGET, solvable
from evoagent.trajectory import Task

__all__ = ["ERROR_PREFIX", "Episode", "Game24Env", "advance", "play", "start"]

ERROR_PREFIX = "Error: "


@dataclass(frozen=True)
class Episode:
    """Everything an episode carries between steps (immutable: ``snapshot``/``restore`` share it)."""

    task: Task
    puzzle: State
    state: State
    answered: bool = False
    correct: bool = False
    submitted: bool = False

    @property
    def done(self) -> bool:
        return self.answered or self.submitted or len(self.state) <= 1

    @property
    def outcome(self) -> float:
        if self.answered:
            return 1.0 if self.correct else 0.0
        return 1.0 if self.state == (TARGET,) else 0.0


def play(episode: Episode, action: str) -> tuple[Episode, str, float, dict[str, Any]]:
    """One action on ``episode``: (the episode after it, observation, reward, info). Total."""
    if isinstance(action, str) and action.strip().lower() == "submit":
        after = Episode(episode.task, episode.puzzle, episode.state, episode.answered, episode.correct, True)
        return after, "submitted", after.outcome, {"valid": True, "submitted": True}
    if episode.answered or episode.submitted:
        return episode, ERROR_PREFIX + "the episode is over (an answer was given)", 0.0, \
            {"valid": False, "error": "over"}
    judged = judge(episode.state, action, episode.puzzle)
    if episode.done and not judged.answer:  # one number left: only the answer line may follow
        return episode, ERROR_PREFIX + f"the episode is over (left: {show_state(episode.state)})", 0.0, \
            {"valid": False, "error": "over"}
    info: dict[str, Any] = {"valid": judged.valid, "error": judged.error, "inexact": judged.inexact,
                            "answer": judged.answer}
    if not judged.valid:
        return episode, f"{ERROR_PREFIX}{judged.message} (left: {show_state(episode.state)})", 0.0, info
    if judged.answer:
        after = Episode(episode.task, episode.puzzle, episode.state, True, judged.correct)
        return after, f"answer: {judged.message}", after.outcome, info
    after = Episode(episode.task, episode.puzzle, judged.state)
    return after, f"left: {show_state(judged.state)}", 1.0 if solvable(judged.state) else 0.0, info


def start(task: Task) -> Episode:
    """The episode at the puzzle's start (``task.question`` holds its numbers, e.g. ``4 5 6 10``)."""
    puzzle = parse_state(task.question)
    return Episode(task, puzzle, puzzle)


class Game24Env(EpisodeValue):
    """Gym-like Game of 24; see the module docstring. Cheap to copy (``envs.base.Restorable``)."""

    name = "game24"
    episode_type = Episode
    title = "a Game of 24 environment"

    def __init__(self) -> None:
        self.episode: Episode | None = None

    def reset(self, task: Task) -> str:
        """Start on ``task``; returns the puzzle's numbers."""
        self.episode = start(task)
        return f"left: {show_state(self.episode.state)}"

    def step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        if self.episode is None:
            raise RuntimeError("call reset(task) before step()")
        self.episode, obs, reward, info = play(self.episode, action)
        return obs, reward, self.episode.done, info

    def close(self) -> None:
        """Nothing to release."""


def advance(task: Task, actions: Sequence[str]) -> Episode:
    """The episode after ``actions`` on ``task`` (policies and reward models re-derive the state)."""
    episode = start(task)
    for a in actions:
        episode = play(episode, a)[0]
    return episode
