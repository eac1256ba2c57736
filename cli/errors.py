"""Errors the ``parkguard`` subcommands share, so their exit codes and their words mean the
same thing: one style, ``error: <what>`` on stderr in lower case (click's own
``Error:`` and Python's ``[Errno 2] ...`` never reach the person at the terminal)."""

from __future__ import annotations

import os
from pathlib import Path

import click


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
