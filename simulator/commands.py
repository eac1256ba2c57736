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
    """Keep the simulated site up and serve its dashboard and pay page until Ctrl-C, with
    cars still coming and going in real time (simulator/live.py)."""
    from gateway.web import WebServer
    from simulator.live import LiveTraffic
    from simulator.office import DEMO_USERS, add_demo_users

    password = add_demo_users(site)
    live = LiveTraffic(site).start()
    try:
        web = WebServer(site.gateway, "127.0.0.1", 8080).start()
    except OSError:  # 8080 taken: any free port
        web = WebServer(site.gateway, "127.0.0.1", 0).start()
    console.print(f"\n看板 dashboard:  {web.url}/", soft_wrap=True)
    console.print(f"缴费页 pay page: {web.url}/pay", soft_wrap=True)
    for name, role, _ in DEMO_USERS:
        console.print(f"  login {name:<11} ({role}), password {password}", soft_wrap=True)
    console.print(f"实时车流 live traffic: a car every {live.settings.every_s:.0f} s, "
                  f"{live.settings.fewest}-{live.settings.most} inside. Ctrl-C stops the demo.",
                  soft_wrap=True)
    try:
        wait_for_signal()
    finally:
        live.stop()
        web.stop()


NOT_SERVED = ("看板未启动 dashboard not served: standard input is not a terminal (or CI is "
              "set). Run `parkguard demo --serve` to serve the dashboard and pay page with "
              "its logins until Ctrl-C.")


def _interactive() -> bool:
    return sys.stdin.isatty() and not os.environ.get("CI")


@click.command()
@click.option("--cars", default=200, show_default=True,
              help="Cars that visit during the day (the scenario's hourly rates scaled).")
@click.option("--seed", default=7, show_default=True, help="Traffic seed (same seed, same day).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("var/demo"),
              show_default=True, help="Where the broker, database and plot go.")
@click.option("--plot/--no-plot", default=True, show_default=True, help="Write demo-day.png.")
@click.option("--serve/--no-serve", default=None,
              help="After the day, serve the dashboard until Ctrl-C [default: when run from a "
                   "terminal and not under CI]")
@click.option("--reader", type=click.Choice(["ground_truth", "tflite"]), default="tflite",
              show_default=True,
              help="tflite: each frame is rendered and read by the lane's TFLite reader "
                   "(misreads and fuzzy matching included); ground_truth: lanes are handed "
                   "the plate (quicker)")
def demo(cars: int, seed: int, out: Path, plot: bool, serve: bool | None, reader: str) -> None:
    """Run a small simulated site end to end: its own Mosquitto, the gateway, 2 entry and
    2 exit lanes on mock pins, and play the demo's day (docs/examples/scenarios/demo.toml):
    traffic with passes, merchant coupons and pay-page payments, a fire drill, a flood
    warning, help calls, patrol rounds and a gateway outage; print the summary and the
    invariants checked, then serve the dashboard with cars still coming and going."""
    chosen = _interactive() if serve is None else serve
    _play_demo(cars=cars, seed=seed, out=out, plots=plot, serve=chosen, reader=reader,
               not_served=None if chosen or serve is not None else NOT_SERVED)


def _play_demo(*, cars: int, seed: int, out: Path, plots: bool, serve: bool, reader: str,
               not_served: str | None) -> None:
    from rich.console import Console

    from simulator.demo import DemoResult, summary_table
    from simulator.demo_day import DemoDay, play_demo
    from simulator.scenario.run import ScenarioReport
    from simulator.site import SimulatedSite

    console = Console()
    options = DemoDay(workdir=out, cars=cars, seed=seed, plots=plots,
                      reader="tflite" if reader == "tflite" else "ground_truth")

    def ready(result: DemoResult, report: ScenarioReport, running: SimulatedSite) -> None:
        console.print(summary_table(result, cars_planned=report.cars_planned, report=report))
        if report.misread_refused:
            # A car whose exit read matched nobody inside is refused and, at a real site, let
            # out by the guard it calls with the help button.
            console.print(f"[yellow]{report.misread_refused} car(s) refused at the exit after "
                          "a misread that fuzzy matching could not place (a guard opens for "
                          "them on a help call)[/yellow]")
        if not report.passed:
            return  # said below, without serving a day that went wrong
        if serve:
            _serve_dashboard(running, console)
        elif not_served:
            console.print(not_served, soft_wrap=True)

    report = play_demo(options, console, on_ready=ready)
    if not report.passed:
        why = "; ".join(f"{c.name}: {c.detail}" for c in report.checks if not c.passed)
        raise click.ClickException(f"the simulated day did not balance: {why or report.stuck}")


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
@click.option("--scenario", "scenario_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Play this scenario file (docs/scenarios.md) instead of a "
                                 "plain day: traffic, drivers and faults, then the invariants.")
@click.option("--report", "report_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="With --scenario: also write the report here as JSON.")
@click.option("--recheck", "recheck_file",
              type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="Check the invariants again over the files a past scenario run left, "
                   "named in its JSON report; exit 1 if one fails.")
def sim(cars: int, seed: int, day: object, entry_lanes: int, exit_lanes: int,
        broker: str | None, site_dir: Path | None, site: str, out: Path, plot: bool,
        reader: str, scenario_file: Path | None, report_file: Path | None,
        recheck_file: Path | None) -> None:
    """Simulate a day at a site of your choosing, optionally against an existing broker;
    with --scenario, play a scenario file and exit non-zero if an invariant fails."""
    if recheck_file is not None:
        _recheck(recheck_file)
        return
    if scenario_file is not None:
        _run_scenario_file(scenario_file, out, report_file)
        return
    if report_file is not None:
        raise click.BadParameter("--report goes with --scenario", param_hint="--report")
    chosen = day.date() if isinstance(day, datetime) else None
    _run_simulation(cars=cars, seed=seed, out=out, day=chosen, plots=plot, broker=broker,
                    site_dir=site_dir, site=site, entry_lanes=entry_lanes, exit_lanes=exit_lanes,
                    reader=reader)


def _run_scenario_file(path: Path, out: Path, report_file: Path | None) -> None:
    """Play a scenario, print its invariants, write the JSON report; exit 1 if one failed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from parkguard.errors import ConfigError
    from simulator.scenario.model import load_scenario
    from simulator.scenario.run import day_line, report_table, run_scenario

    try:
        scenario = load_scenario(path)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    console = Console()
    with Progress(TextColumn(f"[bold]scenario {scenario.name}"), BarColumn(),
                  MofNCompleteColumn(), TextColumn("steps"), console=console,
                  transient=True) as progress:
        task = progress.add_task("steps", total=None)
        try:
            report = run_scenario(scenario, out, on_step=lambda done, total: progress.update(
                task, completed=done, total=total), partial_report=report_file,
                on_day=lambda partial: console.print(day_line(partial), soft_wrap=True))
        except ConfigError as error:
            raise click.ClickException(f"{path}: {error}") from None
    console.print(report_table(report))
    if report_file is not None:
        report_file.parent.mkdir(parents=True, exist_ok=True)
        report_file.write_text(report.to_json() + "\n", encoding="utf-8")
        console.print(f"report: {report_file}", soft_wrap=True)
    if not report.passed:
        raise click.exceptions.Exit(1)


def _recheck(report_file: Path) -> None:
    from rich.console import Console

    from simulator.scenario.run import recheck, report_table

    try:
        report = recheck(report_file)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise click.ClickException(f"{report_file}: not a scenario report "
                                   f"({type(error).__name__})") from None
    Console().print(report_table(report))
    if not report.passed:
        raise click.exceptions.Exit(1)
