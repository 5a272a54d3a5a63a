"""The learned Game of 24 state value: split by number multiset, look-ahead features, the reward part."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from evoagent import campaign, launch
from evoagent.envs.game24.rules import parse_state
from evoagent.envs.game24.solver import solvable
from evoagent.envs.game24.value_model import (StateValueModel, describe, features, next_states, reachable,
                                              training_states)
from evoagent.errors import UserError
from evoagent.rewards import Query, make_scorer
from stores import DuckDBStore

F = Fraction


def test_reachable_multisets_and_one_move_look_ahead() -> None:
    assert next_states((F(2), F(12))) == {(F(14),), (F(-10),), (F(10),), (F(24),), (F(1, 6),), (F(6),)}
    found = reachable([parse_state("4 6 1 1")])
    assert (F(1), F(1), F(4), F(6)) in found and (F(24),) in found and (F(1), F(1), F(24)) in found
    assert {len(s) for s in found} == {1, 2, 3, 4}
    # two-number states are decided by the look-ahead: a move to 24 alone exists or not
    width = len(describe((F(24),)))
    assert features((F(2), F(12)))[3 * width - 2] == 1.0  # max over next states: "24 alone"
    assert features((F(2), F(13)))[3 * width - 2] == 0.0
    assert describe((F(24),))[-2] == 1.0 and describe((F(2), F(12)))[-2] == 0.0


def test_training_states_never_hold_an_excluded_multiset() -> None:
    held_out = reachable(parse_state(p) for p in ("4 5 6 10", "1 1 4 6"))
    train = training_states((1, 30), held_out, limit=500)
    assert len(train) == 500 and not set(train) & held_out
    assert train == training_states((1, 30), held_out, limit=500)  # seeded: the same sample


def test_the_model_ranks_unseen_multisets_well() -> None:
    """Trained on 2,000 multisets of puzzles 1-40, judged on every state of puzzles 901-905 (unseen)."""
    from sklearn.metrics import roc_auc_score

    test = sorted(reachable(parse_state(q) for q in ("4 5 6 10", "1 3 4 6", "2 9 10 12", "1 1 11 11", "3 3 8 8"))
                  )
    train = training_states((1, 40), set(test), limit=2000)
    model = StateValueModel().fit(train)
    labels = [solvable(s) for s in test]
    assert 0 < sum(labels) < len(labels)
    assert roc_auc_score(labels, model.value(test)) > 0.9


def test_state_value_is_a_reward_part_of_game24_campaigns(tmp_path: Path) -> None:
    cfg = Path(__file__).resolve().parent.parent / "experiments" / "game24.toml"
    keys = ["tasks.ranks=[901, 902]", "policy.kind=enumerate", "search.reward=state_value",
            "rewards.state_value.train_ranks=[1, 20]", "rewards.state_value.states=800"]
    c = campaign.load(cfg, keys)
    ctx = launch.build_context(c, launch.select_tasks(c))
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        scorer = make_scorer("state_value", c, ctx, store)
        task = ctx.tasks["game24/901"]  # 4 5 6 10
        good = "10 - 4 = 6 (left: 5 6 6)"  # 5 * 6 - 6 = 24
        values = scorer.score([Query(task.task_id, (good,)), Query(task.task_id, ("5 + 5 = 10 (left: 6 10 10)",)),
                               Query(task.task_id, ())])
        assert values[1] == 0.0  # an invalid step scores 0
        assert all(0.0 <= v <= 1.0 for v in values)
        model = scorer.model
        assert model.source == "state_value(ranks=1-20,states=800)" and model.trained_on == 800
        # two numbers left: the look-ahead decides (30 - 6 = 24; nothing from 6 and 11 is)
        won, lost = (good, "5 * 6 = 30 (left: 6 30)"), (good, "5 + 6 = 11 (left: 6 11)")
        assert solvable(parse_state("6 30")) and not solvable(parse_state("6 11"))
        high, low = scorer.score([Query(task.task_id, won), Query(task.task_id, lost)])
        assert high > 0.5 > low
        # submitted there (terminal): an episode stopped with two numbers left is lost by the rules,
        # however reachable 24 was; the finished one keeps its value (a cut-off member never
        # outranks a solved one under fitness.reward = state_value)
        solved = (*won, "30 - 6 = 24 (left: 24)")
        cut, done = scorer.score([Query(task.task_id, won, terminal=True), Query(task.task_id, solved, terminal=True)])
        assert cut == 0.0 < done and done > 0.5
        ctx.close()
    with pytest.raises(UserError, match="rewards.state_value.train_ranks"):
        campaign.load(cfg, [*keys, "rewards.state_value.train_ranks=[5, 2]"])


def test_each_puzzle_is_its_own_gold_class_for_rm_train_and_leakage_guards() -> None:
    """Every Game of 24 task has the same goal: one class for all would leave rm train nothing to hold out."""
    from evoagent.envs.game24.data import load_tasks
    from evoagent.rm.leakage import classes

    tasks = load_tasks([901, 960])
    assert len(set(classes(tasks).values())) == len(tasks) == 60
