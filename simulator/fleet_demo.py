"""``parkguard fleet demo``: a three-site fleet on one machine (docs/fleet.md).

Everything is started here, on free loopback ports, never the machine's own 4222/1883/5432:
a 3-node NATS cluster from the project's template (JetStream, R3, TLS MQTT listeners), a
private PostgreSQL, and per site a provisioned, locked-down Mosquitto with, beside it, the
site's uplink broker bridged to it on loopback and to the cluster over TLS,
with the site's real gateway and lanes (:class:`simulator.site.SimulatedSite`) playing a short
day of cars. The fleet service reads the stream into PostgreSQL in a thread of its own; once
every site's lane events have landed the summary is printed and the fleet dashboard may be
served with two printed logins until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import click
import nats
import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from broker.provision.generate import ProvisionResult, provision_site
from broker.provision.inventory import FleetSpec
from broker.provision.pki import issue_server_cert, new_ca
from broker.runner import MosquittoBroker
from cli.native_log import runtime_info_dropped
from fleet.cluster import NatsCluster
from fleet.config import FleetConfig, NatsSettings, PostgresSettings
from fleet.natsconf import NatsUser
from fleet.postgres import PostgresServer
from fleet.schema import migrate
from fleet.service import FleetService
from fleet.stream import ensure_stream
from fleet.web.users import add_user
from parkguard.clock import ManualClock
from simulator.provisioned import simulated_inventory
from simulator.site import SimulatedSite, payment_mix
from simulator.traffic import day_of_visits

SITES = ("north", "south", "east")
ENTRY, EXIT = ("in1",), ("out1",)


@dataclass(frozen=True)
class FleetDemoOptions:
    workdir: Path
    sites: tuple[str, ...] = SITES
    cars: int = 12
    seed: int = 7
    day: date | None = None
    timezone: str = "Asia/Shanghai"
    wait_s: float = 60.0  # how long the fleet may take to catch up after the last car


@dataclass(frozen=True)
class SiteTally:
    site: str
    cars: int
    stored: int  # lane events in the site gateway's own database
    landed: int  # the same events in the fleet's PostgreSQL
    revenue_fen: int  # the fleet's payments for the site
    book_fen: int  # the site's own book: fees of its closed sessions


@dataclass
class FleetDemoResult:
    sites: list[SiteTally] = field(default_factory=list)
    dsn: str = ""
    logins: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (password, role)

    @property
    def complete(self) -> bool:
        return all(s.stored == s.landed and s.book_fen == s.revenue_fen for s in self.sites)


def _pki(folder: Path) -> tuple[Path, Path, Path]:
    """The fleet's CA and the NATS MQTT listener's certificate (the sites' bridges verify it)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca = new_ca("parkguard-fleet-demo", now=now)
    server = issue_server_cert(ca, ("127.0.0.1", "localhost"), now=now)
    ca.write(key_path=folder / "ca.key", cert_path=folder / "ca.crt")
    server.write(key_path=folder / "server.key", cert_path=folder / "server.crt")
    return folder / "ca.crt", folder / "server.crt", folder / "server.key"


def _provision(site: str, workdir: Path, ca: Path, ports: list[int]) -> ProvisionResult:
    inventory = simulated_inventory(site, entry_lanes=ENTRY, exit_lanes=EXIT)
    inventory = inventory.model_copy(update={"fleet": FleetSpec(
        address="127.0.0.1", port=ports[0], ca_file=ca, kind="nats",
        other_nodes=tuple(f"127.0.0.1:{p}" for p in ports[1:]))})
    result = provision_site(inventory, workdir / f"site-{site}")
    if result.uplink is None:  # pragma: no cover - a fleet inventory always has an uplink
        raise RuntimeError(f"site {site}: provisioned without an uplink broker")
    # Reconnect within seconds on one machine (production: 5 s growing to 60 s).
    uplink = result.uplink.with_fleet(restart_base_s=1, restart_cap_s=2)
    return dataclasses.replace(result, uplink=uplink)


@contextmanager
def _service_thread(config: FleetConfig) -> Iterator[FleetService]:
    """The fleet service on its own event loop in a thread; stopped on the way out."""
    service = FleetService(config)
    loop = asyncio.new_event_loop()
    failed: list[BaseException] = []

    def work() -> None:
        try:
            loop.run_until_complete(service.run())
        except BaseException as error:  # reported by the caller
            failed.append(error)

    thread = threading.Thread(target=work, name="fleet-service", daemon=True)
    thread.start()
    try:
        yield service
    finally:
        loop.call_soon_threadsafe(service.stop)
        thread.join(30)
        loop.close()
        if failed:
            raise RuntimeError(f"the fleet service stopped: {failed[0]}") from failed[0]


def _site_books(database: Path) -> tuple[set[str], int]:
    """The lane events (what lanes publish on lane/+/event) the site's gateway stored, and its
    own book (the fees of its closed sessions)."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        ids = {str(row[0]) for row in db.execute("SELECT event_id FROM events")}
        book = db.execute("SELECT coalesce(sum(fee_fen), 0) FROM sessions "
                          "WHERE state = 'closed'").fetchone()[0]
    finally:
        db.close()
    return ids, int(book)


def _landed(dsn: str) -> dict[str, set[str]]:
    with psycopg.connect(dsn) as conn:
        found: dict[str, set[str]] = {}
        for site, event_id in conn.execute(
                "SELECT site, event_id FROM events WHERE kind = 'lane_event'"):
            found.setdefault(str(site), set()).add(str(event_id))
        return found


def run_fleet_demo(options: FleetDemoOptions, console: Console | None = None,
                   on_ready: Callable[[FleetDemoResult, FleetConfig], None] | None = None,
                   ) -> FleetDemoResult:
    """Start the fleet and its sites, play a day at each, wait for the fleet to have it all.

    ``on_ready`` runs with everything still up (the CLI prints there and may serve the fleet
    dashboard until Ctrl-C)."""
    console = console or Console()
    workdir = options.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # Each demo is a fresh fleet (new passwords, a new stream).
    shutil.rmtree(workdir / "nats", ignore_errors=True)
    day = options.day or date.today()
    result = FleetDemoResult()
    with ExitStack() as stack:
        ca, cert, key = _pki(workdir / "pki")
        cluster = NatsCluster(workdir / "nats", (), tls=(cert, key))
        sites = {site: _provision(site, workdir, ca, cluster.mqtt_ports)
                 for site in options.sites}
        service_password, admin_password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        users = [NatsUser("fleet", service_password, "service"),
                 NatsUser("admin", admin_password, "admin")]
        for site, provisioned in sites.items():
            if provisioned.bridge is None:  # pragma: no cover - see _provision
                raise RuntimeError(f"site {site}: no bridge login")
            users.append(NatsUser(provisioned.bridge.username, provisioned.bridge.password,
                                  "bridge", site))
        cluster.users = tuple(users)
        console.print("fleet: starting 3 NATS nodes (JetStream, MQTT over TLS) …")
        stack.enter_context(cluster)
        # Its own temp directory: as root the cluster belongs to `postgres`, which may not
        # traverse the demo's directory (a pytest tmp_path is 0700).
        postgres = stack.enter_context(PostgresServer())
        migrate(postgres.dsn)
        result.dsn = postgres.dsn
        console.print(f"fleet: NATS {', '.join(cluster.client_urls)}; PostgreSQL on "
                      f"127.0.0.1:{postgres.port}")
        settings = NatsSettings.model_validate({"servers": tuple(cluster.client_urls),
                                                "password": service_password})
        config = FleetConfig(nats=settings,
                             postgres=PostgresSettings.model_validate({"dsn": postgres.dsn}))
        asyncio.run(_make_stream(cluster.client_urls, admin_password, settings))
        brokers = {site: stack.enter_context(MosquittoBroker(workdir / f"mosquitto-{site}",
                                                             site=provisioned))
                   for site, provisioned in sites.items()}
        for site, broker in brokers.items():  # each site's uplink carries its fleet bridge
            stack.enter_context(MosquittoBroker(workdir / f"uplink-{site}", uplink_of=broker))
        stack.enter_context(_service_thread(config))
        console.print("fleet: waiting for every site's bridge to connect …")
        _wait_bridges(postgres.dsn, set(options.sites), options.wait_s)
        stored: dict[str, set[str]] = {}
        books: dict[str, int] = {}
        cars: dict[str, int] = {}
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                      transient=True) as progress:
            for index, (site, provisioned) in enumerate(sites.items()):
                stored[site], books[site], cars[site] = _play_site(
                    site, provisioned, brokers[site], workdir / f"gateway-{site}", day,
                    options, options.seed + index, progress)
            task = progress.add_task("fleet: events landed in PostgreSQL",
                                     total=sum(len(ids) for ids in stored.values()))
            landed = _wait_landed(postgres.dsn, stored, options.wait_s,
                                  lambda done: progress.update(task, completed=done))
        with psycopg.connect(postgres.dsn) as conn:
            revenue = {str(site): int(str(fen)) for site, fen in conn.execute(
                "SELECT site, sum(fee_fen) FROM payments GROUP BY site").fetchall()}
        for site in options.sites:
            result.sites.append(SiteTally(site, cars[site], len(stored[site]),
                                          len(stored[site] & landed.get(site, set())),
                                          revenue.get(site, 0), books[site]))
        result.logins = _logins(postgres.dsn, options.sites[0])
        if on_ready is not None:
            on_ready(result, config)
    return result


async def _make_stream(urls: list[str], password: str, settings: NatsSettings) -> None:
    """Before any site bridges in: NATS drops at once what no stream captures."""
    nc = await nats.connect(servers=urls, user="admin", password=password)
    try:
        await ensure_stream(nc.jetstream(), settings)
    finally:
        await nc.close()


def _play_site(site: str, provisioned: ProvisionResult, broker: MosquittoBroker,
               workdir: Path, day: date, options: FleetDemoOptions, seed: int,
               progress: Progress) -> tuple[set[str], int, int]:
    """One site's gateway and lanes play a day of cars; returns the lane events it stored,
    its book and how many cars came."""
    for stale in [*workdir.glob("gateway.db*"), *workdir.glob("lane-*.db*")]:
        stale.unlink()  # each demo is a fresh day (spent command nonces would refuse it)
    visits = day_of_visits(day, cars=options.cars, timezone=options.timezone,
                           entry_lanes=ENTRY, exit_lanes=EXIT, seed=seed)
    clock = ManualClock(visits[0].arrive.astimezone(UTC))
    task = progress.add_task(f"{site}: cars in and out", total=2 * len(visits))
    with runtime_info_dropped():
        built = SimulatedSite(site=site, broker=broker.address, workdir=workdir, clock=clock,
                              entry_lanes=ENTRY, exit_lanes=EXIT, timezone=options.timezone,
                              lane_keys=provisioned.device("gateway").lane_keys)
    with built as simulated:
        simulated.payer.choose = payment_mix(seed)
        simulated.run_day(visits, on_step=lambda: progress.advance(task))
        database = simulated.gateway_config.database
    ids, book = _site_books(Path(database))
    return ids, book, len(visits)


def _wait_landed(dsn: str, stored: dict[str, set[str]], timeout: float,
                 on_progress: Callable[[int], None]) -> dict[str, set[str]]:
    """Poll the fleet database until every stored lane event is in it (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        landed = _landed(dsn)
        done = sum(len(ids & landed.get(site, set())) for site, ids in stored.items())
        on_progress(done)
        if done == sum(len(ids) for ids in stored.values()) or time.monotonic() > deadline:
            return landed
        time.sleep(0.25)


def _wait_bridges(dsn: str, sites: set[str], timeout: float) -> None:
    """Until each site's bridge has said it is connected (its retained ``bridge/state`` of
    ``1`` reached the fleet): a fresh cluster refuses MQTT connections for a few seconds while
    it elects its MQTT streams' leaders, and a site's traffic should not start before that."""
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(dsn) as conn:
            up = {str(row[0]) for row in conn.execute(
                "SELECT DISTINCT site FROM events WHERE kind = 'bridge_state' "
                "AND (payload->>'connected')::boolean")}
        if sites <= up:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"bridges not connected after {timeout:.0f} s: "
                               f"{', '.join(sorted(sites - up))}")
        time.sleep(0.25)


def _logins(dsn: str, operator_site: str) -> dict[str, tuple[str, str]]:
    logins = {"fleet-admin": (secrets.token_urlsafe(9), "fleet_admin"),
              f"operator-{operator_site}": (secrets.token_urlsafe(9), "operator")}
    with psycopg.connect(dsn) as conn:
        for name, (password, role) in logins.items():
            add_user(conn, name, password, "fleet_admin" if role == "fleet_admin" else "operator",
                     () if role == "fleet_admin" else (operator_site,))
    return logins


def summary_table(result: FleetDemoResult) -> Table:
    table = Table(title="Fleet demo: each site's lane events, at the site and in the fleet")
    for column in ("site", "cars", "stored at the site", "landed in PostgreSQL",
                   "site's book", "fleet revenue"):
        table.add_column(column, justify="right")
    for s in result.sites:
        mark = "" if s.stored == s.landed else " [red](missing)[/red]"
        differs = "" if s.revenue_fen == s.book_fen else " [red](differs)[/red]"
        table.add_row(s.site, str(s.cars), str(s.stored), f"{s.landed}{mark}",
                      _yuan(s.book_fen), f"{_yuan(s.revenue_fen)}{differs}")
    return table


def _yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


# The command: `parkguard fleet demo` (plugged into the fleet group, pyproject.toml)


@click.command(name="demo")
@click.option("--cars", default=12, show_default=True, help="Cars at each site in the day.")
@click.option("--seed", default=7, show_default=True, help="Traffic seed (same seed, same day).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("var/fleet-demo"),
              show_default=True, help="Where the NATS stores, PostgreSQL and sites go.")
@click.option("--port", default=8090, show_default=True, help="The fleet dashboard's port.")
@click.option("--serve/--no-serve", default=None,
              help="After the day, serve the fleet dashboard until Ctrl-C [default: when run "
              "from a terminal and CI is not set].")
def demo_command(cars: int, seed: int, out: Path, port: int, serve: bool | None) -> None:
    """Three sites and a fleet on this machine: NATS cluster, PostgreSQL, dashboard."""

    console = Console()
    if serve is None:
        serve = sys.stdin.isatty() and not os.environ.get("CI")

    def ready(result: FleetDemoResult, config: FleetConfig) -> None:
        console.print(summary_table(result))
        if not result.complete:
            console.print("[red]not every site event reached the fleet in time, or the money "
                          "differs[/red]")
        if not serve:
            console.print("fleet dashboard not served: standard input is not a terminal (or "
                          "CI is set); `parkguard fleet demo --serve` serves it until Ctrl-C.")
            return
        import uvicorn

        from fleet.web.app import create_fleet_app

        app = create_fleet_app(result.dsn, secret_key=secrets.token_urlsafe(48),
                               now=lambda: datetime.now(UTC))
        console.print(f"fleet dashboard 车队看板: http://127.0.0.1:{port}/  (Ctrl-C stops "
                      "the demo)")
        for name, (password, role) in result.logins.items():
            console.print(f"  login {name} / {password}  ({role})")
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")

    result = run_fleet_demo(FleetDemoOptions(workdir=out, cars=cars, seed=seed), console,
                            on_ready=ready)
    if not result.complete:
        sys.exit(1)
