"""One registry: the README's example operator registers, validates and runs in a campaign."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from evoagent import campaign, launch, registry
from evoagent.errors import UserError
from stores import SnapshotStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def truncate() -> Iterator[None]:
    """Exec the docs' "Extending" example (so the docs cannot rot), then unregister it."""
    text = (ROOT / "docs" / "extending.md").read_text()
    section = text[text.index("## Extending"):text.index("## Layout")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 15 <= len(code.strip().splitlines()) <= 30
    exec(compile(code, "docs/extending.md", "exec"), {"__name__": "readme_example"})
    yield
    registry.unregister("operator", "truncate")


def test_example_operator_runs_in_a_campaign(truncate: None, tmp_path: Path, campaign_file: Path) -> None:
    c = campaign.load(campaign_file, ["operators.truncate.rate=2.0", "operators.truncate.min_keep=1",
                                      "budget.generations=2"])
    assert c.operator_rates()["truncate"] == 2.0
    out = launch.start(c, str(tmp_path / "t.duckdb"))
    assert out.status == "completed"
    s = SnapshotStore(tmp_path / "t.duckdb")
    try:
        rows = s.query("SELECT operator, status, len(parents) AS n FROM work_items "
                       "WHERE operator = 'truncate'").to_pylist()
        assert rows and all(r["status"] == "done" and r["n"] == 1 for r in rows)
        kids = s.scalar("SELECT count(*) FROM trajectories WHERE operator = 'truncate'")
        assert kids > 0
    finally:
        s.close()


def test_registered_keys_are_validated(truncate: None, campaign_file: Path) -> None:
    with pytest.raises(UserError, match=r"unknown key 'operators.truncate.min_kep' \(did you mean"):
        campaign.load(campaign_file, ["operators.truncate.min_kep=2"])
    with pytest.raises(UserError, match="operators.truncate.min_keep.*within 0..100"):
        campaign.load(campaign_file, ["operators.truncate.min_keep=-1"])


def test_keys_of_unregistered_parts_are_unknown(campaign_file: Path) -> None:
    with pytest.raises(UserError, match="unknown key 'operators.truncate'"):
        campaign.load(campaign_file, ["operators.truncate.rate=1"])
    with pytest.raises(UserError, match="key 'strategy.kind': unknown strategy 'beam' \\(have [a-z_, ]*evolution"):
        campaign.load(campaign_file, ["strategy.kind=beam"])
    with pytest.raises(UserError, match="key 'fitness.reward': unknown reward 'reinforce' \\(have env, [a-z_, ]*mc"):
        campaign.load(campaign_file, ["fitness.reward=reinforce"])


def test_a_name_is_declared_once() -> None:
    part = registry.get("operator", "revise")
    registry.register(part)  # the same declaration again (a re-import) is harmless
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.Part("operator", "revise", lambda *a: None))


def test_an_executor_reads_only_its_own_keys_and_names_the_ray_session(campaign_file: Path) -> None:
    """Issue 18: an executor gets its own Settings (a foreign key is a KeyError) and, when it declares
    ``campaign``, the stored campaign's JSON to hand on; a reward model placed on Ray gets the
    executor's session from the engine (``ray_address``), never by reading the executor's keys."""
    import json

    from evoagent.executors import make_executor
    from evoagent.rewards import ray_address

    got: dict = {}

    def probe(s, ctx, note, run, campaign):  # noqa: ANN001, ANN202 - a made-up executor part
        got["s"], got["campaign"] = s, campaign

    part = registry.Part("executor", "probe", probe, shared_keys={
        "executor.where": registry.Key(str, "ray://probe:1")}, ray_address=lambda s: s["executor.where"])
    registry.register(part)
    try:
        c = campaign.load(campaign_file, ["executor.kind=probe"])
        assert make_executor(c, None, lambda *a: None) is None
        s = got["s"]
        assert s["executor.where"] == "ray://probe:1" and s["concurrency"] == c.get("concurrency")
        assert "mu" in c.values  # evolution's, in the campaign but not the executor's
        with pytest.raises(KeyError, match="executor 'probe' reads key 'mu'"):
            s["mu"]
        assert json.loads(got["campaign"]) == c.values
        assert ray_address(c) == "ray://probe:1"
    finally:
        registry.unregister("executor", "probe")
    assert ray_address(campaign.load(campaign_file)) == "local"  # threads: a local session
    pytest.importorskip("ray", reason="the Ray executor's keys validate only with the [ray] extra")
    ray = campaign.load(campaign_file, ["executor.kind=ray", "executor.address=auto"])
    assert ray_address(ray) == "auto"
