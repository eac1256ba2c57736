"""Commands other packages plug into ``parkguard`` (entry point group ``parkguard.commands``).

The simulator registers ``demo`` and ``sim`` this way (``pyproject.toml``). The production
command imports no simulator module: a plugged-in command is loaded only when it is run or
its help is shown, so ``parkguard lane`` on a Pi never touches it, and an installation
without the simulator simply has no such command.

Commands that need an extra the lane does not install (``audit``, ``payments``, ``users``
need the gateway's sqlite-utils) are added by name with :meth:`PluggableGroup.add_lazy` and
imported only when run: a Pi installed with the ``lane`` extra alone
(hardware/lane-install.md) runs ``parkguard lane`` and ``parkguard read``, and names the
missing extra when asked for one of them (``make lane-arm64-check`` found it failing).
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import click

from cli.errors import OneStyleGroup

GROUP = "parkguard.commands"


def _plugged() -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=GROUP)}


def _not_installed(name: str, extra: str, error: ModuleNotFoundError) -> click.Command:
    """What a lazy command is where its extra is not installed: it says so when run."""

    def fail() -> None:
        raise click.ClickException(f"`{name}` needs the {extra} extra, not installed here: "
                                   f"pip install 'parkguard[{extra}]' ({error})")

    return click.Command(name, callback=fail, short_help=f"(needs the {extra} extra)",
                         context_settings={"ignore_unknown_options": True,
                                           "allow_extra_args": True})


class PluggableGroup(OneStyleGroup):
    """A click group that also lists, and loads on demand, the commands plugged into it and
    the ones added with :meth:`add_lazy`; errors said ``error: ...`` (cli/errors.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy: dict[str, tuple[str, str]] = {}

    def add_lazy(self, name: str, target: str, *, extra: str) -> None:
        """Command ``name`` is ``module:attribute`` ``target``, imported when run; ``extra``
        is the pyproject extra its imports come from."""
        self._lazy[name] = (target, extra)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy) | set(_plugged()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        if cmd_name in self._lazy:
            target, extra = self._lazy[cmd_name]
            module, _, attribute = target.partition(":")
            try:
                lazy = getattr(importlib.import_module(module), attribute)
            except ModuleNotFoundError as error:
                return _not_installed(cmd_name, extra, error)
            if not isinstance(lazy, click.Command):
                raise click.ClickException(f"{target} is not a click command")
            return lazy
        point = _plugged().get(cmd_name)
        if point is None:
            return None
        loaded = point.load()
        if not isinstance(loaded, click.Command):
            raise click.ClickException(f"{point.value} (plugged in as `{cmd_name}`) is not a "
                                       "click command")
        return loaded
