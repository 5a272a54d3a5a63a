"""Plug-ins: the lazy registry, parts from installed packages (entry points), their failures, and
campaign keys owned by parts (validated, all problems at once)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from evoagent import campaign, registry
from evoagent.cli import main
from evoagent.errors import UserError

HEAVY = ("anthropic", "torch", "ray", "pandas", "matplotlib", "polars", "duckdb", "numpy")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_evoagent_loads_no_part_and_no_heavy_dependency() -> None:
    loaded = _modules_after("import evoagent")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}, sorted(loaded)
    assert not {m for m in loaded if m.startswith(("evoagent.rewards", "evoagent.envs", "operators"))}


def test_parts_load_on_first_use_only() -> None:
    loaded = _modules_after(textwrap.dedent("""
        from evoagent import registry
        assert "oracle" in registry.names("reward") and "sample" in registry.names("operator")
        registry.get("reward", "oracle")
    """))
    assert "evoagent.rewards.oracle" in loaded
    assert not {"evoagent.rewards.http", "evoagent.rewards.judge", "evoagent.rewards.prm", "operators.sample",
                "anthropic", "torch"} & loaded


def test_validating_the_main_campaign_imports_no_reward_model_or_sdk() -> None:
    loaded = _modules_after("from evoagent import campaign\ncampaign.load('experiments/intercode_sql.toml')")
    assert not {"anthropic", "torch", "ray", "pandas", "matplotlib", "duckdb", "evoagent.rewards.http",
                "evoagent.rewards.judge", "evoagent.rewards.prm"} & loaded


# -- an installed package: a dist-info folder on sys.path ------------------------------------------
def _install(root: Path, dist: str, entries: dict[str, str], modules: dict[str, str]) -> None:
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[evoagent.parts]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()))
    for name, code in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(code))


SHOUT = '''
    from evoagent.registry import Key, Part, rate
    from evoagent.rollout import rollout


    def shout(task, rng, ctx):
        return rollout(ctx, task, rng, operator="shout")


    PART = Part("operator", "shout", shout, {"rate": rate(0.0), "volume": Key(int, 3, lambda x: 0 <= x <= 11, "within 0..11")})
'''


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path standing for installed packages; the registry reads it again, and forgets it after."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    monkeypatch.undo()
    for name in [m for m in sys.modules if m.startswith("plug_")]:
        del sys.modules[name]
    registry.rediscover()


def test_an_installed_package_adds_a_part_with_its_keys(site: Path, campaign_file: Path) -> None:
    _install(site, "shouting", {"operator.shout": "plug_shout:PART"}, {"plug_shout": SHOUT})
    registry.rediscover()
    assert "shout" in registry.names("operator") and "plug_shout" not in sys.modules  # declared, not imported
    assert registry.origin("operator", "shout") == "shouting" and registry.origin("operator", "sample") == "built-in"
    c = campaign.load(campaign_file, ["operators.shout.rate=0.5", "operators.shout.volume=11"])
    assert c.get("operators.shout.volume") == 11 and c.operator_rates()["shout"] == 0.5
    with pytest.raises(UserError, match="operators.shout.volume.*within 0..11"):
        campaign.load(campaign_file, ["operators.shout.volume=12"])


def test_a_package_whose_part_fails_to_import_is_one_line_and_the_builtins_keep_working(
        site: Path, campaign_file: Path, tmp_path: Path) -> None:
    _install(site, "brokenpkg", {"operator.broken": "plug_broken:PART", "policy.intercode_sql.mine": "plug_nope:X"},
             {"plug_broken": "import a_module_that_is_not_installed\n"})
    registry.rediscover()
    with pytest.raises(registry.PluginError) as err:
        registry.get("operator", "broken")
    line = str(err.value)
    assert "\n" not in line and "'brokenpkg'" in line and "'operator.broken'" in line
    assert "a_module_that_is_not_installed" in line
    assert campaign.load(campaign_file).get("operators.sample.rate") > 0  # a campaign not using it is unaffected
    store = tmp_path / "runs" / "s.duckdb"
    out = CliRunner().invoke(main, ["run", str(campaign_file), "--store", str(store), "--set", "operators.broken.rate=1"])
    lines = out.output.strip().splitlines()
    assert out.exit_code == 2 and len(lines) == 1 and "'brokenpkg'" in lines[0] and "operator.broken" in lines[0], out.output
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.parametrize("clash", ["builtin", "another package"])
def test_a_name_two_declarations_claim_is_refused_naming_the_package(site: Path, clash: str) -> None:
    if clash == "builtin":
        _install(site, "copycat", {"operator.sample": "plug_shout:PART"}, {"plug_shout": SHOUT})
        other = "a built-in part"
    else:
        _install(site, "loud-a", {"operator.shout": "plug_shout:PART"}, {"plug_shout": SHOUT})
        _install(site, "loud-b", {"operator.shout": "plug_shout:PART"}, {})
        other = "package 'loud-"
    registry.rediscover()
    name = "sample" if clash == "builtin" else "shout"
    with pytest.raises(registry.PluginError, match=f"plug-in package .*part 'operator.{name}'.*already declared by {other}"):
        registry.get("operator", name)
    assert any(f"operator.{name}" in p for p in registry.problems())
    assert registry.get("operator", "revise").name == "revise"  # every other name still resolves


def test_a_declaration_that_names_another_part_is_refused(site: Path) -> None:
    _install(site, "mislabel", {"operator.loud": "plug_shout:PART"}, {"plug_shout": SHOUT})
    registry.rediscover()
    with pytest.raises(registry.PluginError, match="'mislabel'.*not a operator part named 'loud'"):
        registry.get("operator", "loud")


# -- keys belong to their parts -------------------------------------------------------------------
def test_all_problems_of_a_campaign_are_reported_at_once(campaign_file: Path) -> None:
    with pytest.raises(UserError) as err:
        campaign.load(campaign_file, ["mu=0", "policy.explore=7", "operators.revise.rate=-1", "concurency=3"])
    lines = str(err.value).split("\nerror: ")
    assert len(lines) == 4, lines
    assert all(line.startswith("--set: ") for line in lines)
    for key in ("'mu'", "'policy.explore'", "'operators.revise.rate'", "did you mean 'concurrency'"):
        assert any(key in line for line in lines), (key, lines)


VALIDATION_HEAVY = ("anthropic", "duckdb", "torch", "ray", "pandas", "matplotlib", "sqlglot", "pyarrow", "polars",
                    "numpy", "deap.tools")
_REPORT_HEAVY = ("import sys\nfrom evoagent.cli import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
                 f"    print('loaded:', sorted(m for m in {VALIDATION_HEAVY!r} if m in sys.modules), file=sys.stderr)\n")


def test_run_reports_every_mistake_of_a_file_at_once_before_any_heavy_import(tmp_path: Path) -> None:
    """An unknown key, a bad value and another environment's key: three lines, exit 2, no store, and
    none of the heavy packages (the SDK, DuckDB, ...) imported to find them (issue 18)."""
    main_file = Path(__file__).resolve().parent.parent / "experiments" / "intercode_sql.toml"
    text = main_file.read_text().replace("mu = 4 ", "mu = 0 ").replace("dbs = []", "dbs = []\nranks = [1, 2]")
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("seed = 7", "seed = 7\ncolour = \"red\""))
    store = tmp_path / "s.duckdb"
    got = subprocess.run([sys.executable, "-c", _REPORT_HEAVY, "run", str(bad), "--store", str(store)],
                         capture_output=True, text=True, timeout=120)
    assert got.returncode == 2, got.stderr
    errors = [line for line in got.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3, got.stderr
    for words in ("key 'mu'", "unknown key 'colour'", "key 'tasks.ranks' belongs to environment"):
        assert sum(words in line for line in errors) == 1, (words, errors)
    assert "loaded: []" in got.stderr, got.stderr
    assert not store.exists()


def test_a_part_reads_only_its_own_keys_and_the_engines(campaign_file: Path) -> None:
    """``Campaign.settings_for``: own section keys by declared name, shared ones and the engine's by
    full path, frozen; another part's key is a KeyError naming the reader."""
    c = campaign.load(campaign_file, ["operators.revise.rate=0.25"])
    evolution = c.settings_for(registry.get("strategy", "evolution"))
    assert (evolution["mu"], evolution["first_operator"], evolution["seed"]) == (c.get("mu"), "sample", c.get("seed"))
    assert evolution["strategy.evolution.first_operator"] == "sample"
    assert "mu" in set(evolution) and "seed" not in set(evolution)  # iterating: its own keys only
    with pytest.raises(KeyError, match="strategy 'evolution' reads key 'policy.explore'"):
        evolution["policy.explore"]
    revise = c.settings_for(registry.get("operator", "revise"))
    assert dict(revise) == {"rate": 0.25} and revise.types["rate"] == (int, float)
    with pytest.raises(TypeError):
        revise["rate"] = 1  # type: ignore[index]
    env = c.settings_for(registry.get("environment", c.get("env.kind")))
    assert env["env.dialect"] == c.get("env.dialect") and env["env.max_steps"] == c.get("env.max_steps")
    with pytest.raises(KeyError, match="reads key 'mu'"):
        env.get("mu")


def test_a_one_round_strategy_runs_a_file_written_for_evolution(campaign_file: Path) -> None:
    for strategy in ("ipr", "best_of_n", "rro"):
        extra = ["fitness.reward=oracle", "strategy.best_of_n.allow_gold=true"] if strategy == "best_of_n" else []
        c = campaign.load(campaign_file, [f"strategy.kind={strategy}", *extra])
        assert not {"budget.generations", "mu", "lambda", "selection.kind"} & set(c.values)


def test_another_environments_keys_are_refused(campaign_file: Path) -> None:
    with pytest.raises(UserError, match="key 'tasks.ranks' belongs to environment 'game24'"):
        campaign.load(campaign_file, ["tasks.ranks=[1, 5]"])


def test_evolutions_first_operator_is_an_explicit_key(campaign_file: Path) -> None:
    assert campaign.load(campaign_file).get("strategy.evolution.first_operator") == "sample"
    with pytest.raises(UserError, match="first_operator.*arity 0"):
        campaign.load(campaign_file, ["strategy.evolution.first_operator=revise"])


def test_a_policy_must_fit_the_environment(campaign_file: Path) -> None:
    with pytest.raises(UserError, match="'enumerate' does not play env.kind = 'intercode_sql' \\(have replay"):
        campaign.load(campaign_file, ["policy.kind=enumerate"])


# -- evoagent parts -----------------------------------------------------------------------------------
def test_parts_lists_every_part_by_kind_with_keys_and_origin(site: Path) -> None:
    _install(site, "shouting", {"operator.shout": "plug_shout:PART"}, {"plug_shout": SHOUT})
    registry.rediscover()
    out = CliRunner().invoke(main, ["parts"])
    assert out.exit_code == 0, out.output
    text = out.output
    for kind in registry.KINDS:
        assert f"\n{kind}:\n" in f"\n{text}"
        for name in registry.names(kind):  # type: ignore[arg-type]
            assert f"\n  {name}  [" in text, (kind, name)
    assert "  shout  [shouting]" in text and "operators.shout.volume = 3  within 0..11" in text
    assert "  evolution  [built-in]" in text and "      mu = (required)" in text
    only = CliRunner().invoke(main, ["parts", "--kind", "environment"]).output
    assert only.startswith("environment:\n") and "operator:" not in only


def test_parts_names_a_part_that_cannot_be_used_and_exits_2(site: Path) -> None:
    _install(site, "brokenpkg", {"operator.broken": "plug_broken:PART"}, {"plug_broken": "raise ImportError('no')\n"})
    registry.rediscover()
    out = CliRunner().invoke(main, ["parts", "--kind", "operator"])
    assert out.exit_code == 2
    assert "  broken  [brokenpkg]  cannot be used" in out.output and "  sample  [built-in]" in out.output
