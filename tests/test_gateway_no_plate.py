"""A car without a readable plate, end to end WITH the gateway: in by phone number at the
entry kiosk, out 90 minutes later by the same number confirmed with its last four digits,
billed by the gateway from the session it stored under the no-plate identity.

Real Mosquitto (the provisioned test site), the real gateway and two real lane nodes on
gpiozero ``MockFactory`` pins (``in9`` entry, ``out2`` exit) sharing the site's no-plate key.
The gateway answers every decide request, so the lanes never wait out their deadline and
the test never ticks the clock while a lane decides; time jumps only between the entry and
the exit, while no lane is deciding.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory
from pydantic import SecretStr

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from firmware.lane.config import (
    CameraSettings,
    CommandSettings,
    JournalSettings,
    KioskSettings,
    LaneConfig,
    LaneTiming,
)
from firmware.lane.controller import LaneController
from firmware.lane.devices.display import RecordingDisplay
from firmware.lane.kiosk import LastFourDigits, SimulatedKiosk
from firmware.lane.node import LaneNode
from firmware.lane.states import State
from gateway.money.pricing import EXAMPLE_TARIFF, SitePricing
from parkguard.clock import ManualClock
from parkguard.core.plates import NoPlateId
from simulator.camera import GroundTruthReader, SimulatedCamera
from simulator.driver import SimulatedLaneWiring
from simulator.site import SimulatedSite, settings_of
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import Recorder, eventually
from wire.contract import topics

pytestmark = pytest.mark.integration

KEY = "5a" * 32  # the site's no-plate key: the same on both lanes (and any other lane)
PHONE = "139 1234 5678"
STAY = timedelta(minutes=90)


class KioskLane:
    """One lane node with a kiosk, its mock board and its screen."""

    def __init__(self, broker: MosquittoBroker, workdir: Path, lane: str, direction: str,
                 clock: ManualClock, command_key: bytes | None = None,
                 kiosk: KioskSettings | None = None) -> None:
        self.kiosk, self.screen, self.factory = SimulatedKiosk(), RecordingDisplay(), MockFactory()
        # A generous deadline: the gateway answers in a millisecond or two, and the manual
        # clock does not move while the lane decides, so the deadline never runs out anyway.
        self.config = LaneConfig(
            site=TEST_SITE, lane=lane, direction=direction,  # type: ignore[arg-type]
            broker=settings_of(broker.address(f"lane-{lane}")),
            timing=LaneTiming(decide_deadline_ms=2000),
            kiosk=kiosk or KioskSettings(site_key=SecretStr(KEY)),
            commands=CommandSettings(
                hmac_key=None if command_key is None else SecretStr(command_key.hex())),
            journal=JournalSettings(path=workdir / f"lane-{lane}.db"),
            camera=CameraSettings(type="simulated"))
        self.node = LaneNode(self.config, clock=clock, camera=SimulatedCamera(clock=clock),
                             reader=GroundTruthReader(), pin_factory=self.factory,
                             display=self.screen, kiosk=self.kiosk)
        self.wiring = SimulatedLaneWiring(self.config, self.factory)

    @property
    def controller(self) -> LaneController:
        return self.node.controller

    def arrive_unread(self) -> None:
        """A car with no readable plate rolls onto the arming loop; the gateway refuses the
        unread plate and the car waits at the kiosk."""
        verdicts = self.controller.verdicts
        self.wiring.arming.drive_high()  # the camera shows nothing: plate unread
        eventually(lambda: self.controller.verdicts > verdicts
                   and self.controller.machine.state is State.REFUSED, what="refused")
        verdict = self.controller.last_verdict
        assert verdict is not None
        assert (verdict.action, verdict.reason, verdict.decided_by) == (
            "refuse", "plate_unread", "gateway")
        assert not self.wiring.relay.state

    def pass_through(self) -> None:
        """Boom up: the car crosses the safety loop and the boom comes down behind it."""
        eventually(lambda: bool(self.wiring.relay.state), what="the barrier to rise")
        assert self.wiring.light_green.state and not self.wiring.light_red.state
        self.wiring.safety.drive_high()
        self.wiring.arming.drive_low()
        self.wiring.safety.drive_low()
        eventually(lambda: self.controller.barrier_position == "closed"
                   and not self.wiring.relay.state, what="the barrier to close")

    def stop(self) -> None:
        self.node.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(SITE_START)


@pytest.fixture
def gateway_site(broker: MosquittoBroker, tmp_path: Path, test_site: ProvisionResult,
                 clock: ManualClock) -> Iterator[SimulatedSite]:
    """The real gateway alone (no plate lanes of its own) on the mall tariff."""
    with SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path, clock=clock,
                       entry_lanes=(), exit_lanes=(),
                       lane_keys=test_site.device("gateway").lane_keys) as running:
        yield running


@pytest.fixture
def lanes(broker: MosquittoBroker, tmp_path: Path, gateway_site: SimulatedSite,
          clock: ManualClock, test_site: ProvisionResult,
          ) -> Iterator[tuple[KioskLane, KioskLane]]:
    entry = KioskLane(broker, tmp_path, "in9", "entry", clock)
    exit_ = KioskLane(broker, tmp_path, "out2", "exit", clock,  # obeys the gateway's open
                      command_key=test_site.device("gateway").lane_keys["out2"])
    entry.node.start()
    exit_.node.start()
    try:
        yield entry, exit_
    finally:
        exit_.stop()
        entry.stop()


@pytest.fixture
def events(broker: MosquittoBroker) -> Iterator[Recorder]:
    with Recorder(broker, topics.all_lane(TEST_SITE, "event"), device="monitor-watch1") as rec:
        yield rec


def of_type(recorder: Recorder, kind: str, lane: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, recorder.payloads())
            if e["type"] == kind and e["lane"] == lane]


def sessions(site: SimulatedSite) -> list[dict[str, Any]]:
    with site.gateway.store.reader() as db:
        return [dict(row) for row in db.query("SELECT * FROM sessions")]


def test_a_car_without_a_plate_enters_by_phone_and_leaves_paying_the_gateways_fee(
    gateway_site: SimulatedSite, lanes: tuple[KioskLane, KioskLane], events: Recorder,
    clock: ManualClock,
) -> None:
    entry, exit_ = lanes
    identity = NoPlateId.for_phone(PHONE, site_key=bytes.fromhex(KEY))
    assert identity.text.startswith("#P5678:")
    service = gateway_site.gateway.service

    # Entry: unread plate → refused by the gateway → phone at the kiosk → gateway opens.
    entry.arrive_unread()
    entry.kiosk.type_phone(PHONE)
    eventually(lambda: entry.controller.verdicts == 2, what="the entry's second verdict")
    request = entry.controller.last_decide_request
    assert request is not None and request.plate is None and request.identity == identity.text
    verdict = entry.controller.last_verdict
    assert verdict is not None
    assert (verdict.action, verdict.reason, verdict.decided_by) == (
        "open", "visitor_entry", "gateway")
    entry_session = verdict.session_id
    assert entry_session
    assert ("尾号5678 欢迎光临", "Welcome 尾号5678") in entry.screen.shown  # masked
    entry.pass_through()
    eventually(lambda: any(s["state"] == "open" for s in sessions(gateway_site)),
               what="the gateway's session for the identity")
    service.wait_idle()
    [session] = sessions(gateway_site)
    assert session["session_id"] == entry_session
    assert session["plate"] == identity.text and session["entry_read"] == identity.text
    assert session["entry_lane"] == "in9" and session["review"] is None
    assert service.inside.session_of(identity.text) == entry_session
    eventually(lambda: len(of_type(events, "passed", "in9")) == 1, what="entry passed event")
    decisions = of_type(events, "decision", "in9")
    assert [d["identity"] for d in decisions] == [None, identity.text]
    assert of_type(events, "passed", "in9")[0]["identity"] == identity.text

    # 90 minutes later, while no lane is deciding.
    clock.advance(STAY)

    # Exit: unread → refused; the phone, then its last four digits → the gateway's fee, and
    # the car waits to pay it: a 付款码 at the lane's scanner, charged, then the open.
    exit_.arrive_unread()
    exit_.kiosk.type_phone(PHONE)
    eventually(lambda: exit_.screen.current == LastFourDigits.PROMPT,
               what="the last-four prompt")
    assert exit_.controller.verdicts == 1  # nothing decided before the confirmation
    exit_.kiosk.type_digits("5678")
    eventually(lambda: exit_.controller.verdicts == 2, what="the exit's second verdict")
    request = exit_.controller.last_decide_request
    assert request is not None and request.plate is None and request.identity == identity.text
    verdict = exit_.controller.last_verdict
    assert verdict is not None
    expected = SitePricing.from_file(EXAMPLE_TARIFF).quote(
        plate=identity.text, entry=SITE_START, exit=SITE_START + STAY).total_fen
    assert expected == 700  # 1.5 h by day on the mall tariff
    assert (verdict.action, verdict.reason, verdict.decided_by, verdict.fee_fen,
            verdict.session_id) == ("refuse", "payment_due", "gateway", 700, entry_session)
    assert ("尾号5678 停1小时30分 应付¥7.00", "Stay 1h 30m: pay ¥7.00 - show pay code") \
        in exit_.screen.shown  # no public_url: no QR, the 付款码
    assert not any("#P" in zh + en for zh, en in entry.screen.shown + exit_.screen.shown)
    exit_.kiosk.scan("134567890123456789")
    exit_.pass_through()
    eventually(lambda: sessions(gateway_site)[0]["state"] == "closed", what="session closed")
    service.wait_idle()
    [closed] = sessions(gateway_site)
    assert closed["fee_fen"] == 700 and closed["exit_lane"] == "out2"
    assert closed["exit_read"] == identity.text and closed["review"] is None
    assert service.inside.session_of(identity.text) is None
    eventually(lambda: len(of_type(events, "passed", "out2")) == 1, what="exit passed event")
    passed = of_type(events, "passed", "out2")[0]
    assert passed["identity"] == identity.text and passed["fee_fen"] == 700
    assert passed["settled"] == "payment_code"
    [payment] = service.call(lambda: gateway_site.gateway.billing.payments.payments_for(
        entry_session))
    assert (payment.method, payment.state, payment.amount_fen) == ("payment_code", "paid", 700)
    assert gateway_site.gateway.store.count("dead_letters") == 0
