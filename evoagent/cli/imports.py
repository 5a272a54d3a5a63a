"""``evoagent import``: recorded agent runs into a store.

Its subcommands are the environments' importers (``Environment.importers``): each
environment part declares how to read and write its own recorded runs, and this
module only turns each into a command (FILES, ``--store``, ``--bundled``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

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


def env_commands(attr: str) -> dict[str, Any]:
    """Every environment's declared importers (``attr = "importers"``) or replayers, by name."""
    from evoagent import registry

    found: dict[str, Any] = {}
    for name in registry.names("environment"):
        try:
            env = registry.get("environment", name)
        except registry.PluginError:  # listed by `evoagent parts`; the other commands keep working
            continue
        for one in getattr(env, attr, ()):
            found.setdefault(one.name, one)
    return found


def _epilog(examples: tuple[str, ...]) -> str | None:
    return EXAMPLE + "\n".join(f"  {e}" for e in examples) if examples else None


def _import_command(imp: Any) -> click.Command:
    @one_line_errors
    def run(files: tuple[str, ...], store_path: str, bundled: bool) -> None:
        paths = [Path(f) for f in files] + (list(imp.bundled()) if bundled else [])
        if not paths:
            raise UserError("give one or more FILES, or --bundled")
        import_target(store_path)
        for line in imp.run(paths, store_path):
            click.echo(line)

    return click.Command(imp.name, callback=run, help=imp.help, epilog=_epilog(imp.examples), params=[
        click.Argument(["files"], nargs=-1, type=click.Path(dir_okay=False)),
        click.Option(["--store", "store_path"], required=True, help="Store file (created if missing)."),
        click.Option(["--bundled"], is_flag=True, help=imp.bundled_help)])


class EnvCommands(OneLineGroup):
    """A group whose subcommands the environment parts declare (listed when asked, not at import)."""

    attr = "importers"
    make = staticmethod(_import_command)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(env_commands(self.attr))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        found = env_commands(self.attr).get(name)
        return None if found is None else self.make(found)


@click.group(name="import", cls=EnvCommands,
             epilog=EXAMPLE + "  evoagent import intercode --bundled --store runs/recorded.duckdb")
def import_() -> None:
    """Import recorded agent runs into a store."""
