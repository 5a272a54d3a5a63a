"""A code campaign offline: kill -9 at a deterministic point mid-campaign, resume, identical population."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from crash_soak import KillPoint, _population, _state, _watch_wal, cli, cli_env, kill_at  # experiments/ is on the path

CAMPAIGN = """
name = "code-kill"
seed = 5
mu = 2
lambda = 3
concurrency = 2
[env]
kind = "code"
max_steps = 4
[tasks]
set = "humaneval"
ids = ["HumanEval/0", "HumanEval/10", "HumanEval/32", "HumanEval/129", "HumanEval/145", "HumanEval/163"]
[policy]
kind = "replay"
max_programs = 3
[search]
reward = "visible"
[fitness]
reward = "visible"
[budget]
generations = 3
"""


@pytest.mark.slow  # three campaign processes (~40 s on a loaded 2-core machine)
def test_kill_mid_campaign_then_resume_gives_the_same_population(tmp_path: Path) -> None:
    cfg = tmp_path / "code.toml"
    cfg.write_text(CAMPAIGN)
    ref, crashed = tmp_path / "reference.duckdb", tmp_path / "crashed.duckdb"
    reference = subprocess.Popen(cli("run", str(cfg), "--store", str(ref)), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=cli_env())
    commits = _watch_wal(reference, ref, None)  # the whole run's commits, counted as crash_soak counts them
    assert reference.wait() == 0
    proc = subprocess.Popen(cli("run", str(cfg), "--store", str(crashed)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=cli_env())
    # the kill point is a commit count (never seconds): half of the uninterrupted run's, mid-campaign
    assert kill_at(proc, crashed, KillPoint(commits=commits // 2, startup=False))
    started, last, _, where = _state(crashed)
    assert started and last < 3, where  # killed mid-campaign, not before or after it
    subprocess.run(cli("resume", str(crashed)), check=True, capture_output=True, env=cli_env())
    assert _population(crashed) == _population(ref)
    assert len(_population(ref)) > 0
