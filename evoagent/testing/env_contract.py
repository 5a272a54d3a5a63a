"""The environment contract: what the engine relies on from every ``Env`` (and its part).

Call it from your plug-in's tests; every built-in environment runs it in
``tests/test_contracts.py``::

    from evoagent.testing.env_contract import check_env

    def test_my_env_keeps_the_contract():
        tasks = my_env_part.load_tasks(settings)[:5]
        check_env(lambda: MyEnv(), tasks, actions={t.task_id: ["a plausible action"] for t in tasks})

Each check raises ``AssertionError`` naming the task, the actions and what broke:

- **totality**: ``step`` never raises, whatever the agent writes (empty, huge,
  control characters, lone surrogates, an action after the episode ended): a
  bad action is an observation (``info["valid"] = False``), not an exception;
- **bounded outputs**: observations are strings of at most ``max_observation``
  characters; rewards are finite and within ``reward_range``; ``done`` is a bool;
- **determinism**: the same task and actions give the same observations,
  rewards and ends, in a fresh instance and after a ``reset`` of a used one
  (so no state leaks from one episode into the next);
- **restorable** (only if the environment implements ``Restorable``): a
  snapshot restored into another instance answers every later step as the
  original does.

``check_environment_part`` checks the part declaration (``evoagent.envs.base.Environment``):
task ids unique, ``render_task`` and ``gold_key`` deterministic strings, the prompt
independent of the gold answer, ``meta`` holding the fields the part declares.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from evoagent.envs.base import Env, Restorable
from evoagent.trajectory import Task

__all__ = ["HOSTILE_ACTIONS", "check_env", "check_environment_part", "episode"]

# What an agent may write: no environment may raise on any of these.
HOSTILE_ACTIONS: tuple[str, ...] = (
    "", " ", "\n\n", "\x00", "\x1b[2J\x1b[31mred", "\ud800", "é" * 50, "🙂" * 20,
    "x" * 200_000, "(" * 5_000, "1/0", "'; DROP TABLE x; --", "SELECT * FROM nowhere",
    "{}", "null", "submit now", "SUBMIT", "1 + 2 = 3 (left: 4 5)", "import os; os.system('true')",
)

Record = tuple[str, float, bool, bool]  # observation, reward, done, valid


def episode(env: Env, task: Task, actions: Sequence[str], *, max_observation: int = 1_000_000,
            reward_range: tuple[float, float] = (0.0, 1.0)) -> tuple[str, list[Record], float]:
    """Reset, step through ``actions`` (past ``done`` too), submit; every output checked for bounds."""
    where = f"task {task.task_id!r}"
    first = env.reset(task)
    assert isinstance(first, str), f"{where}: reset() returned {type(first).__name__}, not str"
    records: list[Record] = []
    for action in actions:
        try:
            out = env.step(action)
        except Exception as exc:  # the contract under test: report which action raised
            raise AssertionError(f"{where}: step({action[:60]!r}) raised {type(exc).__name__}: {exc}") from exc
        records.append(_checked(out, f"{where}, step({action[:60]!r})", max_observation, reward_range))
    try:
        final = env.submit()
    except Exception as exc:
        raise AssertionError(f"{where}: submit() after {len(actions)} actions raised {exc!r}") from exc
    _reward(final, f"{where}: submit()", reward_range)
    return first, records, float(final)


def _reward(value: Any, where: str, reward_range: tuple[float, float]) -> None:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: reward {value!r} is not a number"
    assert math.isfinite(value), f"{where}: reward {value!r} is not finite"
    lo, hi = reward_range
    assert lo <= value <= hi, f"{where}: reward {value!r} is outside [{lo}, {hi}]"


def _checked(out: Any, where: str, max_observation: int, reward_range: tuple[float, float]) -> Record:
    assert isinstance(out, tuple) and len(out) == 4, f"{where}: returned {out!r}, not (obs, reward, done, info)"
    obs, reward, done, info = out
    assert isinstance(obs, str), f"{where}: observation is {type(obs).__name__}, not str"
    assert len(obs) <= max_observation, f"{where}: observation of {len(obs):,} chars (at most {max_observation:,})"
    _reward(reward, where, reward_range)
    assert isinstance(done, bool), f"{where}: done is {done!r}, not a bool"
    assert isinstance(info, Mapping), f"{where}: info is {type(info).__name__}, not a mapping"
    return obs, float(reward), done, bool(info.get("valid", True))


def check_env(make_env: Callable[[], Env], tasks: Sequence[Task],
              actions: Mapping[str, Sequence[str]] | None = None, *, max_observation: int = 1_000_000,
              reward_range: tuple[float, float] = (0.0, 1.0)) -> None:
    """Run every check of the module docstring on ``tasks``.

    ``actions``: per task id, plausible actions (e.g. a solution, or what the
    default policy plays); the hostile ones are added to them.
    """
    assert tasks, "check_env needs at least one task"
    bounds = {"max_observation": max_observation, "reward_range": reward_range}
    first, second = make_env(), make_env()
    try:
        for task in tasks:
            plausible = list((actions or {}).get(task.task_id, ()))
            for n, script in enumerate((plausible + list(HOSTILE_ACTIONS), list(HOSTILE_ACTIONS) + plausible)):
                a = episode(first, task, script, **bounds)
                b = episode(second, task, script, **bounds)
                assert a == b, f"task {task.task_id!r}: two instances answer {script[:3]!r}... differently"
                if n == 0:
                    again = episode(first, task, script, **bounds)
                    assert a == again, f"task {task.task_id!r}: a reset instance answers differently the second time"
            if isinstance(first, Restorable) and plausible:
                _check_restore(first, second, task, plausible, bounds)
    finally:
        first.close()
        second.close()


def _check_restore(env: Any, other: Any, task: Task, plausible: list[str], bounds: dict[str, Any]) -> None:
    """Snapshot after each prefix, restore into the other instance: the same continuation."""
    script = plausible[:3] + ["1/0", *plausible[:3]]
    for cut in sorted({0, 1, len(script) // 2, len(script)}):
        env.reset(task)
        for action in script[:cut]:
            env.step(action)
        state = env.snapshot()
        tail = script[cut:]
        want = [_checked(env.step(a), "original", **bounds) for a in tail] + [env.submit()]
        other.reset(task)
        other.step("an unrelated action")
        other.restore(state)
        got = [_checked(other.step(a), "restored", **bounds) for a in tail] + [other.submit()]
        assert got == want, (f"task {task.task_id!r}: restored after {cut} actions, the continuation differs "
                             f"from the original's")


def check_environment_part(part: Any, cfg: Any, tasks: Sequence[Task] | None = None) -> None:
    """The part declaration: tasks load the same twice with unique ids, prompts ignore gold, meta declared.

    ``part`` is an ``evoagent.envs.base.Environment``; ``cfg`` the settings its
    ``load_tasks`` receives; ``tasks`` (default: the first 20 loaded) the ones
    ``render_task``/``gold_key`` are checked on.
    """
    loaded = part.load_tasks(cfg)
    assert loaded, f"environment {part.name!r}: load_tasks gave no task"
    ids = [t.task_id for t in loaded]
    assert len(set(ids)) == len(ids), f"environment {part.name!r}: duplicate task ids"
    assert [t.task_id for t in part.load_tasks(cfg)] == ids, f"environment {part.name!r}: load_tasks is not deterministic"
    assert tuple(part.policies), f"environment {part.name!r}: declares no policy"
    for task in list(tasks or loaded[:20]):
        shown = part.render_task(task)
        assert isinstance(shown, str) and shown, f"task {task.task_id!r}: render_task gave {shown!r}"
        for poison in ("", "POISONED GOLD 4f1c"):
            assert part.render_task(replace(task, gold=poison)) == shown, (
                f"task {task.task_id!r}: render_task depends on the gold answer (a prompt would show it)")
        key = part.gold_key(task)
        assert isinstance(key, str) and key == part.gold_key(task), f"task {task.task_id!r}: gold_key {key!r}"
        meta = getattr(task, "meta", {}) or {}
        undeclared = set(meta) - set(part.meta_fields)
        assert not undeclared, f"task {task.task_id!r}: meta fields {sorted(undeclared)} not in meta_fields"
