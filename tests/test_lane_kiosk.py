"""Drivers without a readable plate: the kiosk keypad and scanner on a lane on mock pins and
the real broker (gateway silent, so the lane decides alone)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from broker.runner import MosquittoBroker
from firmware.lane.config import JournalSettings, KioskSettings, LaneConfig, LaneTiming, PinMap
from firmware.lane.devices.display import RecordingDisplay
from firmware.lane.kiosk import LastFourDigits, OneTimeCode, SimulatedKiosk
from firmware.lane.node import LaneNode
from firmware.lane.states import State
from parkguard.clock import ManualClock
from parkguard.core.plates import NoPlateId
from simulator.camera import GroundTruthReader, SimulatedCamera
from simulator.site import settings_of
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import Recorder, eventually, give_the_lane_time_to_misbehave, ticking
from wire.contract import topics

pytestmark = pytest.mark.integration
KEY = "11" * 32
PHONE = "138 0013 5678"


@pytest.fixture
def events(broker: MosquittoBroker) -> Iterator[Recorder]:
    with Recorder(broker, topics.all_lane(TEST_SITE, "event"), device="monitor-watch1") as rec:
        yield rec


def of_type(recorder: Recorder, kind: str) -> list[dict[str, object]]:
    return [e for e in map(json.loads, recorder.payloads()) if e["type"] == kind]


def start_lane(broker: MosquittoBroker, tmp_path: Path, lane: str, direction: str,
               kiosk: SimulatedKiosk, clock: ManualClock
               ) -> tuple[LaneNode, MockFactory, RecordingDisplay]:
    config = LaneConfig(site=TEST_SITE, lane=lane, direction=direction,  # type: ignore[arg-type]
                        broker=settings_of(broker.address(f"lane-{lane}")),
                        timing=LaneTiming(decide_deadline_ms=50),
                        kiosk=KioskSettings(site_key=KEY),
                        journal=JournalSettings(path=tmp_path / f"{lane}.db"))
    factory, screen = MockFactory(), RecordingDisplay()
    node = LaneNode(config, clock=clock, camera=SimulatedCamera(clock=clock),
                    reader=GroundTruthReader(), pin_factory=factory, display=screen,
                    kiosk=kiosk, scanner=kiosk).start()
    return node, factory, screen


def test_a_car_without_a_plate_enters_by_phone_number_only_while_it_is_at_the_barrier(
    broker: MosquittoBroker, events: Recorder, tmp_path: Path,
) -> None:
    clock, kiosk = ManualClock(SITE_START), SimulatedKiosk()
    node, factory, screen = start_lane(broker, tmp_path, "in9", "entry", kiosk, clock)
    pins, relay = PinMap(), factory.pin(PinMap().barrier_relay)
    try:
        controller = node.controller
        kiosk.type_phone(PHONE)  # nobody at the barrier: refused
        eventually(lambda: screen.current == ("请先将车驶入车道",
                                              "Please drive up to the barrier first"),
                   what="no-vehicle text")
        factory.pin(pins.arming_loop).drive_high()  # camera shows nothing: unread
        ticking(lambda: controller.machine.state is State.REFUSED, clock, "refused")
        assert not relay.state
        kiosk.type_phone(PHONE)
        # The gateway is silent: the lane asks, waits out its deadline, then decides alone.
        ticking(lambda: bool(relay.state), clock, "barrier up for the phone identity")
        identity = NoPlateId.for_phone(PHONE, site_key=bytes.fromhex(KEY))
        assert controller.last_identity == identity
        request = controller.last_decide_request
        assert request is not None and request.plate is None
        assert request.identity == identity.text
        eventually(lambda: len(of_type(events, "decision")) == 2, what="two decisions")
        first, second = of_type(events, "decision")
        assert (first["action"], second["action"]) == ("refuse", "open")
        assert second["reason"] == "offline_no_plate_entry"
        assert second["identity"] == identity.text and second["plate"] is None
        assert any("尾号5678" in zh for zh, _en in screen.shown)
    finally:
        node.stop()


def test_at_the_exit_the_number_is_confirmed_and_a_payment_code_is_journaled(
    broker: MosquittoBroker, events: Recorder, tmp_path: Path,
) -> None:
    clock, kiosk = ManualClock(SITE_START), SimulatedKiosk()
    node, factory, screen = start_lane(broker, tmp_path, "out1", "exit", kiosk, clock)
    try:
        controller = node.controller
        factory.pin(PinMap().arming_loop).drive_high()
        ticking(lambda: controller.machine.state is State.REFUSED, clock, "refused")
        kiosk.type_phone(PHONE)
        eventually(lambda: screen.current == LastFourDigits().challenge(PHONE, NoPlateId(
            "#P0000:AAAAAAAAAAAA", "phone")), what="confirmation prompt")
        kiosk.type_digits("1234")
        eventually(lambda: screen.current == ("尾号不符 请重新输入",
                                              "Not confirmed: please try again"),
                   what="not confirmed")
        give_the_lane_time_to_misbehave()
        assert len(of_type(events, "decision")) == 1 and controller.last_identity is None
        kiosk.type_phone(PHONE)
        kiosk.type_digits("5678")
        eventually(lambda: controller.last_identity is not None, what="confirmed identity")
        ticking(lambda: len(of_type(events, "decision")) == 2, clock, "second decision")
        kiosk.scan("134567890123456789")  # a WeChat Pay code shown by the driver
        eventually(lambda: bool(of_type(events, "payment_code")), what="payment_code event")
        code = of_type(events, "payment_code")[0]
        assert code["code"] == "134567890123456789" and code["plate"] is None
        assert any(kind == "payment_code" for _seq, kind, _sent in node.journal.events())
    finally:
        node.stop()


def test_a_one_time_code_goes_to_the_phone_and_only_that_code_confirms() -> None:
    sent: list[tuple[str, str]] = []
    confirm = OneTimeCode(lambda phone, code: sent.append((phone, code)))
    identity = NoPlateId.for_phone(PHONE, site_key=bytes.fromhex(KEY))
    confirm.challenge(PHONE, identity)
    assert not confirm.check(identity, "000000" if sent[0][1] != "000000" else "111111")
    confirm.challenge(PHONE, identity)
    assert confirm.check(identity, sent[1][1])
    assert LastFourDigits().check(identity, "5678") and not LastFourDigits().check(identity, "1")
