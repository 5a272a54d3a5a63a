"""``evoagent bench search``: search methods at equal budgets, one table (evoagent.bench)."""
from __future__ import annotations

from pathlib import Path

import click

from evoagent.cli.common import EXAMPLE, OneLineGroup, one_line_errors


def _csv(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip())


@click.group(cls=OneLineGroup, epilog=EXAMPLE + "  evoagent bench search --out runs/bench --prm runs/prm --budgets 50")
def bench() -> None:
    """Benchmarks of the engine's methods."""


@bench.command(name="search", epilog=EXAMPLE
               + "  evoagent bench search --out runs/bench --prm runs/prm --budgets 50 --seeds 1\n"
               "  evoagent bench search --out runs/bench --rewards oracle,mc --methods sample,best_of_n --budgets 10,25")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder of the benchmark: bench.duckdb (the bench table) and cells/ (one store per cell).")
@click.option("--env", "env", default="",
              help="The environment (env.kind) whose benchmark to run; default: the first that declares one.")
@click.option("--tasks", "task_set", default="",
              help="One of the environment's task sets; default: its first (see docs/benchmarks-search.md).")
@click.option("--budgets", default="10,25,50,100,200", show_default=True,
              help="Environment executions per task (acting + scoring), comma-separated positive integers.")
@click.option("--methods", default="", help="Comma-separated methods the strategies declare; default: all of them.")
@click.option("--rewards", default="",
              help="Reward models of the searching methods; default: the environment's (oracle is the ceiling; "
                   "judge needs an LLM).")
@click.option("--seeds", default=3, show_default=True, type=int)
@click.option("--prm", default="", help="A PRM folder trained on other tasks (evoagent rm train).")
@click.option("--sample", default=0, type=int, help="A seeded sample of that many tasks (0: all).")
@click.option("--set", "sets", multiple=True, metavar="KEY.PATH=VALUE",
              help="A campaign key for every cell (repeatable), e.g. policy.distractors=0.2.")
@click.option("--table-only", is_flag=True, help="Print the table of the finished cells; run nothing.")
@one_line_errors
def search(out: str, env: str, task_set: str, budgets: str, methods: str, rewards: str, seeds: int, prm: str,
           sample: int, sets: tuple[str, ...], table_only: bool) -> None:
    """Run every (method, reward model, budget, seed) cell not yet finished, then print the table.

    Killed mid-run, the same command resumes: finished cells are skipped and the cell in flight
    continues from its journal. The table is SQL over OUT/bench.duckdb (see docs/benchmarks-search.md)."""
    from evoagent.bench.search import Options, run
    from evoagent.bench.table import table
    from evoagent.errors import UserError

    try:
        parsed = tuple(int(b) for b in _csv(budgets))
    except ValueError:
        raise UserError(f"--budgets: positive integers only, got {budgets!r}") from None
    o = Options(out=Path(out), env=env, task_set=task_set, budgets=parsed, methods=_csv(methods),
                rewards=_csv(rewards), seeds=seeds, prm=str(Path(prm).resolve()) if prm else "", sample=sample,
                sets=sets)
    bench_file = Path(out) / "bench.duckdb"
    if table_only:
        if not bench_file.exists():
            raise UserError(f"no benchmark at {out} (no bench.duckdb)")
    else:
        bench_file = run(o, note=lambda s: click.echo(s, err=True))
    click.echo(table(bench_file))
