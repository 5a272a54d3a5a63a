"""The code environment, its visible-test reward and the replay policy (offline, through the sandbox)."""
from __future__ import annotations

import random

from evoagent.envs.code.data import load_tasks, visible_tests
from evoagent.envs.code.env import CodeEnv
from evoagent.envs.code.policies import CodeReplayPolicy, passed_all_visible
from evoagent.envs.code.values import VisibleTests
from evoagent.policies.base import Guidance, is_submit
from evoagent.trajectory import Step

TASK = load_tasks("humaneval")[0]  # has_close_elements
WRONG = "def has_close_elements(numbers, threshold):\n    return True\n"
RIGHT = TASK.question + "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"
# passes both docstring examples, fails the hidden tests (a threshold off by one)
OVERFIT = ("def has_close_elements(numbers, threshold):\n"
           "    return any(0 < abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n")


def test_episode_observation_reward_submit():
    env = CodeEnv()
    shown = env.reset(TASK)
    assert "Visible tests:" in shown and visible_tests(TASK)[0] in shown and "def check" not in shown
    obs, reward, done, info = env.step(WRONG)
    assert (reward, done, info["visible_passed"], info["visible_total"]) == (0.0, False, 1, 2)
    assert "# output: True" in obs and not passed_all_visible(obs)
    state = env.snapshot()
    obs, reward, done, _ = env.step(RIGHT)
    assert reward == 1.0 and passed_all_visible(obs) and "check(" not in obs
    assert env.step("submit")[1:3] == (1.0, True)
    env.restore(state)  # back to the wrong program: its outcome is submitted
    assert env.submit() == 0.0


def test_bad_programs_are_observations():
    env = CodeEnv()
    env.reset(TASK)
    for program in ("def f(:", b"bytes", "x" * 200_000, "import os\nos._exit(0)\n"):
        obs, reward, done, info = env.step(program)
        assert reward == 0.0 and not done and obs.startswith(("Error:", "Tested passed:"))


def test_visible_reward_is_gold_free_and_has_a_gap():
    model = VisibleTests({TASK.task_id: TASK})
    assert not model.uses_gold
    env = CodeEnv()
    env.reset(TASK)
    hidden = env.step(OVERFIT)[1]
    assert model.value(TASK.task_id, (OVERFIT,)) == 1.0 and hidden == 0.0  # visible passes, hidden fails
    assert model.value(TASK.task_id, (WRONG, "submit")) == 0.5
    assert model.value(TASK.task_id, ()) == 0.0


def test_replay_policy_stops_on_its_own_rule():
    policy = CodeReplayPolicy(max_programs=3)
    env, rng = CodeEnv(), random.Random(7)
    env.reset(TASK)
    history: list[Step] = []
    while True:
        action = policy.next_action(TASK, history, Guidance(), rng)
        if is_submit(action.text):
            break
        obs, reward, _, _ = env.step(action.text)
        history.append(Step(len(history), action.text, obs, reward, action.thought))
    assert 1 <= len(history) <= 3
    assert passed_all_visible(history[-1].observation) or len(history) == 3
    assert len({s.action for s in history}) == len(history)  # never the same program twice
