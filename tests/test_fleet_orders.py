"""The site's fleet-command desk on its own: every check in turn, on the in-memory bus and a
real SQLite gateway store, the clock stepped (the cluster tests are tests/fleet/)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from fleet.orders import build, public_hex
from gateway.fleet_orders import FleetLinkSettings, FleetOrders
from gateway.lanes.commands import LaneCommander
from gateway.money.passes import AccessDesk
from gateway.money.pricing import EXAMPLE_TARIFF, SitePricing
from gateway.records.audit import AuditLog
from gateway.storage.store import GatewayStore
from parkguard.clock import ManualClock
from wire.fleet_command import CommandKind, FleetAck, FleetCommand, command_topic
from wire.memory import MemoryBroker

NOW = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()


class Desk:
    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.clock = ManualClock(NOW)
        self.broker = MemoryBroker()
        self.bus = self.broker.bus("gateway").start()
        self.store = GatewayStore.open(tmp_path / "gateway.db")
        self.audit = AuditLog(self.store.db, clock=self.clock)
        self.tariff = tmp_path / "tariff.toml"
        shutil.copy(EXAMPLE_TARIFF, self.tariff)
        self.access = AccessDesk(self.store.db, clock=self.clock, audit=self.audit)
        self.orders = FleetOrders(
            site="north", settings=FleetLinkSettings(public_key=public_hex(KEY), **settings),
            db=self.store.db, clock=self.clock, audit=self.audit, publisher=self.bus,
            pricing=SitePricing.from_file(self.tariff), tariff_file=self.tariff,
            access=self.access, lanes=LaneCommander(self.bus, "north", {"in1": b"k" * 32},
                                                    self.clock, self.audit))

    def send(self, command: FleetCommand, kind: CommandKind | None = None) -> FleetAck:
        return self.orders.on_message(command_topic("north", kind or command.kind),
                                      command.encode())


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    made = Desk(tmp_path)
    yield made
    made.bus.stop()
    made.store.close()


def whitelist(plate: str = "粤B12345", *, key: Ed25519PrivateKey = KEY, site: str = "north",
              now: datetime = NOW, ttl: timedelta = timedelta(minutes=5)) -> FleetCommand:
    return build(key, site=site, kind="list", body={"action": "add", "list": "whitelist",
                                                    "plate": plate},
                 issuer="ops:wang", reason="VIP", now=now, ttl=ttl)


def test_a_good_command_is_applied_once_audited_and_acked(desk: Desk) -> None:
    command = whitelist()
    assert desk.send(command).status == "applied"
    assert [e.plate for e in desk.access.lists_for("粤B12345")] == ["粤B12345"]
    assert desk.send(command).reason.startswith("replayed")
    actions = [e.action for e in desk.audit.entries()]
    assert actions.count("whitelist.add") == 1 and actions.count("fleet.command") == 2


@pytest.mark.parametrize(("command", "kind", "reason"), [
    (whitelist(key=Ed25519PrivateKey.generate()), None, "signature"),
    (whitelist(site="south"), None, "site"),
    (whitelist(), "tariff", "topic"),
    (whitelist(now=NOW - timedelta(minutes=10)), None, "expired"),
    (whitelist(now=NOW + timedelta(minutes=5)), None, "issued"),
    (whitelist(ttl=timedelta(days=2)), None, "expires"),
])
def test_each_bad_command_is_refused_with_its_reason(
        desk: Desk, command: FleetCommand, kind: CommandKind | None, reason: str) -> None:
    ack = desk.send(command, kind)
    assert ack.status == "refused" and ack.reason.startswith(reason), ack.reason
    assert desk.access.lists_for("粤B12345") == []


def test_one_changed_byte_breaks_the_signature(desk: Desk) -> None:
    fields = json.loads(whitelist().encode())
    fields["body"]["plate"] = "粤B12346"
    tampered = FleetCommand.model_validate(fields)
    assert desk.send(tampered).reason.startswith("signature")


def test_a_kind_the_site_does_not_accept_and_garbage_are_refused(tmp_path: Path) -> None:
    desk = Desk(tmp_path, accept=("tariff",))
    dead: list[str] = []
    desk.orders._dead_letter = lambda _topic, _payload, reason: dead.append(reason)
    try:
        assert desk.send(whitelist()).reason.startswith("kind")
        garbage = desk.orders.on_message(command_topic("north", "list"), b"{not json")
        assert garbage.status == "refused" and garbage.reason.startswith("malformed")
        assert len(dead) == 1 and dead[0].startswith("fleet_command")
    finally:
        desk.bus.stop()
        desk.store.close()


def test_a_nonce_is_forgotten_only_after_its_command_expired(desk: Desk) -> None:
    first = whitelist(ttl=timedelta(minutes=1))
    assert desk.send(first).status == "applied"
    desk.clock.advance(timedelta(minutes=5))
    assert desk.send(first).reason.startswith("expired")  # the expiry refuses it now
    assert desk.orders.on_message(command_topic("north", "list"), whitelist(
        "粤B99999", now=desk.clock.now()).encode()).status == "applied"
    left = list(desk.store.db.query("SELECT count(*) AS n FROM fleet_commands_seen"))
    assert left[0]["n"] == 1  # the first nonce was dropped once it could not matter


def test_a_tariff_version_goes_in_force_and_into_the_file(desk: Desk) -> None:
    text = EXAMPLE_TARIFF.read_text(encoding="utf-8")
    block = text[text.index("[[tariffs]]"):text.index("[calendar]")]
    block = block.replace('version = "2026-01"', 'version = "2030-01"').replace(
        "effective_from = 2026-01-01", "effective_from = 2030-01-01")
    new = text + "\n" + block
    command = build(KEY, site="north", kind="tariff",
                    body={"tariff_toml": new, "version": "2030-01"}, issuer="ops:wang",
                    reason="2030 prices", now=NOW, ttl=timedelta(minutes=5))
    ack = desk.send(command)
    assert (ack.status, ack.version) == ("applied", "2030-01")
    assert "2030-01" in desk.tariff.read_text(encoding="utf-8")
    missing = build(KEY, site="north", kind="tariff",
                    body={"tariff_toml": new, "version": "2099-01"}, issuer="ops:wang",
                    reason="typo", now=NOW, ttl=timedelta(minutes=5))
    assert desk.send(missing).reason.startswith("version")


def test_the_fleet_section_names_a_bad_key_and_its_bounds() -> None:
    with pytest.raises(ValidationError, match="public_key"):
        FleetLinkSettings(public_key="zz" * 32)
    with pytest.raises(ValidationError, match="max_ttl_s"):
        FleetLinkSettings(public_key=public_hex(KEY), max_ttl_s=1)
