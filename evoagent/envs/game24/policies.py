"""Policies for Game of 24: ``enumerate`` and ``replay`` (offline), and the LLM policies' game24 side.

- ``enumerate``: a uniformly random legal step (``rules.moves``) drawn with the
  work item's generator; no LLM, no recording.
- ``replay``: what GPT-4 proposed for the state it is in, from its recorded
  runs on puzzles 901..1000 (ToT's proposals at every state its search saw,
  and each line of the CoT and standard samples, with their multiplicity);
  an action is kept only where GPT-4's earlier lines were valid, so it was
  made in the state the environment is in. GPT-4's mistakes stay in (they are
  error observations when replayed). In a state the logs never reached (any
  puzzle outside 901..1000, or a state only other moves lead to), and with
  probability ``explore`` anywhere, it takes a random legal step instead.
- LLM (``anthropic``, ``openai``): the model sees the numbers left and writes
  one step or an answer through the ``step``/``answer`` tools (``prompt.GAME24``).

Policies never see rewards or solvability: only the task's numbers and the
observations.
"""
from __future__ import annotations

import collections
import functools
import random
import threading
from collections.abc import Sequence
from typing import Any

from evoagent.envs.game24.env import advance, play, start
from evoagent.envs.game24.recorded import bundled
from evoagent.envs.game24.rules import moves
from evoagent.policies.base import SUBMIT, Action, Guidance
from evoagent.trajectory import Step, Task

__all__ = ["CALLS", "EnumeratePolicy", "Game24LLMPolicy", "ReplayPolicy"]

StateKey = tuple[str, tuple[Any, ...]]
CALLS: collections.Counter[str] = collections.Counter()  # offline policy -> next_action calls in this process
_CALLS_LOCK = threading.Lock()


def _count(name: str) -> None:
    """Count one policy call (experiments/game24_compare.py reports calls per strategy)."""
    with _CALLS_LOCK:
        CALLS[name] += 1


def _random_step(task: Task, history: Sequence[Step], guidance: Guidance, rng: random.Random,
                 thought: str) -> Action:
    episode = advance(task, [s.action for s in history])
    if episode.done:
        return Action(SUBMIT, thought="the episode is over")
    legal = [m for m in moves(episode.state) if m not in guidance.avoid]
    return Action(rng.choice(legal), thought=thought) if legal else Action(SUBMIT, thought="no step left to try")


class EnumeratePolicy:
    """A uniformly random legal step; see the module docstring."""

    name = "enumerate"

    def next_action(self, task: Task, history: Sequence[Step], guidance: Guidance,
                    rng: random.Random) -> Action:
        _count(self.name)
        return _random_step(task, history, guidance, rng, "a random legal step")


@functools.lru_cache(maxsize=4)
def _replay_table(sources: tuple[str, ...]) -> dict[StateKey, tuple[str, ...]]:
    """(task, state) -> GPT-4's recorded actions in that state, with repeats (see the module docstring)."""
    from evoagent.envs.game24.data import load_tasks

    tasks = {t.task_id: t for t in load_tasks()}
    table: dict[StateKey, list[str]] = collections.defaultdict(list)
    for rec in bundled(sources or None):
        walks = [(p.task_id, p.lines, True) for p in rec.proposals]  # ToT: each proposal's new line
        if rec.kind != "tot":  # ToT's final answers are among its proposals already
            walks += [(r.task_id, r.lines, False) for r in rec.runs]
        for task_id, lines, last_only in walks:
            episode = start(tasks[task_id])
            for i, line in enumerate(lines):
                if not last_only or i == len(lines) - 1:
                    table[(task_id, episode.state)].append(line)
                episode, _, _, info = play(episode, line)
                if not info.get("valid"):
                    break
    return {k: tuple(v) for k, v in table.items()}


class ReplayPolicy:
    """GPT-4's recorded actions for the current state; see the module docstring."""

    name = "replay"

    def __init__(self, sources: Sequence[str] | None = None, *, explore: float = 0.1):
        self.explore = explore
        self._table = _replay_table(tuple(sources or ()))

    def recorded(self, task: Task, actions: Sequence[str]) -> list[str]:
        """GPT-4's recorded actions (with repeats) in the state ``actions`` lead to on ``task``
        (none once the episode is over: ToT's answer after the last number is never asked for)."""
        episode = advance(task, actions)
        return [] if episode.done else list(self._table.get((task.task_id, episode.state), ()))

    def next_action(self, task: Task, history: Sequence[Step], guidance: Guidance,
                    rng: random.Random) -> Action:
        _count(self.name)
        acts = [s.action for s in history]
        options = [a for a in self.recorded(task, acts) if a not in guidance.avoid]
        if rng.random() < self.explore or not options:
            why = "explore: a random legal step" if options else "a state GPT-4's logs never reached: a random legal step"
            return _random_step(task, history, guidance, rng, why)
        return Action(rng.choice(options), thought="as GPT-4 proposed in this state")


class Game24LLMPolicy:
    """An LLM writing one step (or the answer) at a time through tools; shares the campaign's client."""

    def __init__(self, name: str, client: Any, *, model: str, max_tokens: int, temperature: float,
                 observation_chars: int):
        self.name, self.client, self.model = name, client, model
        self.max_tokens, self.temperature, self.observation_chars = max_tokens, temperature, observation_chars

    def request(self, task: Task, history: Sequence[Step], guidance: Guidance) -> dict[str, Any]:
        from evoagent.policies.llm import EPHEMERAL, opening
        from evoagent.envs.game24.prompt import GAME24

        tools = [dict(t) for t in GAME24.tools]
        tools[-1] = {**tools[-1], "cache_control": EPHEMERAL}
        first = opening(GAME24.user.format(numbers=task.question), guidance,
                        advice="Advice from an earlier attempt", failed="These steps failed before")
        messages: list[dict[str, Any]] = [{"role": "user", "content": first}]
        for s in history:
            tool_id = f"toolu_{s.idx:03d}"
            answer = s.action.strip().lower().startswith("answer:")
            call = ({"name": "answer", "input": {"expression": s.action.split(":", 1)[1].strip()}} if answer
                    else {"name": "step", "input": {"line": s.action}})
            content: list[dict[str, Any]] = [{"type": "text", "text": s.thought}] if s.thought else []
            content.append({"type": "tool_use", "id": tool_id, **call})
            messages.append({"role": "assistant", "content": content})
            obs = (s.observation or "")[: self.observation_chars]
            messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id,
                                                          "content": obs}]})
        return {"model": self.model, "max_tokens": self.max_tokens, "temperature": self.temperature,
                "system": [{"type": "text", "text": GAME24.system, "cache_control": EPHEMERAL}],
                "tools": tools, "messages": messages}

    def next_action(self, task: Task, history: Sequence[Step], guidance: Guidance,
                    rng: random.Random) -> Action:
        from evoagent.policies.llm import reply_action, tool_call
        from evoagent.envs.game24.prompt import GAME24

        def usable(reply: dict[str, Any]) -> dict[str, Any] | None:
            block = tool_call(reply, ("step", "answer"))
            inp = (block or {}).get("input") or {}
            text = inp.get("line") if block and block["name"] == "step" else inp.get("expression")
            return block if isinstance(text, str) and text.strip() else None

        nonce = f"{rng.getrandbits(64):016x}"
        reply = self.client.complete(self.request(task, history, guidance), template=GAME24.name,
                                     template_hash=GAME24.hash, nonce=nonce,
                                     valid=lambda a: usable(a) is not None)
        block = usable({"content": reply.content})
        if block is None:
            text = SUBMIT
        elif block["name"] == "step":
            text = str(block["input"]["line"])
        else:
            text = f"Answer: {block['input']['expression']}"
        return reply_action(text, reply)
