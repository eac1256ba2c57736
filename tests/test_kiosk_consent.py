"""A no-plate driver agrees at the lane kiosk to be reached about the car: end to end on the
real Mosquitto (the provisioned site's ACLs), the real gateway with ``[otp]`` and
``[contacts]`` on a real SQLite file, a real lane node on mock pins, and the SMS peer of the
one-time-code tests. Only a number proved by its code, with the 1 typed after it, is kept."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from broker.runner import MosquittoBroker
from firmware.lane.config import KioskSettings
from firmware.lane.kiosk_otp import OTP_TEXTS
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.contacts import ContactSettings
from gateway.lanes.otp import OtpSettings
from gateway.money.pricing import EXAMPLE_TARIFF
from parkguard.clock import ManualClock
from parkguard.core.plates import NoPlateId
from simulator.site import settings_of
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import eventually
from tests.sms_peer import SmsEagle
from tests.test_gateway_no_plate import KEY, KioskLane

pytestmark = pytest.mark.integration

PHONE = "139 1234 5678"
DIGITS = "13912345678"
OTHER = "138 0000 1111"


class ConsentLane(KioskLane):
    """The no-plate test's kiosk lane with one-time codes and the contact consent offered."""

    def __init__(self, broker: MosquittoBroker, workdir: Path, lane: str,
                 clock: ManualClock) -> None:
        super().__init__(broker, workdir, lane, "entry", clock, kiosk=KioskSettings(
            site_key=SecretStr(KEY), confirm="otp", otp_wait_ms=5000, contact_consent="k1"))

    def shows(self, text: tuple[str, str]) -> None:
        eventually(lambda: self.screen.current == text, what=f"the display: {text}",
                   timeout=30)


@pytest.fixture
def gateway(broker: MosquittoBroker, tmp_path: Path, eagle: SmsEagle) -> Iterator[GatewayApp]:
    config = GatewayConfig(
        site=TEST_SITE, site_name="测试停车场", database=tmp_path / "gateway.db",
        broker=settings_of(broker.address("gateway")), tariff_file=EXAMPLE_TARIFF,
        otp=OtpSettings(sms_url=SecretStr(eagle.url)),
        contacts=ContactSettings(key_file=tmp_path / "contacts.key", signature="测试停车场"))
    with GatewayApp(config, clock=ManualClock(SITE_START)) as app:
        yield app


def inside(app: GatewayApp, plate: str) -> bool:
    with app.store.reader() as db:
        return db.execute("SELECT 1 FROM sessions WHERE plate = ? AND state = 'open'",
                          [plate]).fetchone() is not None


def contacts(app: GatewayApp) -> list[dict[str, object]]:
    with app.store.reader() as db:
        return [dict(r) for r in db.query("SELECT * FROM contacts ORDER BY id")]


def test_a_driver_who_adds_the_1_after_the_code_is_registered_and_can_be_texted(
        broker: MosquittoBroker, tmp_path: Path, eagle: SmsEagle, gateway: GatewayApp) -> None:
    clock = gateway.clock
    assert isinstance(clock, ManualClock)
    entry = ConsentLane(broker, tmp_path, "in9", clock)
    identity = NoPlateId.for_phone(PHONE, site_key=bytes.fromhex(KEY))
    entry.node.start()
    try:
        entry.arrive_unread()
        entry.kiosk.type_phone(PHONE)
        entry.shows(OTP_TEXTS["ask_consent"])  # the prompt says how to agree
        code = eagle.code(0)
        entry.kiosk.type_digits(code + "1")
        eventually(lambda: entry.controller.verdicts == 2, what="the entry", timeout=30)
        assert entry.controller.last_verdict is not None
        assert entry.controller.last_verdict.action == "open"
        entry.pass_through()
        [row] = contacts(gateway)
        assert (row["plate"], row["source"], row["wording_version"]) == (
            identity.text, "kiosk", "k1")
        assert row["phone_masked"] == "139****5678" and DIGITS not in json.dumps(row)
        eventually(lambda: inside(gateway, identity.text), what="the car's stay opened")
        # A guard sees a leak under the no-plate car: the owner gets the text.
        register = gateway.site_plans.contacts
        assert register is not None
        assert gateway.service.call(lambda: register.tell_owner(
            identity.text, "leaking", actor="guard:gina")) == 1
        eventually(lambda: len(eagle.messages) == 2, what="the text to the owner")
        params = eagle.messages[1]["params"]
        assert params["to"] == f"+86{DIGITS}" and "漏油" in params["message"]

        # The next driver types the code alone: entered, and nothing kept.
        entry.arrive_unread()
        entry.kiosk.type_phone(OTHER)
        entry.shows(OTP_TEXTS["ask_consent"])
        entry.kiosk.type_digits(eagle.code(2))
        eventually(lambda: entry.controller.verdicts == 4, what="the second entry",
                   timeout=30)
        entry.pass_through()
        assert len(contacts(gateway)) == 1
    finally:
        entry.node.stop()
