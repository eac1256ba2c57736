"""Errors the ``parkguard`` subcommands share, so their exit codes and their words mean the
same thing: one style, ``error: <what>`` on stderr in lower case (click's own
``Error:`` and Python's ``[Errno 2] ...`` never reach the person at the terminal)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from parkguard.errors import ParkGuardError

#: click 8.2+ raises this for a group run without a command (it shows the help).
_NO_ARGS_IS_HELP: type[click.UsageError] = getattr(
    click.exceptions, "NoArgsIsHelpError", type("_NeverRaised", (click.UsageError,), {}))


class UnreadableInputError(click.ClickException):
    """A file the command was given cannot be read (missing, not the right kind of file):
    a usage problem, exit 2, not a failed check or read (exit 1)."""

    exit_code = 2


def show_error(error: click.ClickException) -> None:
    """``error: message`` on stderr; a usage error keeps click's usage line and help hint
    above it (what ``ClickException.show`` prints, but for the word ``Error``)."""
    if isinstance(error, click.UsageError) and error.ctx is not None:
        ctx = error.ctx
        hint = ""
        help_option = ctx.command.get_help_option(ctx)
        if help_option is not None:
            hint = f"Try '{ctx.command_path} {max(help_option.opts, key=len)}' for help.\n"
        click.echo(f"{ctx.get_usage()}\n{hint}", err=True)
    click.echo(f"error: {_lower_first(error.format_message())}", err=True)


def exit_code_after_saying(error: BaseException) -> int | None:
    """Say ``error`` in the one style on stderr and return the exit code it means; None for
    an exception that is not a person's error (a bug: let its traceback through)."""
    if isinstance(error, click.exceptions.Exit):
        return error.exit_code
    if isinstance(error, _NO_ARGS_IS_HELP):  # a bare group: its help, no error line
        error.show()
        return error.exit_code
    if isinstance(error, click.ClickException):
        show_error(error)
        return error.exit_code
    if isinstance(error, click.Abort):
        click.echo("aborted", err=True)
        return 1
    if isinstance(error, ParkGuardError):
        click.echo(f"error: {error}", err=True)
        return 2
    if isinstance(error, OSError):  # a file a command opened: named, without "[Errno 2]"
        click.echo(f"error: {plain_os_error(error)}", err=True)
        return 2
    return None


class OneStyle(click.Command):
    """A command whose standalone ``main`` (the console script, and click's ``CliRunner``)
    says every error as ``error: ...`` instead of click's ``Error: ...``: click's own
    standalone handling is replaced by :func:`exit_code_after_saying`."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False,
                                **extra)
        try:
            # Without standalone mode click *returns* the code of ctx.exit(n)
            done = super().main(args, prog_name, complete_var, standalone_mode=False,
                                **extra)
        except (click.exceptions.Exit, click.ClickException, click.Abort, ParkGuardError,
                OSError) as error:
            code = exit_code_after_saying(error)
            sys.exit(1 if code is None else code)
        sys.exit(done if isinstance(done, int) else 0)


class OneStyleGroup(OneStyle, click.Group):
    """A group with :class:`OneStyle` errors; its subgroups are of its own class."""

    group_class = type


def _lower_first(message: str) -> str:
    """click's ``Invalid value ...`` as ``invalid value ...``; ``TLS ...`` stays."""
    if len(message) > 1 and message[0].isupper() and message[1].islower():
        return message[0].lower() + message[1:]
    return message


def plain_os_error(error: OSError, path: str | Path | None = None) -> str:
    """``FILE: no such file or directory``: the file and the reason, lower case, without
    the ``[Errno 2]`` and the quoted repetition of ``str(OSError)``."""
    reason = error.strerror or (os.strerror(error.errno) if error.errno else str(error))
    reason = _lower_first(reason)
    named = path if path is not None else error.filename
    return f"{os.fsdecode(named)}: {reason}" if named is not None else reason
