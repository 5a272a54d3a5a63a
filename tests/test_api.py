"""The Python API (``evoagent.api``): the docs' example runs as written; parts by name or as objects."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl
import pytest

import evoagent
from evoagent import registry
from evoagent.errors import UserError
from evoagent.rewards import Query, RewardModel, Score

ROOT = Path(__file__).resolve().parent.parent
DOC = {"name": "api", "seed": 2, "mu": 2, "lambda": 2, "env": {"kind": "game24"}, "tasks": {"ranks": [901, 902]},
       "policy": {"kind": "replay"}, "budget": {"generations": 0}}


class Steps(RewardModel):
    """Gold-free: fewer steps score higher."""

    name, uses_gold = "api_steps_test", False

    @property
    def source(self) -> str:
        return "api_steps_test"

    def score(self, queries: Sequence[Query]) -> list[Score]:
        return [Score(1.0 / len(q.actions)) for q in queries]


@pytest.fixture
def clean() -> Iterator[None]:
    yield
    for kind, name in (("reward", "api_steps_test"), ("reward", "legal_moves")):
        registry.unregister(kind, name)  # type: ignore[arg-type]


def test_the_docs_examples_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean: None,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    (tmp_path / "experiments").mkdir()
    shutil.copy(ROOT / "experiments" / "game24.toml", tmp_path / "experiments")
    monkeypatch.chdir(tmp_path)
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/python-api.md block {i + 1}", "exec"), {"__name__": "docs_example"})
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "completed 1"
    with evoagent.results(tmp_path / "runs" / "notebook.duckdb") as r:
        assert r.generations()["generation"].to_list() == [0, 1, 2]
        pop = r.population()
        assert isinstance(pop, pl.DataFrame) and set(pop["task_id"]) == {f"game24/{n}" for n in range(901, 903)}
        sources = r.sql("SELECT DISTINCT reward_source FROM rewards")["reward_source"].to_list()
        assert "legal_moves(v=1)" in sources  # the instance scored the search
    assert "completed" in out.splitlines()[-1]


def test_parts_by_name_or_as_objects_give_one_campaign(tmp_path: Path, clean: None) -> None:
    by_object = evoagent.make_campaign(DOC, ["budget.generations=1"], search_reward=Steps())
    assert by_object.get("search.reward") == "api_steps_test"
    by_name = evoagent.make_campaign({**DOC, "search": {"reward": "api_steps_test"}}, ["budget.generations=1"])
    assert by_name.values == by_object.values
    out = evoagent.run(by_object, tmp_path / "s.duckdb")
    assert out.status == "completed"
    with evoagent.results(tmp_path / "s.duckdb") as r:
        rewards = r.arrow("SELECT value FROM rewards WHERE reward_source = 'api_steps_test'")
        assert rewards.num_rows > 0


def test_a_campaign_file_with_overrides(tmp_path: Path) -> None:
    c = evoagent.make_campaign(ROOT / "experiments" / "game24.toml", ["tasks.ranks=[901, 901]", "mu=2"])
    assert c.get("tasks.ranks") == [901, 901] and c.get("mu") == 2 and c.source.endswith("game24.toml")


@pytest.mark.parametrize("source, overrides, kwargs, message", [
    ({**DOC, "mu": 0}, (), {}, "key 'mu': must be within 1..10000"),
    (DOC, ("mu=0",), {}, "--set: key 'mu'"),
    ("no/such/file.toml", (), {}, "campaign file not found"),
    (DOC, (), {"strategy": 3}, "strategy: expected a name or a strategy part, got int"),
])
def test_mistakes_are_one_user_error(source: object, overrides: tuple[str, ...], kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        evoagent.make_campaign(source, overrides, **kwargs)  # type: ignore[arg-type]


def test_an_object_cannot_take_a_built_in_name(clean: None) -> None:
    class Impostor(Steps):
        name = "oracle"

    with pytest.raises(UserError, match="reward 'oracle'.*another name"):
        evoagent.make_campaign(DOC, search_reward=Impostor())
    assert registry.get("reward", "oracle").uses_gold  # the built-in is untouched


def test_importing_evoagent_loads_neither_the_api_nor_its_dependencies() -> None:
    code = ("import sys, evoagent; heavy = [m for m in ('evoagent.api', 'polars', 'duckdb', 'anthropic', 'torch', "
            "'ray', 'pandas', 'matplotlib') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


class FirstMove:
    """A policy object: one fixed move, then submit (deterministic, no gold)."""

    name = "api_first_move_test"

    def next_action(self, task, history, guidance, rng):  # type: ignore[no-untyped-def]
        from evoagent.policies.base import SUBMIT, Action

        return Action(SUBMIT if history else "4 + 5 = 9 (left: 6 9 10)")


def test_an_environment_and_a_policy_given_as_objects(tmp_path: Path) -> None:
    from dataclasses import replace as with_

    from evoagent.envs.base import Environment

    game24 = registry.get("environment", "game24")
    mine = Environment(name="api_env_test", load_tasks=lambda cfg: [with_(t, env="api_env_test") for t in
                                                                    game24.load_tasks(cfg)[:2]],
                       make_env=game24.make_env, policies=("api_first_move_test",), render_task=game24.render_task,
                       keys=game24.keys)
    try:
        c = evoagent.make_campaign({k: v for k, v in DOC.items() if k not in ("env", "tasks", "policy")},
                                   env=mine, policy=FirstMove())
        assert (c.get("env.kind"), c.get("policy.kind")) == ("api_env_test", "api_first_move_test")
        assert evoagent.run(c, tmp_path / "o.duckdb").status == "completed"
        with evoagent.results(tmp_path / "o.duckdb") as r:
            rows = r.sql("SELECT DISTINCT action FROM steps")["action"].to_list()
        assert rows == ["4 + 5 = 9 (left: 6 9 10)"]
    finally:
        registry.unregister("environment", "api_env_test")  # type: ignore[arg-type]
        registry.unregister("policy", "api_first_move_test")  # type: ignore[arg-type]
