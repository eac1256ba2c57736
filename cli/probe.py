"""``parkguard broker probe``: does the uplink broker answer? The watchdog timer's check.

Why a command of its own: a hung Mosquitto 2.0.11 (docs/fleet.md, failure model) is a
running process, so systemd's ``Restart=`` never fires; only asking it something shows the
hang. ``hardware/parkguard-uplink-watchdog@.service`` runs this every 30 s and restarts
``parkguard-uplink@<site>`` when it exits non-zero. Exit 0: a CONNACK of any kind came back
(``not authorised`` is the uplink broker's normal answer: nobody may log in there); exit 1
with ``error: <reason>`` (refused, no CONNACK in N s, ...) otherwise.
"""

from __future__ import annotations

import click

from broker.probe import ProbeFailed, probe


@click.command("probe")
@click.option("--port", required=True, type=click.IntRange(1, 65535),
              help="The uplink broker's listener (the inventory's fleet.uplink_port, 1885).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Where it listens (the uplink broker binds loopback only).")
@click.option("--timeout-s", default=5.0, show_default=True,
              type=click.FloatRange(0.1, 60.0),
              help="How long to wait, in all, for the CONNACK.")
def probe_command(port: int, host: str, timeout_s: float) -> None:
    """Exit 0 if the MQTT broker at HOST:PORT answers a CONNECT within the timeout."""
    try:
        answer = probe(host, port, timeout_s)
    except ProbeFailed as failed:
        raise click.ClickException(str(failed)) from None
    click.echo(f"{host}:{port} answered in {answer.elapsed_s * 1000:.0f} ms "
               f"(CONNACK: {answer.meaning})")
