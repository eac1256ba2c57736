"""Errors the ``parkguard`` subcommands share, so their exit codes mean the same thing."""

from __future__ import annotations

import click


class UnreadableInputError(click.ClickException):
    """A file the command was given cannot be read (missing, not the right kind of file):
    a usage problem, exit 2, not a failed check or read (exit 1)."""

    exit_code = 2
