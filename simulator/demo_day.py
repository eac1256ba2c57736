"""``parkguard demo``'s day as a scenario (``docs/examples/scenarios/demo.toml``).

The day is played by the scenario engine (:func:`~simulator.scenario.run.run_scenario`):
drivers, a fire-panel drill, a flood warning, help calls, patrol rounds and a gateway
outage, its invariants checked. Around it the demo keeps its office (passes, a merchant's
coupons; the scenario's ``prepay`` drivers pay on the pay page), the payment mix, the
17:00-18:00 free-open hour, the summary and the plot; then, with the site still up, the
caller may serve the dashboard (``on_ready``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from simulator.camera import ReaderKind
from simulator.demo import DemoResult, FreeOpenHour, money_of
from simulator.office import Office, open_the_office
from simulator.plots import plot_day
from simulator.scenario.model import Scenario, load_scenario
from simulator.scenario.plan import Step, plan
from simulator.scenario.run import ScenarioReport, run_scenario
from simulator.site import SimulatedSite

DEMO_SCENARIO = (Path(__file__).resolve().parents[1] / "docs" / "examples" / "scenarios"
                 / "demo.toml")


@dataclass(frozen=True)
class DemoDay:
    workdir: Path
    cars: int | None = None
    """About this many cars (the file's hourly rates scaled); None: the file's own."""
    seed: int | None = None
    day: date | None = None
    """The site-local date played; None: today (so the served site carries on from it)."""
    reader: ReaderKind | None = None
    """None: the file's (``tflite``)."""
    plots: bool = True
    office: bool = True
    free_open_hour: bool = True
    scenario_file: Path = DEMO_SCENARIO


def demo_scenario(options: DemoDay) -> Scenario:
    """The demo's scenario with the command's choices: date, seed, reader, number of cars."""
    scenario = load_scenario(options.scenario_file)
    site = scenario.site if options.reader is None else scenario.site.model_copy(
        update={"reader": options.reader})
    scenario = scenario.model_copy(update={
        "start": options.day or date.today(), "site": site,
        "seed": scenario.seed if options.seed is None else options.seed})
    if options.cars is None:
        return scenario
    return _scaled(scenario, options.cars)


def _scaled(scenario: Scenario, cars: int) -> Scenario:
    """The hourly rates scaled until the plan has exactly ``cars`` cars (arrivals are
    Poisson: a few tries with the rates nudged); failing that, scaled a little above and
    capped at ``cars`` (the last hour's arrivals then fall short)."""
    rates = scenario.traffic.workday
    factor = cars / max(sum(rates), 1e-9)

    def scaled(by: float) -> tuple[Scenario, int]:
        traffic = scenario.traffic.model_copy(update={
            "workday": [min(rate * by, 2000.0) for rate in rates], "weekend": None,
            "holiday": None, "max_cars": cars})
        trial = scenario.model_copy(update={"traffic": traffic})
        return trial, len(plan(trial).visits)

    for attempt in range(40):
        trial, planned = scaled(factor)
        if planned == cars:
            return trial
        factor *= (1.0 + 0.5 / (attempt + 2)) if planned < cars else (1.0 - 0.3 / (attempt + 2))
    while planned < cars and factor < 1e6:  # the cap takes it from here
        factor *= 1.1
        trial, planned = scaled(factor)
    return trial


def play_demo(options: DemoDay, console: Console | None = None,
              on_ready: Callable[[DemoResult, ScenarioReport, SimulatedSite], None] | None = None,
              ) -> ScenarioReport:
    """Play the demo's day; ``on_ready(result, report, site)`` runs with the day checked
    and the site still up (the CLI prints the summary there and may serve the dashboard)."""
    console = console or Console()
    scenario = demo_scenario(options)
    visits = plan(scenario).visits
    started = time.monotonic()
    office: list[Office] = []
    peak: list[FreeOpenHour] = []

    def on_start(site: SimulatedSite) -> None:
        if options.office:
            office.append(open_the_office(site, visits, seed=scenario.seed))
        if options.free_open_hour:
            peak.append(FreeOpenHour(site, scenario.start, scenario.site.timezone))

    def before_step(_site: SimulatedSite, step: Step) -> None:
        if peak and step.what in ("enter", "leave"):  # the control room, between cars
            peak[0].follow_the_clock(step.at)

    def checked(site: SimulatedSite, report: ScenarioReport) -> None:
        progress.stop()  # the day is over: the summary (and the served site) take the screen
        if peak:
            peak[0].end()
        summary = site.summary(time.monotonic() - started)
        figure = None
        if options.plots:
            figure = plot_day(summary.database, options.workdir / "demo-day.png",
                              timezone=scenario.site.timezone,
                              waits_ms=list(summary.decide_waits_ms))
        start = datetime.combine(scenario.start, datetime.min.time(),
                                 tzinfo=ZoneInfo(scenario.site.timezone))
        money = money_of(site, office[0] if office else None, start)
        money = replace(money, prepaid=summary.exits_by_settlement.get("prepaid", 0))
        site.recount()  # the live traffic served next settles on the restarted gateway
        if on_ready is not None:
            on_ready(DemoResult(summary, figure, money), report, site)

    log_file = options.workdir / "demo.log"
    console.print(f"log: {log_file} (the fire drill, the flood, the outage ... as the site "
                  "logged them)", soft_wrap=True)
    with _logs_to(log_file), Progress(
        TextColumn(f"[bold]simulating {scenario.start.isoformat()}"), BarColumn(),
        MofNCompleteColumn(), TextColumn("steps"), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:
        task = progress.add_task("day", total=None)
        return run_scenario(
            scenario, options.workdir, site="demo", on_start=on_start, before_step=before_step,
            on_checked=checked,
            on_step=lambda done, total: progress.update(task, completed=done, total=total))


@contextmanager
def _logs_to(path: Path) -> Iterator[None]:
    """The site's log lines (a fire, a flood, lanes deciding alone: all meant) go to a file
    while the demo runs, so the screen keeps the summary and the logins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    before = root.handlers[:]
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(before[0].formatter if before and before[0].formatter else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = before
        handler.close()
