"""The CLI loads only what a command uses: help needs click alone, and nothing below the CLI imports it."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from evoagent.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("duckdb", "pyarrow", "polars", "pandas", "numpy", "anthropic", "rich", "matplotlib", "sklearn", "aiohttp",
         "deap", "sqlglot")


def _loaded_after(code: str) -> set[str]:
    """Top-level packages in sys.modules after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_help_of_every_command_loads_nothing_heavy() -> None:
    run_help = ("import sys\nfrom evoagent.cli import main, COMMANDS\n"
                "for argv in [['--help']] + [[c, '--help'] for c in COMMANDS]:\n"
                "    try:\n        main(argv, prog_name='evoagent')\n    except SystemExit:\n        pass\n")
    assert not _loaded_after(run_help) & set(HEAVY)


def test_every_listed_command_resolves() -> None:
    ctx = main.make_context("evoagent", ["--help"], resilient_parsing=True)
    for name in COMMANDS:
        assert main.get_command(ctx, name) is not None, name


@pytest.mark.parametrize("package", ["evoagent", "stores", "operators"])
def test_nothing_below_the_cli_imports_it(package: str) -> None:
    offenders = []
    for path in (ROOT / package).rglob("*.py"):
        if "cli" in path.relative_to(ROOT).parts[:2] and package == "evoagent":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{a.name}" for a in node.names] + [node.module or ""]
                     if isinstance(node, ast.ImportFrom) else [])
            if any(n == "evoagent.cli" or n.startswith("evoagent.cli.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders
