"""Fleet fixtures: a 3-node NATS cluster from the project's template, a private PostgreSQL,
and sites as provisioned: the real, locked-down site Mosquitto (no bridge) and beside it the
site's uplink broker, bridged to the site broker on loopback and to the cluster through a
cuttable uplink relay.

Nothing here touches the machine's own NATS (4222) or PostgreSQL (5432): every port is free
and loopback, every store a temp directory (docs/fleet.md, "The test cluster").
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import nats
import psycopg
import pytest
from nats.aio.client import Client

from broker.provision.generate import ProvisionResult, provision_site
from broker.provision.inventory import FleetSpec
from broker.provision.pki import issue_server_cert, new_ca
from broker.runner import MosquittoBroker
from fleet.cluster import NatsCluster
from fleet.config import FleetConfig, NatsSettings, PostgresSettings
from fleet.natsconf import NatsUser
from fleet.postgres import PostgresServer
from fleet.schema import migrate
from fleet.stream import ensure_stream
from simulator.provisioned import simulated_inventory
from tests.fleet.uplink import Uplink

T = TypeVar("T")
NOW = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def run(coro: Awaitable[T]) -> T:
    async def wrapped() -> T:
        return await coro
    return asyncio.run(wrapped())


@dataclass(frozen=True)
class FleetPki:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def fleet_pki(tmp_path_factory: pytest.TempPathFactory) -> FleetPki:
    """The fleet's own CA and the MQTT listener's certificate (the sites verify it)."""
    folder = tmp_path_factory.mktemp("fleet-pki")
    ca = new_ca("fleet", now=NOW)
    server = issue_server_cert(ca, ("127.0.0.1", "localhost"), now=NOW)
    ca.write(key_path=folder / "ca.key", cert_path=folder / "ca.crt")
    server.write(key_path=folder / "server.key", cert_path=folder / "server.crt")
    return FleetPki(folder / "ca.crt", folder / "server.crt", folder / "server.key")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def fleet_dsn(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, migrated database of its own for this test."""
    name = f"fleet_{secrets.token_hex(4)}"
    admin = postgres.dsn.replace("dbname=fleet", "dbname=postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = postgres.dsn.replace("dbname=fleet", f"dbname={name}")
    migrate(dsn)
    yield dsn
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


class Fleet:
    """A cluster, its sites (each a provisioned site Mosquitto and its uplink broker, bridged
    through an uplink relay) and the settings a fleet service needs. Build with
    :meth:`add_site`, then :meth:`start`."""

    SERVICE_PASSWORD = secrets.token_urlsafe(16)
    ADMIN_PASSWORD = secrets.token_urlsafe(16)

    def __init__(self, workdir: Path, pki: FleetPki) -> None:
        self.workdir = workdir
        self.pki = pki
        self.cluster = NatsCluster(workdir / "nats", (), tls=(pki.cert, pki.key),
                                   debug=os.environ.get("PARKGUARD_NATS_DEBUG") == "1",
                                   repick_ports=True)
        self.sites: dict[str, ProvisionResult] = {}
        self.uplinks: dict[str, Uplink] = {}
        self.brokers: dict[str, MosquittoBroker] = {}
        """Each site's own broker: lanes, gateway, sensors."""
        self.uplink_brokers: dict[str, MosquittoBroker] = {}
        """Each site's uplink broker, which carries its bridge to the cluster."""

    def add_site(self, site: str, *, entry_lanes: tuple[str, ...] = ("in1",),
                 exit_lanes: tuple[str, ...] = ("out1",)) -> ProvisionResult:
        uplink = Uplink(self.cluster.mqtt_ports)
        inventory = simulated_inventory(site, entry_lanes=entry_lanes, exit_lanes=exit_lanes)
        inventory = inventory.model_copy(update={"fleet": FleetSpec(
            address="127.0.0.1", port=uplink.port, ca_file=self.pki.ca, kind="nats")})
        result = provision_site(inventory, self.workdir / f"site-{site}")
        assert result.uplink is not None
        # Reconnect within a second or two in tests (production: 5 s growing to 60 s), and
        # the site broker drops a silent uplink after 7.5 s (production: 45 s).
        files = result.uplink.with_fleet(restart_base_s=1, restart_cap_s=2)
        files = dataclasses.replace(files, conf=dataclasses.replace(files.conf,
                                                                    site_keepalive_s=5))
        result = dataclasses.replace(result, uplink=files)
        self.sites[site] = result
        self.uplinks[site] = uplink
        return result

    def users(self) -> list[NatsUser]:
        users = [NatsUser("fleet", self.SERVICE_PASSWORD, "service"),
                 NatsUser("admin", self.ADMIN_PASSWORD, "admin")]
        for site, result in self.sites.items():
            assert result.bridge is not None
            users.append(NatsUser(result.bridge.username, result.bridge.password, "bridge",
                                  site))
        return users

    def settings(self, **overrides: object) -> NatsSettings:
        values: dict[str, object] = {"servers": tuple(self.cluster.client_urls),
                                     "password": self.SERVICE_PASSWORD}
        values.update(overrides)
        return NatsSettings.model_validate(values)

    def config(self, dsn: str, **overrides: object) -> FleetConfig:
        return FleetConfig(nats=self.settings(**overrides),
                           postgres=PostgresSettings.model_validate({"dsn": dsn}))

    async def admin(self) -> Client:
        return await nats.connect(servers=self.cluster.client_urls, user="admin",
                                  password=self.ADMIN_PASSWORD, max_reconnect_attempts=-1,
                                  reconnect_time_wait=0.2)

    def start(self) -> Fleet:
        self.cluster.users = tuple(self.users())
        self.cluster.start()
        for uplink in self.uplinks.values():  # the cluster may have moved to new ports
            uplink.upstream_ports = self.cluster.mqtt_ports

        async def make_stream() -> None:
            nc = await self.admin()
            try:
                await ensure_stream(nc.jetstream(), self.settings())
            finally:
                await nc.close()

        run(make_stream())  # before any site bridges in: NATS drops what no stream captures
        # Every replica of the new streams and consumer current before a test's first fault:
        # NATS 2.9.10 left a replica of a consumer whose leader was SIGKILLed within a second
        # of its creation in an endless catch-up loop, and the restarted node never healthy.
        self.cluster.wait_healthy(range(self.cluster.size))
        for site, result in self.sites.items():
            self.brokers[site] = MosquittoBroker(self.workdir / f"mosquitto-{site}",
                                                 site=result).start()
            self.uplink_brokers[site] = self.uplink_broker(site).start()
        return self

    def uplink_broker(self, site: str) -> MosquittoBroker:
        """Site ``site``'s uplink broker (not started), on its workdir and data."""
        return MosquittoBroker(self.workdir / f"uplink-{site}", uplink_of=self.brokers[site])

    def stop(self) -> None:
        for broker in self.uplink_brokers.values():
            broker.stop()
        for broker in self.brokers.values():
            broker.stop()
        for uplink in self.uplinks.values():
            uplink.close()
        self.cluster.stop()

    def write_config(self, dsn: str, **overrides: object) -> Path:
        config = self.config(dsn, **overrides)
        path = self.workdir / "fleet.toml"
        servers = ", ".join(f'"{url}"' for url in config.nats.servers)
        path.write_text(
            f'[nats]\nservers = [{servers}]\nuser = "fleet"\n'
            f'password = "{self.SERVICE_PASSWORD}"\nbatch = {config.nats.batch}\n'
            f"ack_wait_s = {config.nats.ack_wait_s}\n"
            f'[postgres]\ndsn = "{dsn}"\nretry_s = 0.2\n', encoding="utf-8")
        path.chmod(0o600)
        return path


@pytest.fixture
def fleet(tmp_path: Path, fleet_pki: FleetPki) -> Iterator[Callable[..., Fleet]]:
    """``fleet("north", "south")``: a started fleet with those sites."""
    made: list[Fleet] = []

    def build(*sites: str) -> Fleet:
        built = Fleet(tmp_path, fleet_pki)
        for site in sites:
            built.add_site(site)
        made.append(built)
        return built.start()

    yield build
    for built in made:
        built.stop()


def start_service(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """``parkguard fleet run`` as its own process, so a test can SIGKILL it."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "parkguard"), "fleet", "run", "-c",
             str(config_path)],
            stdout=log, stderr=log, cwd=REPO, start_new_session=True)
