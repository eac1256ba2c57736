"""The ``parkguard`` command: one entry point, a subcommand per component."""

from __future__ import annotations

import click

from parkguard import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="parkguard")
def main() -> None:
    """ParkGuard — underground car park lanes, sensors, gateway and simulator.

    \b
    Start here:
      parkguard demo            run a simulated car park end to end and print a summary
      parkguard gateway -c F    run the site gateway (billing, sessions, audit)
      parkguard lane -c F       run one lane node (camera, decision, barrier)
      parkguard sim             run a simulated site against a broker of your choice
      parkguard audit verify DB check the hash-chained audit log
    """


def _register() -> None:
    from gateway.audit_cli import audit

    main.add_command(audit)


_register()
