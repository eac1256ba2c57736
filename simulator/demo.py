"""``parkguard demo`` and ``parkguard sim``: a simulated day at a small site, with its summary.

The demo starts its own Mosquitto (never one that happens to be running), so
it works the same on a laptop, a Pi and CI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from time import monotonic, sleep
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from broker.provision.generate import load_site
from broker.runner import MosquittoBroker
from cli.native_log import runtime_info_dropped
from parkguard.clock import ManualClock
from parkguard.core.tariffs import format_yuan
from parkguard.errors import ConfigError
from simulator.camera import ReaderKind
from simulator.office import Office, open_the_office, pay_on_the_way_out
from simulator.plots import plot_day
from simulator.provisioned import provision_simulated_site
from simulator.site import SimulatedSite, SiteSummary, payment_mix
from simulator.traffic import Visit, day_of_visits
from wire.mqtt import BrokerAddress

if TYPE_CHECKING:
    from simulator.scenario.run import ScenarioReport

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class DemoOptions:
    workdir: Path
    cars: int = 300
    seed: int = 7
    day: date | None = None
    site: str = "demo"
    timezone: str = "Asia/Shanghai"
    entry_lanes: tuple[str, ...] = ("in1", "in2")
    exit_lanes: tuple[str, ...] = ("out1", "out2")
    # An existing broker and the `parkguard broker init` output it runs; None: start our own.
    broker: tuple[str, int] | None = None
    site_dir: Path | None = None
    plots: bool = True
    office: bool = True  # passes, a merchant's coupons and pay-page payments during the day
    free_open_hour: bool = True  # exit lanes held open 17:00-18:00: those exits go free
    reader: ReaderKind = "tflite"  # lanes read rendered frames; ground_truth: handed the plate


@dataclass(frozen=True)
class Money:
    """The day's takings by how they were paid, and what the office did."""

    by_method: dict[str, int]
    debts_fen: int
    passes: int
    coupons: int
    prepaid: int


@dataclass(frozen=True)
class DemoResult:
    summary: SiteSummary
    plot: Path | None
    money: Money | None = None


def run_demo(options: DemoOptions, console: Console | None = None,
             on_ready: Callable[[DemoResult, SimulatedSite], None] | None = None) -> DemoResult:
    """Start a broker (unless given one), the gateway and the lanes; play a day; summarise.

    ``on_ready`` runs with the site still up once the day is summarised (the CLI prints the
    summary there and may serve the dashboard until Ctrl-C)."""
    console = console or Console()
    options.workdir.mkdir(parents=True, exist_ok=True)
    # Each demo is a fresh day: the gateway's file, and the lanes' journals, whose spent
    # command nonces (kept until they expire, by the last day's clock) would refuse the new
    # day's signed orders as replays.
    for stale in [*options.workdir.glob("gateway.db*"), *options.workdir.glob("lane-*.db*")]:
        stale.unlink()
    day = options.day or date.today()
    visits = day_of_visits(
        day, cars=options.cars, timezone=options.timezone, entry_lanes=options.entry_lanes,
        exit_lanes=options.exit_lanes, seed=options.seed,
    )
    start = (visits[0].arrive if visits else day_start(day, options.timezone)).astimezone(UTC)
    clock = ManualClock(start)
    with ExitStack() as stack:
        provisioned = _own_broker(options, stack, console) if options.broker is None else (
            _existing_broker(options))
        with runtime_info_dropped():  # the TFLite runtime's start-up INFO line
            built = SimulatedSite(
                site=options.site, broker=provisioned.address_of, workdir=options.workdir,
                clock=clock, entry_lanes=options.entry_lanes, exit_lanes=options.exit_lanes,
                timezone=options.timezone, lane_keys=provisioned.lane_keys,
                reader=options.reader)
        site = stack.enter_context(built)
        office = open_the_office(site, visits, seed=options.seed) if options.office else None
        site.payer.choose = payment_mix(options.seed)
        peak = FreeOpenHour(site, day, options.timezone) if options.free_open_hour else None
        with Progress(
            TextColumn("[bold]simulating {task.fields[day]}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("passages"), TimeElapsedColumn(),
            console=console, transient=True,
        ) as progress:
            task = progress.add_task("day", total=2 * len(visits), day=day.isoformat())

            def before_exit(visit: Visit) -> None:
                if peak is not None:
                    peak.follow_the_clock()
                if office is not None:
                    pay_on_the_way_out(site, office, visit)

            wall = site.run_day(visits, on_step=lambda: progress.advance(task),
                                before_exit=before_exit)
            if peak is not None:
                peak.end()
        summary = site.summary(wall)
        plot = None
        if options.plots:
            plot = plot_day(summary.database, options.workdir / "demo-day.png",
                            timezone=options.timezone, waits_ms=list(summary.decide_waits_ms))
        result = DemoResult(summary, plot, money_of(site, office, start))
        if on_ready is not None:
            on_ready(result, site)
    return result


class FreeOpenHour:
    """The peak-hour rule of the source plan, played by the control room: from 17:00 to
    18:00 site time every exit lane is held open (``hold_open``) and cars leave free,
    booked free with that reason; then the lanes are closed again."""

    START, END = time(17, 0), time(18, 0)

    def __init__(self, site: SimulatedSite, day: date, timezone: str) -> None:
        zone = ZoneInfo(timezone)
        self._site = site
        self._window = (datetime.combine(day, self.START, tzinfo=zone),
                        datetime.combine(day, self.END, tzinfo=zone))
        self.held = False

    def follow_the_clock(self, now: datetime | None = None) -> None:
        """Hold the exits open or close them for the site's clock, or for ``now`` (a
        scenario's next step, before the clock is moved to it)."""
        now = now or self._site.clock.now()
        inside = self._window[0] <= now < self._window[1]
        if inside and not self.held:
            self._order("hold_open", "peak hour: barriers up, exits free (free-open rule)")
        elif not inside and self.held:
            self.end()

    def end(self) -> None:
        if self.held:
            self._order("close", "peak hour over: exits charge again")

    def _order(self, name: str, reason: str) -> None:
        gateway = self._site.gateway
        order: Callable[..., object] = getattr(gateway.commander, name)
        for lane in self._site.exit_lanes:
            gateway.service.call(partial(order, lane, actor="office:demo", reason=reason))
        self.held = name == "hold_open"
        for lane in self._site.exit_lanes:  # the lanes say so before the next car comes
            controller = self._site.lanes[lane].node.controller
            wanted = "free_open" if self.held else "normal"
            deadline = monotonic() + 10
            while controller.mode != wanted and monotonic() < deadline:
                sleep(0.001)


def money_of(site: SimulatedSite, office: Office | None, start: datetime) -> Money:
    """The takings by method and the debts booked around ``start``, and the office's work."""
    payments = site.gateway.billing.payments
    report = site.gateway.service.call(
        lambda: payments.revenue_report(start - timedelta(days=1), start + timedelta(days=3)))
    return Money(dict(report.fees_by_method), report.debts_recorded_fen,
                 office.passes if office else 0, office.coupons if office else 0,
                 office.prepaid if office else 0)


@dataclass(frozen=True)
class _Provisioned:
    """How each simulated device logs in, and the lanes' command keys."""

    address_of: Callable[[str], BrokerAddress]
    lane_keys: Mapping[str, bytes]


def _own_broker(options: DemoOptions, stack: ExitStack, console: Console) -> _Provisioned:
    """Provision the simulated site (CA, TLS, users, ACLs) and start Mosquitto locked down."""
    provisioned = provision_simulated_site(
        options.workdir / "site", options.site, entry_lanes=options.entry_lanes,
        exit_lanes=options.exit_lanes,
    )
    broker = stack.enter_context(MosquittoBroker(options.workdir / "broker", site=provisioned))
    console.print(f"broker: mosquitto with TLS, per-device users and ACLs on "
                  f"{broker.host}:{broker.port} (log {broker.log_path})")
    return _Provisioned(broker.address, provisioned.device("gateway").lane_keys)


def _existing_broker(options: DemoOptions) -> _Provisioned:
    """Devices' logins from a `parkguard broker init` directory, aimed at a running broker."""
    if options.broker is None or options.site_dir is None:
        raise ConfigError("an existing broker needs the site directory made by `broker init`")
    provisioned = load_site(options.site_dir)
    if provisioned.site != options.site:
        raise ConfigError(f"{options.site_dir} provisions site {provisioned.site!r}, "
                          f"not {options.site!r}")
    host, port = options.broker

    def address_of(device: str) -> BrokerAddress:
        login = provisioned.device(device)
        return BrokerAddress(host, port, login.ca_path, login.username, login.password)

    return _Provisioned(address_of, provisioned.device("gateway").lane_keys)


def day_start(day: date, timezone: str) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=ZoneInfo(timezone))


def summary_table(result: DemoResult, *, cars_planned: int,
                  report: ScenarioReport | None = None) -> Table:
    """The day on one screen, in Chinese with English beside; with a scenario's ``report``,
    what it played (turned away, help calls, faults, alarms) and each invariant checked."""
    s = result.summary
    table = Table(title="ParkGuard demo — 停车场模拟日报", show_header=False, min_width=60)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    if report is None:
        table.add_row("车辆入场 cars in", f"{s.cars_in} of {cars_planned}")
    else:
        table.add_row("车辆入场 cars in", f"{report.cars_in} of {cars_planned} planned, "
                      f"{report.turned_away} turned away (fire, flood)")
    table.add_row("车辆出场 cars out", str(s.cars_out))
    table.add_row("场内剩余 still inside", str(s.still_inside))
    table.add_row("拒绝放行 refused", str(s.refused))
    table.add_row("应收 fees billed", f"{format_yuan(s.revenue_fen)}  ({s.revenue_fen} fen)")
    if result.money is not None:
        m = result.money
        paid = ", ".join(f"{method} {format_yuan(fen)}" for method, fen in m.by_method.items()
                         if fen)
        taken = sum(m.by_method.values())
        table.add_row("实收 money taken", format_yuan(taken))
        table.add_row("收款方式 paid by", paid or "—")
        table.add_row("欠费 unpaid (debts)", format_yuan(m.debts_fen))
        table.add_row("月卡 / 商户券 / 预付", f"{m.passes} passes, {m.coupons} merchant coupons, "
                      f"{m.prepaid} paid on the pay page")
    if s.exits_by_settlement:
        table.add_row("出场方式 exits by", exits_line(s.exits_by_settlement))
    table.add_row("决策 gate decisions", f"{s.decisions} ({s.decided_by_lane} by lane alone)")
    table.add_row("决策耗时 decide p50 / p99",
                  f"{s.decide_p50_ms:.1f} ms / {s.decide_p99_ms:.1f} ms")
    table.add_row("死信 dead letters", str(s.dead_letters))
    table.add_row("用时 wall time", f"{s.wall_seconds:.1f} s for one simulated day")
    table.add_row("数据库 database", str(s.database))
    if result.plot is not None:
        table.add_row("图表 plot", str(result.plot))
    if report is not None:
        _scenario_rows(table, report)
    return table


def _scenario_rows(table: Table, report: ScenarioReport) -> None:
    """What the scenario played, then its invariants (``simulator/scenario/invariants.py``)."""
    table.add_section()
    played = ", ".join(f"{f['kind']}{'@' + str(f['lane']) if f['lane'] else ''} "
                       f"{float(str(f['minutes'])):g} min" for f in report.faults) or "—"
    table.add_row("故障 faults", f"{played}; {report.cars_during_faults} passages meanwhile")
    drivers = report.behaviours
    table.add_row("司机 drivers (planned)", f"{drivers.get('prepay', 0)} to prepay, "
                  f"{drivers.get('press_help', 0)} to press help, "
                  f"{drivers.get('no_plate', 0)} without a plate (phone at the kiosk)")
    if report.misread_refused:
        table.add_row("误读拒出 refused after a misread",
                      f"{report.misread_refused} (inside: a guard opens on a help call)")
    verdict = "[green]通过 PASSED[/green]" if report.passed else "[red]失败 FAILED[/red]"
    table.add_row(f"场景 scenario {report.name}", verdict)
    for item in report.checks:
        mark = "[green]✓[/green]" if item.passed else "[red]✗[/red]"
        table.add_row(f"  {mark} {item.name}", item.detail)


#: How the summary names each way out (``Passed.settled``, or the decision's reason).
EXIT_WORDS = {
    "paid_online": "扫码 QR", "payment_code": "付款码 pay code",
    "payment_code_offline": "付款码(离线) pay code offline", "prepaid": "预付 prepaid",
    "cash": "现金 cash", "guard_open": "拒付→欠费 declined → debt", "waived": "免收 waived",
    "free_open": "高峰免费 free-open", "fire": "火警 fire",
}


def exits_line(counts: Mapping[str, int]) -> str:
    """``扫码 QR 120, 付款码 pay code 80, ...``; passes and free stays as "nothing due"."""
    shown = [(EXIT_WORDS[key], counts[key]) for key in EXIT_WORDS if counts.get(key)]
    rest = sum(n for key, n in counts.items() if key not in EXIT_WORDS)
    if rest:
        shown.append(("无需缴费 nothing due", rest))
    return ", ".join(f"{words} {n}" for words, n in shown)
