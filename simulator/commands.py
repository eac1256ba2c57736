"""The simulator's own ``parkguard`` commands, ``demo`` and ``sim``.

They are plugged into the ``parkguard`` command through the ``parkguard.commands`` entry
point group (``pyproject.toml``, :mod:`cli.plugins`), so the production command never
imports the simulator: only running ``parkguard demo`` or ``parkguard sim`` loads it.
"""

from __future__ import annotations

import os
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from cli.process import wait_for_signal


def _run_simulation(*, cars: int, seed: int, out: Path, day: date | None, plots: bool,
                    broker: str | None, site_dir: Path | None, site: str,
                    entry_lanes: int, exit_lanes: int, serve: bool = False,
                    reader: str = "ground_truth", not_served: str | None = None) -> None:
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
        elif not_served:
            console.print(not_served, soft_wrap=True)

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
        wait_for_signal()
    finally:
        web.stop()


NOT_SERVED = ("看板未启动 dashboard not served: standard input is not a terminal (or CI is "
              "set). Run `parkguard demo --serve` to serve the dashboard and pay page with "
              "its logins until Ctrl-C.")


def _interactive() -> bool:
    return sys.stdin.isatty() and not os.environ.get("CI")


@click.command()
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
    chosen = _interactive() if serve is None else serve
    _run_simulation(cars=cars, seed=seed, out=out, day=None, plots=plot, broker=None,
                    site_dir=None, site="demo", entry_lanes=2, exit_lanes=2,
                    serve=chosen, reader=reader,
                    not_served=None if chosen or serve is not None else NOT_SERVED)


@click.command()
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
    chosen = day.date() if isinstance(day, datetime) else None
    _run_simulation(cars=cars, seed=seed, out=out, day=chosen, plots=plot, broker=broker,
                    site_dir=site_dir, site=site, entry_lanes=entry_lanes, exit_lanes=exit_lanes,
                    reader=reader)
