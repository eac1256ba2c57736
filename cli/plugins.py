"""Commands other packages plug into ``parkguard`` (entry point group ``parkguard.commands``).

The simulator registers ``demo`` and ``sim`` this way (``pyproject.toml``). The production
command imports no simulator module: a plugged-in command is loaded only when it is run or
its help is shown, so ``parkguard lane`` on a Pi never touches it, and an installation
without the simulator simply has no such command.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import click

GROUP = "parkguard.commands"


def _plugged() -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=GROUP)}


class PluggableGroup(click.Group):
    """A click group that also lists, and loads on demand, the commands plugged into it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_plugged()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        point = _plugged().get(cmd_name)
        if point is None:
            return None
        loaded = point.load()
        if not isinstance(loaded, click.Command):
            raise click.ClickException(f"{point.value} (plugged in as `{cmd_name}`) is not a "
                                       "click command")
        return loaded
