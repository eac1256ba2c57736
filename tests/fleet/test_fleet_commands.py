"""Signed fleet commands: from the fleet through the 3-node NATS cluster and each site's real
Mosquitto bridge to the site's real gateway, applied through its desks, audited, acknowledged
back into PostgreSQL; forged, replayed and expired commands refused and acked as refused."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from pydantic import SecretStr

from fleet.commands import fleet as fleet_group
from fleet.natsconf import topic_to_subject
from fleet.orders import build, public_hex, publish, record, tariff_versions
from gateway.app import GatewayApp
from gateway.config import GatewayConfig, PaymentSettings
from gateway.fleet_orders import FleetLinkSettings
from gateway.money.pricing import EXAMPLE_TARIFF
from parkguard.clock import ManualClock
from simulator.site import settings_of
from tests.fleet.conftest import NOW, Fleet, run, start_service
from wire.fleet_command import CommandKind, FleetCommand, command_topic

pytestmark = pytest.mark.integration
TTL = timedelta(minutes=15)


def new_tariff(tmp_path: Path) -> tuple[str, str]:
    """The example tariff with one more version, effective after NOW: (text, version)."""
    text = EXAMPLE_TARIFF.read_text(encoding="utf-8")
    first = text.index("[[tariffs]]")
    block = text[first:text.index("[calendar]")]
    lines = []
    for line in block.splitlines():
        if line.startswith("version"):
            line = 'version = "fleet-2026-06"'
        elif line.startswith("effective_from"):
            line = "effective_from = 2030-01-01"
        lines.append(line)
    return text + "\n" + "\n".join(lines) + "\n", "fleet-2026-06"


def site_gateway(running: Fleet, site: str, tmp_path: Path, clock: ManualClock,
                 public_key: str) -> GatewayApp:
    folder = tmp_path / f"gw-{site}"
    folder.mkdir()
    tariff = folder / "tariff.toml"
    shutil.copy(EXAMPLE_TARIFF, tariff)
    keys = running.sites[site].device("gateway").lane_keys
    config = GatewayConfig(
        site=site, database=folder / "gateway.db",
        broker=settings_of(running.brokers[site].address("gateway")), tariff_file=tariff,
        lane_keys={lane: SecretStr(key.hex()) for lane, key in keys.items()},
        payments=PaymentSettings(provider="none"),
        fleet=FleetLinkSettings(public_key=public_key))
    return GatewayApp(config, clock=clock).start()


def wait_for(dsn: str, query: str, expected: object, *params: object,
             timeout: float = 60.0) -> None:
    """Until ``query`` (with ``params``) gives ``expected``: returns as soon as it does."""
    deadline = time.monotonic() + timeout
    got: object = None
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(query, params).fetchone()
            got = None if row is None else row[0]
        if got == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"{query} {params}: {got!r}, wanted {expected!r}")


class Sender:
    """The fleet side of a test: signs, records and publishes as ``parkguard fleet command``."""

    def __init__(self, running: Fleet, dsn: str, key: Ed25519PrivateKey) -> None:
        self.running, self.dsn, self.key = running, dsn, key

    def send(self, *commands: FleetCommand, record_them: bool = True) -> None:
        if record_them:
            with psycopg.connect(self.dsn) as conn:
                record(conn, commands)

        async def main() -> None:
            nc = await self.running.admin()
            try:
                for command in commands:
                    await publish(nc.jetstream(), command)
            finally:
                await nc.close()

        run(main())

    def raw(self, site: str, payload: bytes, kind: CommandKind = "tariff") -> None:
        """What an attacker on the fleet side could do: any bytes on the command subject."""
        async def main() -> None:
            nc = await self.running.admin()
            try:
                await nc.publish(topic_to_subject(command_topic(site, kind)), payload)
                await nc.flush()
            finally:
                await nc.close()

        run(main())


def wait_bridged_both_ways(sender: Sender, dsn: str, site: str) -> None:
    """Probe with garbage until the site's gateway acks it refused: the command subscription
    of the bridge and the ack's way back are both up (NATS keeps no command for a bridge that
    has not subscribed yet)."""
    deadline = time.monotonic() + 60
    query = ("SELECT count(*) > 0 FROM events WHERE site = %s AND kind = 'fleet_ack' "
             "AND type = 'refused'")
    while time.monotonic() < deadline:
        sender.raw(site, b"probe")
        try:
            wait_for(dsn, query, True, site, timeout=1.0)
            return
        except AssertionError:
            continue
    raise AssertionError(f"{site}: no ack ever came back")


@pytest.fixture
def setup(fleet: Callable[..., Fleet], fleet_dsn: str, tmp_path: Path
          ) -> Iterator[tuple[Fleet, Sender, dict[str, GatewayApp], ManualClock]]:
    running = fleet("north", "south")
    key = Ed25519PrivateKey.generate()
    clock = ManualClock(NOW)
    gateways = {site: site_gateway(running, site, tmp_path, clock, public_hex(key))
                for site in ("north", "south")}
    service = start_service(running.write_config(fleet_dsn), tmp_path / "service.log")
    sender = Sender(running, fleet_dsn, key)
    try:
        for site in gateways:
            wait_bridged_both_ways(sender, fleet_dsn, site)
        yield running, sender, gateways, clock
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=60)
        for gateway in gateways.values():
            gateway.stop()


def test_a_signed_tariff_reaches_two_sites_both_apply_it_and_the_fleet_shows_the_version(
        setup: tuple[Fleet, Sender, dict[str, GatewayApp], ManualClock], fleet_dsn: str,
        tmp_path: Path) -> None:
    _running, sender, gateways, _clock = setup
    text, version = new_tariff(tmp_path)
    commands = [build(sender.key, site=site, kind="tariff",
                      body={"tariff_toml": text, "version": version}, issuer="ops:wang",
                      reason="June prices", now=NOW, ttl=TTL) for site in gateways]
    sender.send(*commands)
    wait_for(fleet_dsn, "SELECT count(*) FROM fleet_acks WHERE kind = 'tariff' "
                        "AND status = 'applied'", 2)
    with psycopg.connect(fleet_dsn) as conn:
        shown = {site: found for site, found, _ts in tariff_versions(conn)}
    assert shown == {"north": version, "south": version}
    for site, gateway in gateways.items():
        assert version in {t.version for t in gateway.pricing.document.tariffs}
        assert version in gateway.config.tariff_file.read_text(encoding="utf-8")
        actions = [(e.action, e.actor) for e in gateway.audit.entries()]
        assert ("tariff.activate", "fleet:ops:wang") in actions, site
        assert ("fleet.command", "fleet:ops:wang") in actions, site


def test_forged_replayed_and_expired_commands_are_refused_and_acked_as_refused(
        setup: tuple[Fleet, Sender, dict[str, GatewayApp], ManualClock],
        fleet_dsn: str) -> None:
    _running, sender, gateways, _clock = setup
    north = gateways["north"]
    forger = Ed25519PrivateKey.generate()
    forged = build(forger, site="north", kind="list", issuer="ops:x", reason="forged",
                   body={"action": "add", "list": "whitelist", "plate": "粤B12345"}, now=NOW,
                   ttl=TTL)
    expired = build(sender.key, site="north", kind="list", issuer="ops:wang", reason="late",
                    body={"action": "add", "list": "whitelist", "plate": "粤B22222"},
                    now=NOW - timedelta(hours=1), ttl=TTL)
    good = build(sender.key, site="north", kind="list", issuer="ops:wang", reason="VIP",
                 body={"action": "add", "list": "whitelist", "plate": "粤B33333"}, now=NOW,
                 ttl=TTL)
    sender.send(forged, expired, good)
    wait_for(fleet_dsn, "SELECT status FROM fleet_acks WHERE command_id = %s",
             "applied", good.command_id)
    sender.raw("north", good.encode(), "list")  # the same signed bytes again: a replay
    wait_for(fleet_dsn, "SELECT count(*) FROM fleet_acks WHERE status = 'refused' "
                        "AND site = 'north' AND command_id NOT LIKE 'malformed:%%'", 3)
    with psycopg.connect(fleet_dsn) as conn:  # (the probes' acks are 'malformed:…')
        refused: dict[str, str] = dict(conn.execute(
            "SELECT command_id, reason FROM fleet_acks WHERE status = 'refused' AND site = "
            "'north' AND command_id NOT LIKE 'malformed:%'").fetchall())
    assert refused[forged.command_id].startswith("signature")
    assert refused[expired.command_id].startswith("expired")
    assert refused[good.command_id].startswith("replayed")
    plates = {entry.plate for plate in ("粤B12345", "粤B22222", "粤B33333")
              for entry in north.billing.access.lists_for(plate)}
    assert plates == {"粤B33333"}  # only the good one was applied, once
    outcomes = [dict(e.after)["status"] for e in north.audit.entries()  # type: ignore[arg-type]
                if e.action == "fleet.command"]
    assert outcomes.count("refused") == 3 and outcomes.count("applied") == 1


def test_a_remote_open_goes_to_the_lane_as_its_own_signed_order(
        setup: tuple[Fleet, Sender, dict[str, GatewayApp], ManualClock],
        fleet_dsn: str) -> None:
    _running, sender, gateways, _clock = setup
    order = build(sender.key, site="south", kind="open", body={"lane": "in1"},
                  issuer="ops:wang", reason="ticket jammed, driver on the intercom", now=NOW,
                  ttl=TTL)
    unknown = build(sender.key, site="south", kind="open", body={"lane": "nowhere"},
                    issuer="ops:wang", reason="typo", now=NOW, ttl=TTL)
    sender.send(order, unknown)
    wait_for(fleet_dsn, "SELECT status FROM fleet_acks WHERE command_id = %s",
             "applied", order.command_id)
    wait_for(fleet_dsn, "SELECT reason LIKE 'open: unknown lane%%' FROM fleet_acks WHERE "
                        "command_id = %s", True, unknown.command_id)
    opens = [e for e in gateways["south"].audit.entries() if e.action == "lane.open"]
    assert [e.actor for e in opens] == ["fleet:ops:wang"]


def test_the_bridge_brings_fleet_commands_in_only_and_sends_acks_out() -> None:
    from broker.provision.bridge import BridgeConf, render_bridge
    conf = render_bridge(BridgeConf(site="north", address="10.0.0.1", port=8883,
                                    cafile=Path("/b/ca.crt"), username="bridge-north",
                                    password="pw", fleet_kind="nats"))
    assert "topic parkguard/v1/north/fleet/command/+ in 1\n" in conf
    assert "topic parkguard/v1/north/fleet/ack out 1\n" in conf
    assert "fleet/command/+ out" not in conf and "fleet/command/+ both" not in conf


def test_on_the_site_broker_no_device_may_write_a_fleet_command() -> None:
    from broker.provision.acl import render_acl
    from simulator.provisioned import simulated_inventory
    acl = render_acl(simulated_inventory("north", entry_lanes=("in1",), exit_lanes=("out1",)))
    assert "topic write parkguard/v1/north/fleet/command" not in acl
    gateway = acl.split("user gateway")[1].split("user ")[0]
    assert "topic write parkguard/v1/north/fleet/ack" in gateway


def test_the_cli_signs_as_the_fleet_user_and_shows_the_version_each_site_applied(
        setup: tuple[Fleet, Sender, dict[str, GatewayApp], ManualClock], fleet_dsn: str,
        tmp_path: Path) -> None:
    """``parkguard fleet command`` publishes as the service user (its NATS grant) at the
    wall-clock time, so the sites' clocks are set to it."""
    running, sender, gateways, clock = setup
    clock.set(datetime.now(UTC))
    key_file = tmp_path / "fleet-sign.pem"
    key_file.write_bytes(sender.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                                  NoEncryption()))
    config = running.write_config(fleet_dsn)
    config.write_text(config.read_text() + f'[commands]\nkey_file = "{key_file}"\n')
    text, version = new_tariff(tmp_path)
    tariff = tmp_path / "june.toml"
    tariff.write_text(text, encoding="utf-8")
    sent = CliRunner().invoke(fleet_group, [
        "command", "tariff", "-c", str(config), "--site", "north", "--site", "south",
        "--file", str(tariff), "--version", version, "--issuer", "ops:wang",
        "--reason", "June prices"])
    assert sent.exit_code == 0, sent.output
    wait_for(fleet_dsn, "SELECT count(*) FROM site_tariff_versions WHERE version = %s", 2,
             version)
    shown = CliRunner().invoke(fleet_group, ["versions", "-c", str(config)])
    assert shown.exit_code == 0, shown.output
    assert f"north: {version}" in shown.output and f"south: {version}" in shown.output
    assert all(version in {t.version for t in g.pricing.document.tariffs}
               for g in gateways.values())
