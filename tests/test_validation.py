"""Campaign validation (issue 8, item 7): every number finite and bounded, every check
that needs data done before a store exists; a refused campaign leaves no file behind."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from evoagent import campaign, launch
from evoagent.cli import main
from evoagent.errors import UserError
from stores import DuckDBStore

NUMERIC = [p for p, (types, *_rest) in campaign.spec().items()
           if {int, float} & set(types if isinstance(types, tuple) else (types,))]
HOSTILE = ["inf", "-inf", "nan", "1e308", "1000000000000000000", "-1", "18446744073709551616"]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


def invoke(args: list[str]):
    return CliRunner().invoke(main, args)


def test_every_numeric_key_is_covered() -> None:
    # a key added later without a bound fails here, not in a user's campaign
    assert {"mu", "lambda", "env.timeout_s", "operators.sample.rate", "budget.usd"} <= set(NUMERIC)
    for path in NUMERIC:
        assert campaign.spec()[path][2] is not None, f"{path} has no range check"


@pytest.mark.parametrize("key", NUMERIC)
def test_non_finite_and_absurd_numbers_are_refused(campaign_file: Path, key: str) -> None:
    """inf/nan/1e308/10^18/2^64/-1 for any numeric key: refused, naming the key and that it came from --set."""
    valid_seeds = {"1000000000000000000", "-1"}  # a seed only has to be a 64-bit integer
    for raw in HOSTILE:
        if key == "seed" and raw in valid_seeds:
            assert campaign.load(campaign_file, [f"seed={raw}"]).get("seed") == int(raw)
            continue
        with pytest.raises(UserError) as err:
            campaign.load(campaign_file, [f"{key}={raw}"])
        assert str(err.value).startswith("--set: ") and repr(key) in str(err.value), err.value


@pytest.mark.parametrize("setting, words", [
    ("env.timeout_s=inf", "env.timeout_s"),
    ("operators.sample.rate=inf", "operators.sample.rate"),
    ("mu=1000000000000", "mu"),
    ("lambda=1000000000000", "lambda"),
    ("budget.wall_time_s=nan", "budget.wall_time_s"),
    ("replacement.elitism=5", "replacement.elitism"),  # more elites than mu = 3
    ('policy.sources=["nope"]', "nope"),
    ('tasks.ids=["sql/99999"]', "sql/99999"),
    ('tasks.dbs=["nope"]', "nope"),
    ('tasks.ids=[]', "work items per generation"),  # 1,034 tasks x 500 > the per-generation cap
    ('policy.kind="openai"', "policy.base_url"),
])
def test_refused_campaign_creates_no_file(tmp_path: Path, campaign_file: Path, setting: str, words: str) -> None:
    out_dir = tmp_path / "runs" / "deeper"
    extra = ["--set", "mu=500", "--set", "lambda=500"] if setting == "tasks.ids=[]" else []
    before = files_under(tmp_path)
    out = invoke(["run", str(campaign_file), "--store", str(out_dir / "s.duckdb"), "--set", setting, *extra])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], out.output
    assert files_under(tmp_path) == before  # no store, no snapshot folder, no parent folder


def test_anthropic_without_key_creates_no_file(tmp_path: Path, campaign_file: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    out = invoke(["run", str(campaign_file), "--store", str(tmp_path / "s.duckdb"),
                  "--set", 'policy.kind="anthropic"', "--set", "policy.batch=false"])
    assert out.exit_code == 2 and "ANTHROPIC_API_KEY" in out.output
    assert not list(tmp_path.glob("s.duckdb*"))


def test_a_failed_start_removes_only_what_it_created(tmp_path: Path) -> None:
    """The last line of defence: a store this call created and never put a campaign in goes away."""
    fresh = tmp_path / "new" / "s.duckdb"
    with pytest.raises(UserError), launch._new_store(str(fresh)):
        raise UserError("late failure")
    assert not (tmp_path / "new").exists()

    kept = tmp_path / "kept.duckdb"
    with pytest.raises(UserError), launch._new_store(str(kept)) as store:
        store.put_meta("campaign", json.dumps({"name": "x"}))
        raise UserError("failure after the campaign was committed: resumable, so kept")
    assert kept.exists()

    other = tmp_path / "other.duckdb"
    DuckDBStore(other).close()  # someone else's (empty) store
    with pytest.raises(UserError), launch._new_store(str(other)):
        raise UserError("late failure")
    assert other.exists()


def test_resume_overrides_are_bounded_too(tmp_path: Path, campaign_file: Path) -> None:
    store = tmp_path / "s.duckdb"
    assert invoke(["run", str(campaign_file), "--store", str(store), "--set", "budget.generations=0"]).exit_code == 0
    for setting in ("concurrency=100000", "budget.usd=inf", "policy.timeout_s=nan"):
        out = invoke(["resume", str(store), "--set", setting])
        assert out.exit_code == 2 and out.output.startswith("error: --set: "), out.output


def test_toml_inf_in_the_file_is_blamed_on_the_file(tmp_path: Path, campaign_file: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(campaign_file.read_text().replace("[env]\n", "[env]\ntimeout_s = inf\n"))
    out = invoke(["run", str(bad), "--store", str(tmp_path / "s.duckdb")])
    assert out.exit_code == 2 and out.output.startswith(f"error: {bad}: key 'env.timeout_s': must be a finite")
    assert not os.path.exists(tmp_path / "s.duckdb")
