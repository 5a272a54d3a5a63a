"""``evoagent import``: recorded agent runs into a store."""
from __future__ import annotations

from pathlib import Path

import click

from evoagent.cli.common import EXAMPLE, OneLineGroup, not_a_store, one_line_errors
from evoagent.errors import UserError


def import_target(store_path: str) -> None:
    """Refuse a path that is not a store, or a store that holds a campaign: imported runs would
    join its tasks and population and the campaign would resume over them."""
    not_a_store(store_path, must_exist=False)
    if not Path(store_path).exists():
        return
    from stores import open_reader

    reader = open_reader(store_path)
    try:
        held = reader.get_meta("campaign")
    finally:
        reader.close()
    if held:
        raise UserError(f"{store_path} holds a campaign; import into a store of its own "
                        "(e.g. --store runs/recorded.duckdb)")


@click.group(name="import", cls=OneLineGroup, epilog=EXAMPLE + "  evoagent import intercode --bundled --store runs/recorded.duckdb")
def import_() -> None:
    """Import recorded agent runs into a store."""


@import_.command(name="intercode", epilog=EXAMPLE + "  evoagent import intercode --bundled --store runs/recorded.duckdb\n"
                 "  evoagent import intercode my_model_multiturn_10.json --store runs/recorded.duckdb")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--store", "store_path", required=True, help="Store file (created if missing).")
@click.option("--bundled", is_flag=True, help="Also import the recorded GPT-4, GPT-3.5 and human runs shipped with evoagent.")
@one_line_errors
def import_intercode(files: tuple[str, ...], store_path: str, bundled: bool) -> None:
    """Import InterCode-SQL trajectory files (InterCode's JSON, optionally gzipped).

    All files are checked before anything is written, then their trajectories are written in one
    transaction: one bad file stops the import with nothing written (no store is created)."""
    from evoagent.envs.intercode_sql.data import ImportBudget, bundled_runs, load_recorded, load_tasks
    from stores import DuckDBStore, TrajectoryBatch

    paths = [Path(f) for f in files] + (sorted(bundled_runs().values()) if bundled else [])
    if not paths:
        raise UserError("give one or more FILES, or --bundled")
    import_target(store_path)
    tasks = load_tasks()
    budget = ImportBudget()  # bytes across all the files, not per file
    loaded = [(p, load_recorded(p, tasks, budget)) for p in paths]
    batch = TrajectoryBatch.from_trajectories([t for _, ts in loaded for t in ts], campaign="import",
                                              reward_source="recorded")
    with DuckDBStore(store_path) as store:
        store.add_tasks(tasks)
        n = store.write(batch)
    for p, trajs in loaded:
        blocked = sum(s.observation is None for t in trajs for s in t.steps)
        click.echo(f"{p.name}: {len(trajs)} trajectories, {sum(t.n_steps for t in trajs)} steps"
                   + (f" ({blocked} never executed: 'blocked', stored with no observation)" if blocked else ""))
    click.echo(f"{store_path}: {n} new trajectories")


@import_.command(name="game24", epilog=EXAMPLE + "  evoagent import game24 --bundled --store runs/game24_logs.duckdb")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--store", "store_path", required=True, help="Store file (created if missing).")
@click.option("--bundled", is_flag=True, help="Also import GPT-4's Tree of Thoughts, CoT and standard runs shipped with evoagent.")
@one_line_errors
def import_game24(files: tuple[str, ...], store_path: str, bundled: bool) -> None:
    """Import Tree of Thoughts' Game of 24 logs (JSON, optionally gzipped): each final answer a trajectory.

    Every action is judged by the game24 environment (errors are steps with valid = false); the
    outcome is the log's own verdict. All files are checked before one transaction writes them."""
    from evoagent.envs.game24.data import bundled_logs
    from evoagent.envs.game24.recorded import import_logs

    paths = [Path(f) for f in files] + (sorted(bundled_logs().values()) if bundled else [])
    if not paths:
        raise UserError("give one or more FILES, or --bundled")
    import_target(store_path)
    for rec, n in import_logs(paths, store_path):
        click.echo(f"{rec.source}: {n} answers")
    click.echo(f"{store_path}: imported")


def _import_code(kind: str, files: tuple[str, ...], store_path: str, bundled: bool) -> None:
    from evoagent.envs.code.data import bundled_files
    from evoagent.envs.code.recorded import import_logs

    paths = [Path(f) for f in files] + (bundled_files(kind) if bundled else [])
    if not paths:
        raise UserError("give one or more FILES, or --bundled")
    import_target(store_path)
    for rec, rows, empty in import_logs(paths, kind, store_path):
        click.echo(f"{Path(rec.path).name}: {rows} runs as {rec.source} ({rec.task_set}), "
                   f"{sum(r.solved for r in rec.rows)} recorded solved"
                   + (f", {empty} without a recorded program" if empty else ""))
    click.echo(f"{store_path}: imported")


_CODE_HELP = ("All files are checked before one transaction writes them: a malformed row is one line naming "
              "the file and row, exit 2, nothing written. Each program the agent tried is a step with the "
              "test feedback it was shown; reflections are thoughts; the outcome is the row's recorded verdict.")


@import_.command(name="lats", epilog=EXAMPLE + "  evoagent import lats --bundled --store runs/code_logs.duckdb")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--store", "store_path", required=True, help="Store file (created if missing).")
@click.option("--bundled", is_flag=True, help="Also import the LATS MCTS and DFS runs shipped with evoagent.")
@one_line_errors
def import_lats(files: tuple[str, ...], store_path: str, bundled: bool) -> None:
    """Import LATS logs (HumanEval/MBPP JSON lines, optionally gzipped)."""
    _import_code("lats", files, store_path, bundled)


import_lats.help = (import_lats.help or "") + "\n\n" + _CODE_HELP


@import_.command(name="reflexion", epilog=EXAMPLE + "  evoagent import reflexion --bundled --store runs/code_logs.duckdb")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--store", "store_path", required=True, help="Store file (created if missing).")
@click.option("--bundled", is_flag=True, help="Also import the Reflexion and GPT-4 single-attempt runs shipped with evoagent.")
@one_line_errors
def import_reflexion(files: tuple[str, ...], store_path: str, bundled: bool) -> None:
    """Import Reflexion logs (HumanEval/MBPP JSON lines, optionally gzipped)."""
    _import_code("reflexion", files, store_path, bundled)


import_reflexion.help = (import_reflexion.help or "") + "\n\n" + _CODE_HELP
