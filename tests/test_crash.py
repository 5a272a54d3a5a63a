"""Crash safety: SIGKILL at points of the campaign's progress, resume each time, same final population.

Kill points are counted in commits and in what the store shows its readers, never in
seconds measured beforehand, so these tests ask the same of a loaded machine as of an
idle one (a kill window derived from measured timings once delivered 15 of 20 kills).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crash_soak import soak  # experiments/ is on the path (conftest)

ROOT = Path(__file__).resolve().parent.parent


def test_kills_at_progress_points_then_resumes_give_the_uninterrupted_population(tmp_path: Path) -> None:
    report = soak(tmp_path, kills=3, tasks=6, generations=6, seed=3)
    assert report.kills == 3 and report.runs == 4, report.moments
    assert report.double_commits == 0
    assert report.identical, report.moments
    assert report.progress == sorted(report.progress)  # no kill lost committed work


@pytest.mark.slow  # a soak: 20 kills and resumes; `pytest -m slow`
def test_kill_and_resume_20_times_gives_the_uninterrupted_population(tmp_path: Path) -> None:
    report = soak(tmp_path, kills=20, tasks=8, generations=40, seed=1)
    assert report.kills == 20
    assert report.double_commits == 0
    assert report.identical, report.moments
    assert any(m.startswith("mid-generation") for m in report.moments), report.moments
    assert any(p.startup for p in report.points) and any(not p.startup for p in report.points)


def _collected(*args: str) -> set[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          *args, "tests/test_crash.py", "tests/test_llm_kill.py"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return {line.split("::")[-1] for line in out.stdout.splitlines() if "::" in line}


def test_default_run_leaves_the_soaks_to_their_own_ci_step() -> None:
    soaks = {"test_kill_and_resume_20_times_gives_the_uninterrupted_population",
             "test_kill_during_batches_then_resume"}
    default = _collected()
    assert "test_kills_at_progress_points_then_resumes_give_the_uninterrupted_population" in default
    assert not soaks & default
    assert _collected("-m", "slow") == soaks
    ci = (ROOT / ".ci" / "run").read_text()
    assert "-m pytest -q -m slow" in ci
