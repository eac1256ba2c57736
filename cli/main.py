"""The ``parkguard`` command: one entry point, a subcommand per component.

Everything a site runs in production is here (gateway, lane, broker, audit, users, plates,
tariffs, the contract). The simulator is not imported by any of it: it plugs its own
commands (``demo``, ``sim``) and its bench cameras in through entry points
(:mod:`cli.plugins`), loaded only when one of them is asked for, so a Pi lane never loads it.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from cli.plugins import PluggableGroup
from cli.process import wait_for_signal
from parkguard import __version__


@click.group(cls=PluggableGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="parkguard")
@click.option("--log-level", default="WARNING", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="How much to log to stderr.")
@click.option("--log-format", default="text", show_default=True, envvar="PARKGUARD_LOG_FORMAT",
              type=click.Choice(["text", "json"], case_sensitive=False),
              help="text for a person; json: one object per line for journald/Loki "
              "(docs/integrations.md). Also $PARKGUARD_LOG_FORMAT.")
def main(log_level: str, log_format: str) -> None:
    """ParkGuard — underground car park lanes, sensors, gateway and simulator.

    \b
    Start here:
      parkguard demo              a simulated car park, end to end, with a summary
      parkguard gateway -c FILE   run the site gateway (billing, sessions, audit)
      parkguard lane -c FILE      run one lane node (camera, decision, barrier)
      parkguard sim               a simulated day with your own numbers
      parkguard broker init       provision a site: CA, TLS, users, ACLs, device bundles
      parkguard broker run        a local Mosquitto for development
      parkguard audit verify DB   check the hash-chained audit log
      parkguard payments reconcile   a provider's daily statement vs our books
      parkguard patrol report -c F   patrol rounds and compliance of a day
      parkguard plate check TEXT  what a plate is (series, colour), or what is wrong
      parkguard tariff check F    validate a tariff file and run its golden vectors
      parkguard contract docs     regenerate docs/protocol.md from the code
    """
    from parkguard.logformat import configure

    configure(log_level, "json" if log_format.lower() == "json" else "text")


@main.command()
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path), required=True,
              help="Gateway TOML file (see docs/configuration.md).")
@click.option("--time-origin", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
              default=None, hidden=True,
              help="Simulation only: run on a ScaledClock that reads this instant (UTC if no "
              "offset) at --time-anchor.")
@click.option("--time-scale", type=click.FloatRange(min=0, min_open=True), default=1.0,
              hidden=True, help="Simulation only: simulated seconds per real second.")
@click.option("--time-anchor", type=float, default=None, hidden=True,
              help="Simulation only: the Unix time at which the simulated clock read "
              "--time-origin (default: now). Processes given the same three values share "
              "one simulated time, restarts included.")
def gateway(config_path: Path, time_origin: datetime | None, time_scale: float,
            time_anchor: float | None) -> None:
    """Run the site gateway until Ctrl-C: sessions, fees and the audit trail."""
    from gateway.app import GatewayApp
    from gateway.config import GatewayConfig
    from parkguard.clock import Clock, SystemClock
    from parkguard.configfile import load_config

    config = load_config(GatewayConfig, config_path)
    clock: Clock = SystemClock()
    if time_origin is not None:
        from parkguard.clock import shared_scaled_clock

        origin = time_origin if time_origin.tzinfo else time_origin.replace(tzinfo=UTC)
        clock = shared_scaled_clock(origin, time_scale, anchor=time_anchor)
    with GatewayApp(config, clock=clock):
        click.echo(f"gateway for site {config.site} on {config.broker.host}:{config.broker.port}, "
                   f"database {config.database}; Ctrl-C to stop")
        wait_for_signal()


@main.group(invoke_without_command=True)
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Lane TOML file (see docs/configuration.md).")
@click.option("--mock-pins", is_flag=True,
              help="Use gpiozero's MockFactory instead of real GPIO (bench testing off a Pi).")
@click.pass_context
def lane(ctx: click.Context, config_path: Path | None, mock_pins: bool) -> None:
    """Run one lane node until Ctrl-C: loops, camera, decision, barrier
    (`parkguard lane selftest` walks an installer through the pins)."""
    if ctx.invoked_subcommand is not None:
        return
    if config_path is None:
        raise click.UsageError("Missing option '-c' / '--config'.")
    from firmware.lane.config import LaneConfig
    from firmware.lane.node import LaneNode
    from parkguard.clock import SystemClock
    from parkguard.configfile import load_config

    config = load_config(LaneConfig, config_path)
    clock = SystemClock()
    factory = None
    if mock_pins:
        from gpiozero.pins.mock import MockFactory

        factory = MockFactory()
    from firmware.lane.devices import cameras
    from firmware.lane.devices.hid_kiosk import kiosk_devices
    from firmware.lane.devices.led_display import lane_display

    camera, reader = cameras.camera_and_reader(config.camera, clock)
    keypad, scanner = kiosk_devices(config.kiosk)  # USB HID, [kiosk] keypad / scanner
    display = lane_display(config.display)  # RS-485 LED board, [display]
    try:
        with LaneNode(config, clock=clock, camera=camera, reader=reader, pin_factory=factory,
                      kiosk=keypad, scanner=scanner, display=display):
            click.echo(f"lane {config.lane} ({config.direction}) of site {config.site}; "
                       "Ctrl-C to stop")
            wait_for_signal()
    finally:
        for device in (camera, display):  # the RTSP decoder's and the display's threads
            close = getattr(device, "close", None)
            if close is not None:
                close()


@main.group()
def broker() -> None:
    """The site's MQTT broker."""


@broker.command("run")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port to listen on (default: a free one).")
@click.option("--dir", "workdir", type=click.Path(path_type=Path), default=Path("var/broker"),
              show_default=True, help="Config, persistence and log go here.")
def broker_run(port: int | None, workdir: Path) -> None:
    """Run a local loopback Mosquitto with the project's development config until Ctrl-C."""
    from broker.runner import MosquittoBroker

    with MosquittoBroker(workdir, port=port) as running:
        click.echo(f"mosquitto on {running.url}, log {running.log_path}; Ctrl-C to stop")
        wait_for_signal()


@main.group()
def contract() -> None:
    """The wire contract (topics and message schemas)."""


@contract.command("docs")
@click.option("--check", is_flag=True, help="Fail if docs/protocol.md is out of date.")
def contract_docs(check: bool) -> None:
    """Regenerate docs/protocol.md from wire/contract (or check it is current)."""
    from wire.contract.reference import DOC_PATH, render, write

    if check:
        current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
        if current != render():
            raise click.ClickException(f"{DOC_PATH} is out of date: run `parkguard contract docs`")
        click.echo(f"{DOC_PATH} is current")
        return
    click.echo(f"wrote {write()}")


@click.command("selftest", context_settings={"ignore_unknown_options": True},
               add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def _lane_selftest(args: tuple[str, ...]) -> None:
    """Walk an installer through each input and output on the lane's real pins."""
    from firmware.lane.selftest import selftest  # gpiozero only when asked for

    # not standalone: its usage errors reach run(), which says them as every command does
    done = selftest.main(args=list(args), prog_name="parkguard lane selftest",
                         standalone_mode=False)
    if isinstance(done, int) and done:
        sys.exit(done)


def _register() -> None:
    from cli.plate import plate
    from cli.probe import probe_command
    from cli.provision import COMMANDS
    from cli.read import read
    from cli.tariff import tariff

    # the gateway's sqlite-utils: imported when run, so a lane with the `lane` extra alone
    # starts (cli/plugins.py; found by `make lane-arm64-check`)
    main.add_lazy("audit", "cli.audit:audit", extra="gateway")
    main.add_lazy("fleet", "fleet.commands:fleet", extra="fleet")
    main.add_lazy("payments", "cli.payments:payments", extra="gateway")
    main.add_lazy("patrol", "cli.patrol:patrol", extra="gateway")
    main.add_lazy("users", "cli.users:users", extra="gateway")
    lane.add_command(_lane_selftest)
    main.add_command(plate)
    main.add_command(read)
    main.add_command(tariff)
    for command in COMMANDS:
        broker.add_command(command)
    broker.add_command(probe_command)


_register()


def run() -> None:
    """Console entry point: configuration and operational errors become a clear message and
    exit code 2, not a traceback."""
    # standalone: the group's own main says every error `error: ...` and exits with its code
    # (cli/errors.py OneStyle), the same whether run here or through click's CliRunner
    main()
