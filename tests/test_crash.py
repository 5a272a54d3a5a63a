"""Crash safety: SIGKILL at >= 20 random moments, resume each time, same final population."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))

from crash_soak import soak  # noqa: E402


def test_kill_and_resume_20_times_gives_the_uninterrupted_population(tmp_path: Path) -> None:
    report = soak(tmp_path, kills=20, tasks=8, generations=8, seed=1)
    assert report.kills == 20
    assert report.double_commits == 0
    assert report.identical, report.moments
    assert any(m.startswith("mid-generation") for m in report.moments), report.moments
