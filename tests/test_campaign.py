"""Campaign files are validated before any work, with one line naming the key."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from evoagent import campaign
from evoagent.errors import UserError
from tests.conftest import SMALL, cli, cli_env


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_valid_file_and_overrides(campaign_file: Path) -> None:
    c = campaign.load(campaign_file, ["mu=5", "selection.kind=nsga2", "budget.wall_time_s=1.5"])
    assert c.get("mu") == 5 and c.get("selection.kind") == "nsga2"
    assert c.get("budget.wall_time_s") == 1.5
    assert c.get("operators.revise.rate") == 0.4  # default filled in


@pytest.mark.parametrize("text, key", [
    (SMALL + "\n[operators.mutate]\nrate = 1\n", "operators.mutate"),
    (SMALL.replace("mu = 3", "mu = -1"), "mu"),
    (SMALL.replace("mu = 3", "mu = \"three\""), "mu"),
    (SMALL.replace("mu = 3\n", ""), "mu"),
    (SMALL.replace("lambda = 4", "lamda = 4"), "lamda"),
    (SMALL.replace('kind = "intercode_sql"', 'kind = "webshop"'), "env.kind"),
    (SMALL.replace('kind = "replay"', 'kind = "gpt"'), "policy.kind"),
    (SMALL + "\n[selection]\nkind = \"roulette\"\n", "selection.kind"),
    (SMALL + "\n[selection]\nobjectives = [\"speed\"]\n", "selection.objectives"),
    (SMALL.replace("concurrency = 2", "concurrency = true"), "concurrency"),
])
def test_bad_files_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(UserError) as err:
        campaign.load(write(tmp_path, text))
    assert repr(key) in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value", ['"many"', "-1", "true", "33"])
def test_bad_sender_processes_are_refused(campaign_file: Path, value: str) -> None:
    llm = ["policy.kind=openai"]  # the key of the LLM policies
    with pytest.raises(UserError, match="'policy.processes'"):
        campaign.load(campaign_file, [*llm, f"policy.processes={value}"])
    assert campaign.load(campaign_file, [*llm, "policy.processes=2"]).get("policy.processes") == 2


def test_misspelt_key_gets_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="did you mean 'lambda'"):
        campaign.load(write(tmp_path, SMALL.replace("lambda = 4", "lamda = 4")))


def test_bad_override() -> None:
    with pytest.raises(UserError, match="KEY.PATH=VALUE"):
        campaign.parse_override("mu")


def test_cli_rejects_before_any_work(tmp_path: Path) -> None:
    bad = write(tmp_path, SMALL.replace("mu = 3", "mu = 0"))
    store = tmp_path / "s.duckdb"
    r = subprocess.run(cli("run", str(bad), "--store", str(store)), capture_output=True, text=True, env=cli_env())
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "'mu'" in r.stderr
    assert not store.exists()


def test_cli_rejects_unknown_task_before_any_work(tmp_path: Path, campaign_file: Path) -> None:
    store = tmp_path / "s.duckdb"
    r = subprocess.run(cli("run", str(campaign_file), "--store", str(store), "--set", 'tasks.ids=["sql/99999"]'),
                       capture_output=True, text=True, env=cli_env())
    assert r.returncode == 2 and "tasks.ids" in r.stderr
