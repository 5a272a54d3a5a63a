"""Shared fixtures: a small campaign on real InterCode-SQL tasks with the replay policy."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMALL = """
name = "test"
seed = 3
mu = 3
lambda = 4
concurrency = 2
[env]
kind = "intercode_sql"
[tasks]
ids = ["sql/0", "sql/7", "sql/42", "sql/100", "sql/333", "sql/512"]
[policy]
kind = "replay"
explore = 0.2
[budget]
generations = 3
"""


@pytest.fixture
def campaign_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


sys.path.insert(0, str(ROOT / "experiments"))
from crash_soak import cli, cli_env  # noqa: E402,F401 - one definition, shared with the soak script
