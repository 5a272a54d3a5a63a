"""``evoagent parts``: every part a campaign can name, by kind, with its keys and where it comes from."""
from __future__ import annotations

from typing import Any

import click

from evoagent.cli.common import EXAMPLE, one_line_errors


def _default(key: Any) -> str:
    from evoagent.campaign import REQUIRED

    return "(required)" if key.default is REQUIRED else repr(key.default)


def describe(kinds: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(lines to print, problems): each part's name, origin, doc and keys; a part that cannot load
    is listed with its one-line problem."""
    from evoagent import registry
    from evoagent.escaping import visible

    lines: list[str] = []
    problems: list[str] = []
    for kind in kinds:
        lines.append(f"{kind}:")
        for name in registry.names(kind):  # type: ignore[arg-type]
            origin = registry.origin(kind, name)  # type: ignore[arg-type]
            try:
                part = registry.get(kind, name)  # type: ignore[arg-type]
            except registry.PluginError as exc:
                problems.append(str(exc))
                lines.append(f"  {visible(name)}  [{visible(origin)}]  cannot be used: {visible(exc)}")
                continue
            extra = f"  plays: {', '.join(part.policies)}" if kind == "environment" else ""
            lines.append(f"  {visible(name)}  [{visible(origin)}]  {visible(part.doc)}{extra}")
            for path, key in sorted(registry.part_keys(part).items()):
                meaning = f"  {visible(key.meaning)}" if key.meaning else ""
                lines.append(f"      {visible(path)} = {visible(_default(key))}{meaning}")
    problems += [p for p in registry.problems() if p not in problems]
    return lines, problems


@click.command(epilog=EXAMPLE + "  evoagent parts\n  evoagent parts --kind environment --kind policy")
@click.option("--kind", "kinds", multiple=True,
              type=click.Choice(["environment", "policy", "operator", "strategy", "reward", "executor"]),
              help="Only these kinds (repeatable); all by default.")
@one_line_errors
def parts(kinds: tuple[str, ...]) -> None:
    """Every part a campaign can name (environments, policies, operators, strategies, reward models,
    executors): its keys with their defaults, and where it comes from (built-in or the installed
    package that declares it in the entry-point group evoagent.parts). A part that cannot be used
    is listed with the reason, and the command exits with status 2."""
    from evoagent import registry

    lines, problems = describe(kinds or registry.KINDS)
    click.echo("\n".join(lines))
    if problems:
        from evoagent.errors import UserError

        raise UserError("\nerror: ".join(dict.fromkeys(problems)))
