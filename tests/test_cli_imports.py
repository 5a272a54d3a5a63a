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


NOT_ON_READ_PATHS = {"pandas", "polars", "anthropic", "matplotlib", "sklearn", "aiohttp", "torch", "deap", "ray"}


@pytest.mark.parametrize("held", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["file", "snapshot"])  # snapshot: long, in CI's slow step
def test_reading_commands_load_duckdb_and_arrow_only(tmp_path: Path, held: bool) -> None:
    """sql, status, show and lineage: no pandas (pyarrow.dataset pulls it), no polars, no LLM SDK;
    both when they read the store file and when a writer holds it (its Parquet snapshot)."""
    from stores import DuckDBStore
    from tests.test_snapshot_read import make_store

    path = make_store(tmp_path / "s.duckdb")
    writer = DuckDBStore(path) if held else None
    try:
        traj = _first_traj(path, held)
        for argv in (["sql", str(path), "SELECT count(*) FROM trajectories"], ["status", str(path)],
                     ["show", str(path), traj], ["lineage", str(path), traj]):
            run = (f"from evoagent.cli import main\ntry:\n    main({argv!r}, prog_name='evoagent')\n"
                   "except SystemExit as e:\n    assert not e.code, e.code\n")
            # a snapshot's parts are read by pyarrow.dataset, which loads pandas: DuckDB's own
            # read_parquet would need allowed_paths, which lets COPY ... TO overwrite the parts
            allowed = {"pandas"} if held else set()
            assert not _loaded_after(run) & (NOT_ON_READ_PATHS - allowed), argv[0]
    finally:
        if writer is not None:
            writer.close()


def _first_traj(path: Path, held: bool) -> str:
    from stores import open_reader

    with open_reader(path) as r:
        assert r.source == ("snapshot" if held else "file")
        return str(r.scalar("SELECT traj_id FROM trajectories ORDER BY traj_id LIMIT 1"))
