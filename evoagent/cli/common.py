"""What every ``evoagent`` command shares: one-line errors (exit 2), examples in help, the store-file check.

Only click and the standard library load here: ``evoagent --help`` imports this
module and the command modules, nothing else.
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from evoagent.cli.fast import error_line, not_a_store
from evoagent.errors import UserError

EXAMPLE = "\b\nExample:\n"


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A user mistake (``UserError``, an unwritable path) is one line on stderr and exit status 2."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (UserError, OSError) as exc:  # OSError: e.g. an --out path that cannot be written
            click.echo(error_line(exc), err=True)
            sys.exit(2)
    return wrapper


class _OneLineUsage(click.ClickException):
    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class OneLineGroup(click.Group):
    """Usage mistakes (a missing option, a path that is not there) are one line and exit 2 too,
    not click's usage block: every subcommand is parsed inside this group's calls."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        from evoagent.escaping import install

        install()  # everything printed from here on goes through the one escaping rule
        return super().main(*args, **kwargs)

    @staticmethod
    def _one_line(exc: click.UsageError) -> click.ClickException:
        where = exc.ctx.command_path if exc.ctx is not None else "evoagent"
        return _OneLineUsage(f"{' '.join(exc.format_message().split())} (see: {where} --help)")

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise self._one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise self._one_line(exc) from None


class LazyGroup(OneLineGroup):
    """A group whose subcommands are ``"module:attr"`` strings, imported when that command is
    asked for (its own run, its help, or the group's command list), never before."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            import importlib

            module, attr = self.lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)
