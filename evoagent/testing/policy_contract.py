"""The policy contract: what the engine relies on from every policy.

Call it from your plug-in's tests; every built-in offline policy runs it in
``tests/test_contracts.py``::

    from evoagent.testing.policy_contract import check_policy

    def test_my_policy_keeps_the_contract():
        check_policy(lambda: MyPolicy(seed_data), tasks, make_env=MyEnv)

``make_policy`` builds a fresh policy (as a resumed campaign does in a new
process). Each check raises ``AssertionError`` naming the task and what broke:

- **determinism under a seed**: the same task, history, guidance and
  ``random.Random(seed)`` give the same action, in the same and in a fresh
  instance, so a resumed work item replays exactly (the engine's resume rule);
- **never reads gold**: the same actions with the task's gold answer blanked
  or replaced (``rollout`` hands policies the task without gold; a policy must
  not find it elsewhere either, e.g. by task id in a table of answers);
- **totality**: a history of hostile observations (control characters, a
  huge text, ``None`` for a step never executed) is an input, not an error;
- **bounded outputs**: an ``Action`` whose text is a string of at most
  ``max_action`` characters, with finite, non-negative cost and token counts.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from evoagent.envs.base import Env
from evoagent.policies.base import Action, Guidance, is_submit, masked
from evoagent.testing.env_contract import HOSTILE_ACTIONS
from evoagent.trajectory import Step, Task

__all__ = ["check_policy", "play"]

POISON = "POISONED GOLD 4f1c"


def _checked(action: Any, where: str, max_action: int) -> Action:
    assert isinstance(action, Action), f"{where}: next_action returned {type(action).__name__}, not Action"
    assert isinstance(action.text, str), f"{where}: action text is {type(action.text).__name__}"
    assert len(action.text) <= max_action, f"{where}: action of {len(action.text):,} chars (at most {max_action:,})"
    for name in ("cost_usd", "input_tokens", "output_tokens"):
        value = getattr(action, name)
        assert math.isfinite(value) and value >= 0, f"{where}: {name} = {value!r}"
    return action


def play(policy: Any, task: Task, env: Env | None, seed: int, *, max_steps: int = 6,
         guidance: Guidance = Guidance(), max_action: int = 100_000) -> list[str]:
    """One episode's actions, as ``rollout`` drives a policy (masked history, no gold); without an env,
    the observations are a fixed text."""
    rng = random.Random(seed)
    shown = replace(task, gold="")
    history: list[Step] = []
    actions: list[str] = []
    if env is not None:
        env.reset(task)
    while len(history) < max_steps:
        act = _checked(policy.next_action(shown, tuple(masked(history)), guidance, rng),
                       f"task {task.task_id!r}, step {len(history)}", max_action)
        actions.append(act.text)
        if is_submit(act.text):
            break
        obs, reward, done = ("(no environment)", 0.0, False) if env is None else env.step(act.text)[:3]
        history.append(Step(len(history), act.text, obs, float(reward), act.thought))
        if done:
            break
    return actions


def check_policy(make_policy: Callable[[], Any], tasks: Sequence[Task], make_env: Callable[[], Env] | None = None,
                 *, seeds: Sequence[int] = (0, 1, 2), max_steps: int = 6, max_action: int = 100_000) -> None:
    """Run every check of the module docstring on ``tasks`` (a handful is enough)."""
    assert tasks, "check_policy needs at least one task"
    policy, fresh = make_policy(), make_policy()
    assert isinstance(getattr(policy, "name", None), str) and policy.name, "a policy needs a non-empty name"
    kw: dict[str, Any] = {"max_steps": max_steps, "max_action": max_action}
    env = make_env() if make_env is not None else None
    try:
        for task in tasks:
            for seed in seeds:
                want = play(policy, task, env, seed, **kw)
                assert play(policy, task, env, seed, **kw) == want, (
                    f"task {task.task_id!r}, seed {seed}: the same policy plays differently twice")
                assert play(fresh, task, env, seed, **kw) == want, (
                    f"task {task.task_id!r}, seed {seed}: a fresh instance plays differently (a resume would differ)")
                for gold in ("", POISON):
                    got = play(policy, replace(task, gold=gold), env, seed, **kw)
                    assert got == want, f"task {task.task_id!r}, seed {seed}: its actions change with the gold answer"
                avoid = Guidance(avoid=frozenset(want[:1]), notes="a review's advice\x1b[2J")
                play(policy, task, env, seed, guidance=avoid, **kw)
            _hostile_history(policy, task, max_action)
    finally:
        if env is not None:
            env.close()


def _hostile_history(policy: Any, task: Task, max_action: int) -> None:
    """Observations an environment or a recording may hold: each is input, never an error."""
    shown = replace(task, gold="")
    history = [Step(i, action, obs, 0.0) for i, (action, obs) in enumerate(
        zip(HOSTILE_ACTIONS, (None, "\x00\x1b[31m", "x" * 500_000, "\ud800", "", *HOSTILE_ACTIONS)))]
    for n in (1, 3, len(history)):
        try:
            action = policy.next_action(shown, tuple(masked(history[:n])), Guidance(), random.Random(n))
        except Exception as exc:
            raise AssertionError(f"task {task.task_id!r}: next_action raised {exc!r} on a hostile history "
                                 f"of {n} steps") from exc
        _checked(action, f"task {task.task_id!r}, hostile history of {n}", max_action)
