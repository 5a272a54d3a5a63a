"""Crash safety: SIGKILL at points of the campaign's progress, resume each time, same final population.

Kill points are counted in commits (changes of the store's write-ahead log), never in
seconds measured beforehand, so these tests ask the same of a loaded machine as of an
idle one (a kill window derived from measured timings once delivered 15 of 20 kills).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from crash_soak import soak  # experiments/ is on the path (conftest)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # four campaign processes (~25 s); the default run keeps the in-process stop/resume tests
def test_kills_at_progress_points_then_resumes_give_the_uninterrupted_population(tmp_path: Path) -> None:
    report = soak(tmp_path, kills=2, tasks=4, generations=4, seed=3)
    assert report.kills == 2 and report.runs == 3, report.moments
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


def test_default_run_leaves_the_soaks_to_their_own_ci_step(pytestconfig: pytest.Config) -> None:
    """The default run (pyproject's addopts) deselects `slow`; the soaks carry it, CI runs them."""
    import test_llm
    import test_llm_kill

    addopts = pytestconfig.getini("addopts")
    assert addopts[addopts.index("-m") + 1] == "not slow"
    slow = [test_kill_and_resume_20_times_gives_the_uninterrupted_population,
            test_llm_kill.test_kill_during_batches_then_resume, test_llm.test_batch_mode_same_result_at_half_price,
            test_llm.test_api_key_is_never_stored_or_exported, test_llm.test_faults_do_not_change_the_result,
            test_kills_at_progress_points_then_resumes_give_the_uninterrupted_population]
    for fn in slow:
        assert ({m.name for m in getattr(fn, "pytestmark", [])} == {"slow"}) == (fn in slow), fn.__name__
    assert "-m pytest -q -m slow" in (ROOT / ".ci" / "run").read_text()
