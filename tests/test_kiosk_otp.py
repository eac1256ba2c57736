"""One-time codes for no-plate drivers (``[kiosk] confirm = "otp"``), end to end.

Real Mosquitto (the provisioned test site, so the ACLs for ``lane/+/otp`` are the generated
ones), the real gateway on a real SQLite file with ``[otp]``, real lane nodes on gpiozero
``MockFactory`` pins, and the SMS channel through Apprise's ``smseagle://`` plugin to a local
HTTP server that answers as an SMSEagle LAN SMS gateway does (JSON-RPC ``sms.send_sms`` on
``/jsonrpc/sms``; the wire format Apprise's plugin speaks). The clock is a manual one shared
by gateway and lanes: a code expires when the test moves it on.

The lane-alone fallbacks (gateway silent) run on the in-memory bus with no gateway.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from broker.runner import MosquittoBroker
from firmware.lane.config import (
    KioskSettings,
    LaneTiming,
)
from firmware.lane.kiosk import LastFourDigits, SimulatedKiosk
from firmware.lane.kiosk_otp import OTP_TEXTS
from firmware.lane.states import State
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.lanes.otp import OtpSettings
from gateway.money.pricing import EXAMPLE_TARIFF
from parkguard.clock import ManualClock
from parkguard.core.plates import NoPlateId
from simulator.site import settings_of
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import eventually
from tests.lane_harness import MemoryLane
from tests.sms_peer import TOKEN, SmsEagle
from tests.test_gateway_no_plate import KEY, KioskLane
from wire.contract.messages import OtpReply, OtpRequest

pytestmark = pytest.mark.integration

PHONE = "139 1234 5678"
DIGITS = "13912345678"


class OtpLane(KioskLane):
    """The no-plate test's kiosk lane with ``confirm = "otp"``."""

    def __init__(self, broker: MosquittoBroker, workdir: Path, lane: str, direction: str,
                 clock: ManualClock) -> None:
        super().__init__(broker, workdir, lane, direction, clock, kiosk=KioskSettings(
            site_key=SecretStr(KEY), confirm="otp", otp_wait_ms=5000))

    def shows(self, text: tuple[str, str]) -> None:
        eventually(lambda: self.screen.current == text, what=f"the display: {text}",
                   timeout=30)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(SITE_START)


@pytest.fixture
def gateway(broker: MosquittoBroker, tmp_path: Path, clock: ManualClock,
            eagle: SmsEagle) -> Iterator[GatewayApp]:
    config = GatewayConfig(
        site=TEST_SITE, site_name="测试停车场", database=tmp_path / "gateway.db",
        broker=settings_of(broker.address("gateway")), tariff_file=EXAMPLE_TARIFF,
        otp=OtpSettings(sms_url=SecretStr(eagle.url), ttl_s=300, attempts=3,
                        sends_per_hour=3))
    with GatewayApp(config, clock=clock) as app:
        yield app


def otp_rows(app: GatewayApp) -> list[dict[str, Any]]:
    with app.store.reader() as db:
        return [dict(row) for row in db.query("SELECT * FROM otp_codes ORDER BY id")]


def test_a_no_plate_entry_is_confirmed_by_a_code_texted_to_the_phone(
    broker: MosquittoBroker, tmp_path: Path, clock: ManualClock, eagle: SmsEagle,
    gateway: GatewayApp,
) -> None:
    entry = OtpLane(broker, tmp_path, "in9", "entry", clock)
    identity = NoPlateId.for_phone(PHONE, site_key=bytes.fromhex(KEY))
    entry.node.start()
    try:
        entry.arrive_unread()
        entry.kiosk.type_phone(PHONE)
        entry.shows(OTP_TEXTS["ask"])
        code = eagle.code(0)
        params = eagle.messages[0]["params"]
        assert params["to"] == f"+86{DIGITS}" and params["access_token"] == TOKEN
        assert params["message"].startswith("【测试停车场】停车验证码 ")
        assert eagle.messages[0]["method"] == "sms.send_sms"
        [row] = otp_rows(gateway)
        assert row["identity"] == identity.text and row["state"] == "active"
        assert code not in json.dumps(row) and DIGITS not in json.dumps(row)  # hashed, no number
        assert entry.controller.verdicts == 1  # nothing decided before the code

        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        entry.kiosk.type_digits(wrong)
        entry.shows(OTP_TEXTS["wrong"])
        eventually(lambda: otp_rows(gateway)[0]["attempts_left"] == 2, what="counted")
        assert entry.controller.verdicts == 1 and not entry.wiring.relay.state

        entry.kiosk.type_digits(code)
        eventually(lambda: entry.controller.verdicts == 2, what="the second verdict",
                   timeout=30)
        verdict = entry.controller.last_verdict
        assert verdict is not None
        assert (verdict.action, verdict.reason, verdict.decided_by) == (
            "open", "visitor_entry", "gateway")
        request = entry.controller.last_decide_request
        assert request is not None and request.identity == identity.text
        entry.pass_through()
        assert otp_rows(gateway)[0]["state"] == "confirmed"
        assert gateway.otp is not None and (gateway.otp.sent, gateway.otp.wrong,
                                            gateway.otp.confirmed) == (1, 1, 1)

        # The next driver waits too long: the code has expired.
        entry.arrive_unread()
        entry.kiosk.type_phone(PHONE)
        entry.shows(OTP_TEXTS["ask"])
        late = eagle.code(1)
        clock.advance(timedelta(seconds=301))
        entry.kiosk.type_digits(late)
        entry.shows(OTP_TEXTS["expired"])
        assert otp_rows(gateway)[1]["state"] == "expired"
        assert entry.controller.verdicts == 3 and not entry.wiring.relay.state

        # Three wrong codes lock it; a fourth text within the hour is refused.
        entry.kiosk.type_phone(PHONE)
        entry.shows(OTP_TEXTS["ask"])
        third = eagle.code(2)
        bad = f"{(int(third) + 7) % 1_000_000:06d}"
        for _ in range(2):
            entry.kiosk.type_digits(bad)
            entry.shows(OTP_TEXTS["wrong"])
            entry.screen.show("", "")  # so the next identical text is seen arriving
        entry.kiosk.type_digits(bad)
        entry.shows(OTP_TEXTS["locked"])
        entry.kiosk.type_digits(third)  # too late: the lane has dropped the challenge
        entry.kiosk.type_phone(PHONE)
        entry.shows(OTP_TEXTS["rate_limited"])
        assert len(eagle.messages) == 3
        assert [r["state"] for r in otp_rows(gateway)] == ["confirmed", "expired", "locked"]
        assert entry.controller.verdicts == 3 and not entry.wiring.relay.state
        assert gateway.store.count("dead_letters") == 0
    finally:
        entry.node.stop()


def test_the_exit_confirms_the_same_phone_by_a_new_code_and_finds_its_stay(
    broker: MosquittoBroker, tmp_path: Path, clock: ManualClock, eagle: SmsEagle,
    gateway: GatewayApp,
) -> None:
    entry = OtpLane(broker, tmp_path, "in9", "entry", clock)
    exit_ = OtpLane(broker, tmp_path, "out2", "exit", clock)
    identity = NoPlateId.for_phone(PHONE, site_key=bytes.fromhex(KEY))
    entry.node.start()
    exit_.node.start()
    try:
        entry.arrive_unread()
        entry.kiosk.type_phone(PHONE)
        entry.shows(OTP_TEXTS["ask"])
        entry.kiosk.type_digits(eagle.code(0))
        entry.pass_through()
        verdict = entry.controller.last_verdict
        assert verdict is not None and verdict.reason == "visitor_entry"
        session = verdict.session_id
        clock.advance(timedelta(minutes=90))

        exit_.arrive_unread()
        exit_.kiosk.type_phone(PHONE)
        exit_.shows(OTP_TEXTS["ask"])
        assert exit_.controller.verdicts == 1
        exit_.kiosk.type_digits(eagle.code(1))
        eventually(lambda: exit_.controller.verdicts == 2, what="the exit's verdict",
                   timeout=30)
        request = exit_.controller.last_decide_request
        assert request is not None and request.identity == identity.text
        verdict = exit_.controller.last_verdict
        assert verdict is not None
        assert (verdict.reason, verdict.session_id, verdict.fee_fen) == (
            "payment_due", session, 700)  # 1.5 h by day on the mall tariff
        assert [r["lane"] for r in otp_rows(gateway)] == ["in9", "out2"]
    finally:
        exit_.node.stop()
        entry.node.stop()


def test_an_sms_channel_that_fails_is_said_at_the_lane_and_the_code_never_works(
    broker: MosquittoBroker, tmp_path: Path, clock: ManualClock, eagle: SmsEagle,
    gateway: GatewayApp,
) -> None:
    exit_ = OtpLane(broker, tmp_path, "out2", "exit", clock)
    exit_.node.start()
    try:
        eagle.failing = True
        exit_.arrive_unread()
        exit_.kiosk.type_phone(PHONE)
        exit_.shows(OTP_TEXTS["send_failed"])
        eventually(lambda: otp_rows(gateway)[0]["state"] == "send_failed", what="recorded")
        exit_.kiosk.type_digits("123456")  # nothing to confirm: ignored by the lane
        exit_.controller.wait_idle(30)
        assert exit_.controller.verdicts == 1
    finally:
        exit_.node.stop()


def test_a_bad_request_is_dead_lettered_with_the_number_masked(
    broker: MosquittoBroker, gateway: GatewayApp,
) -> None:
    from wire.mqtt import MqttBus

    bus = MqttBus(broker.address("lane-in9"), client_id="lane-otp-probe")
    bus.start(timeout=30)
    try:
        bad = {"v": 1, "correlation_id": "otp-bad-000001", "lane": "in9", "action": "check",
               "identity": "#P5678:N4CPKMF3R6G2", "phone": DIGITS,
               "ts": "2026-05-06T02:00:00.000Z"}
        bus.publish(f"parkguard/v1/{TEST_SITE}/lane/in9/otp", json.dumps(bad).encode())
        eventually(lambda: gateway.store.count("dead_letters") == 1, what="dead letter",
                   timeout=30)
    finally:
        bus.stop()
    with gateway.store.reader() as db:
        [letter] = list(db.query("SELECT payload, reason FROM dead_letters"))
    assert DIGITS not in bytes(letter["payload"]).decode() and "check carries code" in \
        letter["reason"]


# the contract and the settings ------------------------------------------------------------


def test_otp_messages_are_bounded_and_carry_the_number_only_to_send() -> None:
    base: dict[str, Any] = {"correlation_id": "otp-0000000001", "lane": "in9",
                            "identity": "#P5678:N4CPKMF3R6G2", "ts": SITE_START}
    OtpRequest.model_validate({**base, "action": "send", "phone": DIGITS})
    OtpRequest.model_validate({**base, "action": "check", "code": "123456"})
    for wrong in ({"action": "send", "code": "123456"}, {"action": "check", "phone": DIGITS},
                  {"action": "send", "phone": "23912345678"},
                  {"action": "check", "code": "1" * 9},
                  {"action": "check", "code": "123456", "identity": "#Q12345678"}):
        with pytest.raises(ValidationError):
            OtpRequest.model_validate({**base, **wrong})
    with pytest.raises(ValidationError):
        OtpReply(correlation_id="otp-0000000001", lane="in9", outcome="sent",
                 attempts_left=11, ts=SITE_START)


def test_otp_settings_fail_naming_what_is_wrong() -> None:
    with pytest.raises(ValidationError, match=r"sms_url must contain \{phone\}"):
        OtpSettings(sms_url=SecretStr("smseagle://t@h/+8613900000000"))
    with pytest.raises(ValidationError, match=r"message: only \{code\}"):
        OtpSettings(sms_url=SecretStr("smseagle://t@h/{phone}"), message="{code} {who}")


# the gateway silent: the lane alone ------------------------------------------------------------

WAIT_MS = 400


def kiosk_lane(tmp_path: Path, direction: str, kiosk: SimulatedKiosk) -> MemoryLane:
    return MemoryLane(tmp_path, lane="in9" if direction == "entry" else "out1",
                      direction=direction,  # type: ignore[arg-type]
                      timing=LaneTiming(decide_deadline_ms=50), keypad=kiosk,
                      kiosk=KioskSettings(site_key=SecretStr(KEY), confirm="otp",
                                          otp_wait_ms=WAIT_MS))


def refused(lane: MemoryLane) -> None:
    lane.pins.arming.drive_high()
    lane.settle()
    lane.step(milliseconds=50)
    assert lane.controller.machine.state is State.REFUSED


def test_with_the_gateway_silent_an_entry_goes_ahead_by_number(tmp_path: Path) -> None:
    kiosk = SimulatedKiosk()
    with kiosk_lane(tmp_path, "entry", kiosk) as lane:
        refused(lane)
        kiosk.type_phone(PHONE)
        lane.settle()
        lane.step(milliseconds=WAIT_MS)  # no answer to the send
        assert OTP_TEXTS["offline_entry"] in lane.screen.shown
        lane.step(milliseconds=50)  # nor to the decide request
        assert lane.relay_up
        verdict = lane.controller.last_verdict
        assert verdict is not None and verdict.reason == "offline_no_plate_entry"


def test_with_the_gateway_silent_an_exit_asks_for_the_last_four_digits(tmp_path: Path) -> None:
    kiosk = SimulatedKiosk()
    with kiosk_lane(tmp_path, "exit", kiosk) as lane:
        refused(lane)
        kiosk.type_phone(PHONE)
        lane.settle()
        lane.step(milliseconds=WAIT_MS)
        assert lane.screen.current == OTP_TEXTS["offline_last4"]
        kiosk.type_digits("1234")
        lane.settle()
        assert lane.screen.current == LastFourDigits().check(
            NoPlateId.for_phone(PHONE, site_key=bytes.fromhex(KEY)), "1234").shown
        kiosk.type_phone(PHONE)
        lane.settle()
        lane.step(milliseconds=WAIT_MS)
        kiosk.type_digits("5678")
        lane.settle()
        request = lane.controller.last_decide_request
        assert request is not None and request.identity is not None  # confirmed: asked
