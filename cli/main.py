"""The ``parkguard`` command: one entry point, a subcommand per component."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from parkguard import __version__
from parkguard.errors import ParkGuardError


def _wait_for_signal() -> None:
    """Block until Ctrl-C or SIGTERM (systemd's stop), then return so the caller tears down."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="parkguard")
@click.option("--log-level", default="WARNING", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="How much to log to stderr.")
def main(log_level: str) -> None:
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
      parkguard plate check TEXT  what a plate is (series, colour), or what is wrong
      parkguard tariff check F    validate a tariff file and run its golden vectors
      parkguard contract docs     regenerate docs/protocol.md from the code
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _run_simulation(*, cars: int, seed: int, out: Path, day: date | None, plots: bool,
                    broker: str | None, site_dir: Path | None, site: str,
                    entry_lanes: int, exit_lanes: int, serve: bool = False,
                    reader: str = "ground_truth") -> None:
    from rich.console import Console

    from simulator.demo import DemoOptions, DemoResult, run_demo, summary_table
    from simulator.site import SimulatedSite

    address = None
    if broker:
        host, _, port = broker.rpartition(":")
        if not host or not port.isdigit():
            raise click.BadParameter(f"{broker!r} is not HOST:PORT", param_hint="--broker")
        if site_dir is None:
            raise click.BadParameter("--broker needs --site-dir (the `broker init` output)",
                                     param_hint="--site-dir")
        address = (host, int(port))
    options = DemoOptions(
        workdir=out, cars=cars, seed=seed, day=day, plots=plots, broker=address,
        site_dir=site_dir, site=site, reader="tflite" if reader == "tflite" else "ground_truth",
        entry_lanes=tuple(f"in{i + 1}" for i in range(entry_lanes)),
        exit_lanes=tuple(f"out{i + 1}" for i in range(exit_lanes)),
    )
    console = Console()

    def ready(result: DemoResult, running: SimulatedSite) -> None:
        console.print(summary_table(result, cars_planned=cars))
        if serve:
            _serve_dashboard(running, console)

    result = run_demo(options, console, on_ready=ready)
    s = result.summary
    if reader == "tflite" and s.cars_in == cars and s.cars_out < cars and not s.dead_letters:
        # The real reader misreads now and then; a car whose exit read matched nobody inside
        # is refused and, at a real site, let out by the guard it calls with the help button.
        console.print(f"[yellow]{cars - s.cars_out} car(s) refused at the exit after a misread "
                      "that fuzzy matching could not place (a guard opens for them on a help "
                      "call)[/yellow]")
    elif s.cars_in != cars or s.cars_out != cars or s.dead_letters:
        raise click.ClickException(
            f"the simulated day did not balance: {s.cars_in} in, {s.cars_out} out of {cars} cars, "
            f"{s.dead_letters} dead letters"
        )


def _serve_dashboard(site: Any, console: Any) -> None:
    """Keep the simulated site up and serve its dashboard and pay page until Ctrl-C."""
    from gateway.web import WebServer
    from simulator.office import DEMO_USERS, add_demo_users

    password = add_demo_users(site)
    try:
        web = WebServer(site.gateway, "127.0.0.1", 8080).start()
    except OSError:  # 8080 taken: any free port
        web = WebServer(site.gateway, "127.0.0.1", 0).start()
    console.print(f"\n看板 dashboard:  {web.url}/", soft_wrap=True)
    console.print(f"缴费页 pay page: {web.url}/pay", soft_wrap=True)
    for name, role, _ in DEMO_USERS:
        console.print(f"  login {name:<11} ({role}), password {password}", soft_wrap=True)
    console.print("Ctrl-C stops the demo.")
    try:
        _wait_for_signal()
    finally:
        web.stop()


def _interactive() -> bool:
    return sys.stdin.isatty() and not os.environ.get("CI")


@main.command()
@click.option("--cars", default=300, show_default=True, help="Cars that visit during the day.")
@click.option("--seed", default=7, show_default=True, help="Traffic seed (same seed, same day).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("var/demo"),
              show_default=True, help="Where the broker, database and plot go.")
@click.option("--plot/--no-plot", default=True, show_default=True, help="Write demo-day.png.")
@click.option("--serve/--no-serve", default=None,
              help="After the day, serve the dashboard until Ctrl-C [default: when run from a "
                   "terminal and not under CI]")
@click.option("--reader", type=click.Choice(["ground_truth", "tflite"]), default="ground_truth",
              show_default=True,
              help="ground_truth: lanes are handed the plate; tflite: each frame is rendered and "
                   "read by the lane's TFLite reader (misreads and fuzzy matching included)")
def demo(cars: int, seed: int, out: Path, plot: bool, serve: bool | None, reader: str) -> None:
    """Run a small simulated site end to end: its own Mosquitto, the gateway, 2 entry and
    2 exit lanes on mock pins, a day of traffic in seconds with passes, merchant coupons
    and pay-page payments; print the summary, then serve the dashboard."""
    _run_simulation(cars=cars, seed=seed, out=out, day=None, plots=plot, broker=None,
                    site_dir=None, site="demo", entry_lanes=2, exit_lanes=2,
                    serve=_interactive() if serve is None else serve, reader=reader)


@main.command()
@click.option("--cars", default=300, show_default=True, help="Cars that visit during the day.")
@click.option("--seed", default=7, show_default=True, help="Traffic seed.")
@click.option("--day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Site-local date to simulate (default today).")
@click.option("--entry-lanes", default=2, show_default=True, type=click.IntRange(1, 16))
@click.option("--exit-lanes", default=2, show_default=True, type=click.IntRange(1, 16))
@click.option("--broker", default=None, metavar="HOST:PORT",
              help="Use this broker instead of starting a private one (needs --site-dir).")
@click.option("--site-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The `parkguard broker init --out` directory of that broker's site.")
@click.option("--site", default="demo", show_default=True, help="Site slug.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("var/sim"),
              show_default=True)
@click.option("--plot/--no-plot", default=True, show_default=True)
@click.option("--reader", type=click.Choice(["ground_truth", "tflite"]), default="ground_truth",
              show_default=True,
              help="ground_truth: lanes are handed the plate; tflite: each frame is rendered and "
                   "read by the lane's TFLite reader (misreads and fuzzy matching included)")
def sim(cars: int, seed: int, day: object, entry_lanes: int, exit_lanes: int,
        broker: str | None, site_dir: Path | None, site: str, out: Path, plot: bool,
        reader: str) -> None:
    """Simulate a day at a site of your choosing, optionally against an existing broker."""
    from datetime import datetime

    chosen = day.date() if isinstance(day, datetime) else None
    _run_simulation(cars=cars, seed=seed, out=out, day=chosen, plots=plot, broker=broker,
                    site_dir=site_dir, site=site, entry_lanes=entry_lanes, exit_lanes=exit_lanes,
                    reader=reader)


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
        from simulator.site import shared_scaled_clock

        origin = time_origin if time_origin.tzinfo else time_origin.replace(tzinfo=UTC)
        clock = shared_scaled_clock(origin, time_scale, anchor=time_anchor)
    with GatewayApp(config, clock=clock):
        click.echo(f"gateway for site {config.site} on {config.broker.host}:{config.broker.port}, "
                   f"database {config.database}; Ctrl-C to stop")
        _wait_for_signal()


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

    if config.camera.type in ("simulated", "tflite"):  # a bench lane: the simulator's camera
        _register_bench_cameras()
    camera, reader = cameras.camera_and_reader(config.camera, clock)
    with LaneNode(config, clock=clock, camera=camera, reader=reader, pin_factory=factory):
        click.echo(f"lane {config.lane} ({config.direction}) of site {config.site}; "
                   "Ctrl-C to stop")
        _wait_for_signal()


def _register_bench_cameras() -> None:
    """A bench lane's cameras come from the simulator (a real lane never imports it)."""
    from firmware.lane.config import CameraSettings
    from firmware.lane.devices import cameras
    from firmware.lane.devices.camera import Camera, PlateReader
    from parkguard.clock import Clock
    from simulator.camera import ReaderKind, camera_and_reader

    def bench(kind: ReaderKind) -> cameras.CameraMaker:
        def make(settings: CameraSettings, clock: Clock) -> tuple[Camera, PlateReader]:
            return camera_and_reader(kind, clock, region=settings.plate_region,
                                     models=settings.models, recogniser=settings.recogniser)
        return make

    cameras.register("simulated", bench("ground_truth"))
    cameras.register("tflite", bench("tflite"))


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
        _wait_for_signal()


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

    selftest.main(args=list(args), prog_name="parkguard lane selftest", standalone_mode=True)


def _register() -> None:
    from cli.audit import audit
    from cli.plate import plate
    from cli.provision import COMMANDS
    from cli.read import read
    from cli.tariff import tariff
    from cli.users import users

    main.add_command(audit)
    main.add_command(users)
    lane.add_command(_lane_selftest)
    main.add_command(plate)
    main.add_command(read)
    main.add_command(tariff)
    for command in COMMANDS:
        broker.add_command(command)


_register()


def run() -> None:
    """Console entry point: configuration and operational errors become a clear message and
    exit code 2, not a traceback."""
    try:
        # Without standalone mode click *returns* the code of ctx.exit(n) instead of exiting.
        code = main(standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except ParkGuardError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
