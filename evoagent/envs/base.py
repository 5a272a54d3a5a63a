"""The environment protocol every operator, reward model and benchmark drives.

Gym-like and text-in/text-out: ``reset(task)`` starts an episode and returns
what the agent is told; ``step(action)`` returns ``(observation, reward,
done, info)`` where ``reward`` is the step's reward against gold (the oracle
signal) and ``info["valid"]`` says whether the action ran; ``submit()`` ends
the episode and returns the outcome reward. Environments hold connections:
one per thread (``Context.env``), never shared.

An environment whose episode state is cheap to copy also implements
:class:`Restorable`: ``snapshot()`` returns that state as an immutable value
and ``restore(state)`` puts any instance of the same environment (another
thread's included) back into it, so a prefix that many rollouts continue
from (Monte-Carlo scoring: k per prefix) is executed once instead of k
times. It is optional: ``rollout`` re-executes the prefix for an environment
without it, with the same results.

An environment is offered to campaigns as a registered part, an
:class:`Environment` declared beside its code (``env.kind`` names it).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from evoagent.registry import Key
from evoagent.trajectory import Task


@runtime_checkable
class Env(Protocol):
    """What an environment implements; see the module docstring."""

    name: str

    def reset(self, task: Task) -> str: ...

    def step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]: ...

    def submit(self) -> float: ...

    def close(self) -> None: ...


@runtime_checkable
class Restorable(Protocol):
    """An environment whose episode state can be saved and put back (optional; see the module docstring).

    ``snapshot()`` after some steps, then ``restore(state)`` on any instance of
    the same class, must leave it answering every later ``step`` exactly as the
    original would have. The state must not change after it was taken (the
    environment replaces, never mutates, what it hands out).
    """

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


@dataclass(frozen=True)
class Importer:
    """``evoagent import <name>``: an environment's recorded runs into a store of their own.

    ``run(paths, store_path)`` checks every file before one transaction writes them and yields
    the lines to print; ``bundled()`` lists the shipped files ``--bundled`` adds. ``help`` is the
    command's help (first line: its summary), ``bundled_help`` the ``--bundled`` flag's."""

    name: str
    help: str
    bundled_help: str
    bundled: Callable[[], Sequence[Any]]
    run: Callable[[list[Any], str], Iterable[str]]
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class Replayer:
    """``evoagent replay <name>``: re-execute a recorded file (or a shipped one, ``--bundled NAME``)
    in the environment and compare rewards; ``run(file, bundled)`` yields the reports to print."""

    name: str
    help: str
    bundled_help: str
    run: Callable[[str | None, str | None], Iterable[str]]
    examples: tuple[str, ...] = ()


class EpisodeValue:
    """The :class:`Restorable` half of an environment whose whole episode state is one immutable value.

    The class keeps it in ``self.episode`` (None before ``reset``), an instance of ``episode_type``,
    and replaces it at every step; ``submit`` is the ``submit`` action. ``title`` names the
    environment in errors ("a Game of 24 environment").
    """

    episode: Any = None
    episode_type: ClassVar[type]
    title: ClassVar[str]

    def step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        raise NotImplementedError

    def submit(self) -> float:
        return self.step("submit")[1]

    def snapshot(self) -> Any:
        if self.episode is None:
            raise RuntimeError("call reset(task) before snapshot()")
        return self.episode

    def restore(self, state: Any) -> None:
        if not isinstance(state, self.episode_type):
            raise TypeError(f"restore() needs a snapshot of {self.title}")
        self.episode = state


def _gold_text(task: Task) -> str:
    return " ".join(task.gold.split())


@dataclass(frozen=True)
class Environment:
    """An environment as a campaign part (``env.kind = name``): everything the engine asks of it.

    - ``keys``: the campaign keys it owns, by full path (``env.dialect``, ``tasks.dbs``); a campaign
      on another environment refuses them. A ``Key(..., path=True)`` is a file resolved against the
      campaign file's folder and hashed at start, so a resume runs on the same data.
    - ``load_tasks(cfg)``: its tasks, after the filters that are its own (e.g. ``tasks.dbs``); the
      engine then applies ``tasks.ids`` and ``tasks.sample``.
    - ``make_env(cfg)``: a factory of environments (one per thread).
    - ``policies``: the ``policy.kind`` names that play it; the first is the default. A name is the
      policy part ``<env>.<name>`` (its own) or ``<name>`` (one that fits any environment).
    - ``render_task(task)``: the task as a prompt shows it.
    - ``meta_fields``: name -> type of its ``Task.meta`` entries (stored as JSON, shown by the views).
    - ``gold_key(task)``: the gold answer normalised, so tasks with equivalent gold share a class.
    - ``check(cfg, tasks, note)``: data checks before any file is written (may print through ``note``).
    - ``files(cfg)``: more files whose content a resume must find unchanged.
    - ``opening(task, cfg)``: the turns (``role``/``content``) its LLM agent starts an episode
      from, as training exports show them; ``closing``: the action its agents end an episode with
      (appended to an exported solved episode), if any.
    - ``importers``/``replayers``: its ``evoagent import``/``evoagent replay`` subcommands.
    - ``fake_agent(**options)``: a responder for the loopback fake server
      (``evoagent.testing.fake_server``) that answers as this environment's LLM agent would.
    - ``bench``: its ``evoagent bench search`` setup (``registry.BenchSetup``), or None.
    - ``dead_ends``: its step reward values the state reached (Game of 24: 24 still reachable), so
      a failed episode went wrong where that value fell for good, not where it stopped rising
      (``operators.revise.first_wrong_step``); False: a step reward scores the step itself (SQL).
    - ``bundled_tasks()``: every task it ships, where its keys' defaults select only some (e.g. one
      of several task sets): a store of imported runs may hold any of them. None: ``load_tasks``
      with the defaults.
    """

    kind: ClassVar[str] = "environment"
    name: str
    load_tasks: Callable[[Any], list[Task]]
    make_env: Callable[[Any], Callable[[], Env]]
    policies: tuple[str, ...]
    render_task: Callable[[Task], str]
    meta_fields: Mapping[str, str] = field(default_factory=dict)
    gold_key: Callable[[Task], str] = _gold_text
    keys: Mapping[str, Key] = field(default_factory=dict)
    check: Callable[[Any, Sequence[Task], Any], None] | None = None
    files: Callable[[Any], Sequence[str]] | None = None  # more files hashed for resume (beyond path keys)
    fake_agent: Callable[..., Any] | None = None  # the fake server's stand-in model (tests, demos)
    opening: Callable[[Task, Any], list[dict[str, str]]] | None = None  # exports: the agent's first turns
    closing: str | None = None  # exports: the action that ends its agents' episodes
    importers: tuple[Importer, ...] = ()
    replayers: tuple[Replayer, ...] = ()
    doc: str = ""
    bench: Any = None  # what ``evoagent bench search`` needs (``registry.BenchSetup``); None: not benchmarked
    bundled_tasks: Callable[[], list[Task]] | None = None  # all its tasks (stores of imported runs)
    dead_ends: bool = False  # a step reward values the state reached (see above)
    # The normalised answer an episode ended on, from its last action and observation (never gold),
    # None where it is no answer: what ``selection.pick = vote`` groups by. None: the observation text.
    answer_key: Callable[[str, str | None], str | None] | None = None

    def path(self, key: str) -> str:
        """Keys are declared by full path."""
        return key
