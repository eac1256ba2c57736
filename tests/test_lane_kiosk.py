"""Drivers without a readable plate: the kiosk keypad and scanner on a lane on mock pins, the
in-memory bus and a manual clock (gateway silent, so the lane decides alone)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import SecretStr

from firmware.lane.config import KioskSettings, LaneTiming
from firmware.lane.devices.display import RecordingDisplay
from firmware.lane.kiosk import LastFourDigits, SimulatedKiosk
from firmware.lane.states import State
from parkguard.core.plates import NoPlateId
from tests.lane_harness import MemoryLane

KEY = "11" * 32
PHONE = "138 0013 5678"
DEADLINE_MS = 50


@contextmanager
def start_lane(tmp_path: Path, lane: str, direction: str, kiosk: SimulatedKiosk,
               screen: RecordingDisplay) -> Iterator[MemoryLane]:
    with MemoryLane(tmp_path, lane=lane, direction=direction,  # type: ignore[arg-type]
                    timing=LaneTiming(decide_deadline_ms=DEADLINE_MS),
                    kiosk=KioskSettings(site_key=SecretStr(KEY)), display=screen,
                    keypad=kiosk) as running:
        yield running


def refused_after_the_deadline(lane: MemoryLane) -> None:
    """The camera shows nothing: unread; the gateway is silent: the lane asks, waits out
    its deadline, then decides alone."""
    lane.pins.arming.drive_high()
    lane.settle()
    lane.step(milliseconds=DEADLINE_MS)
    assert lane.controller.machine.state is State.REFUSED


def test_a_car_without_a_plate_enters_by_phone_number_only_while_it_is_at_the_barrier(
    tmp_path: Path,
) -> None:
    kiosk, screen = SimulatedKiosk(), RecordingDisplay()
    with start_lane(tmp_path, "in9", "entry", kiosk, screen) as lane:
        controller = lane.controller
        kiosk.type_phone(PHONE)  # nobody at the barrier: refused
        lane.settle()
        assert screen.current == ("请先将车驶入车道", "Please drive up to the barrier first")
        refused_after_the_deadline(lane)
        assert not lane.relay_up
        kiosk.type_phone(PHONE)
        lane.settle()
        assert not lane.relay_up  # asked again, waiting for the gateway
        lane.step(milliseconds=DEADLINE_MS)
        assert lane.relay_up, "barrier up for the phone identity"
        identity = NoPlateId.for_phone(PHONE, site_key=bytes.fromhex(KEY))
        assert controller.last_identity == identity
        request = controller.last_decide_request
        assert request is not None and request.plate is None
        assert request.identity == identity.text
        first, second = lane.events("decision")
        assert (first["action"], second["action"]) == ("refuse", "open")
        assert second["reason"] == "offline_no_plate_entry"
        assert second["identity"] == identity.text and second["plate"] is None
        assert any("尾号5678" in zh for zh, _en in screen.shown)


def test_at_the_exit_the_number_is_confirmed_and_a_payment_code_is_journaled(
    tmp_path: Path,
) -> None:
    kiosk, screen = SimulatedKiosk(), RecordingDisplay()
    with start_lane(tmp_path, "out1", "exit", kiosk, screen) as lane:
        controller = lane.controller
        refused_after_the_deadline(lane)
        kiosk.type_phone(PHONE)
        lane.settle()
        assert screen.current == LastFourDigits().challenge(PHONE, NoPlateId(
            "#P0000:AAAAAAAAAAAA", "phone")).shown
        kiosk.type_digits("1234")
        lane.settle()
        assert screen.current == ("尾号不符 请重新输入", "Not confirmed: please try again")
        assert len(lane.events("decision")) == 1 and controller.last_identity is None
        kiosk.type_phone(PHONE)
        kiosk.type_digits("5678")
        lane.settle()
        assert controller.last_identity is not None, "confirmed identity"
        lane.step(milliseconds=DEADLINE_MS)
        assert len(lane.events("decision")) == 2
        kiosk.scan("134567890123456789")  # a WeChat Pay code shown by the driver
        lane.settle()
        code = lane.events("payment_code")[0]
        assert code["code"] == "134567890123456789" and code["plate"] is None
        assert any(kind == "payment_code" for _seq, kind, _sent in lane.node.journal.events())


def test_the_last_four_digits_confirm_a_phone_identity() -> None:
    """(One-time codes, made and checked by the gateway: tests/test_kiosk_otp.py.)"""
    identity = NoPlateId.for_phone(PHONE, site_key=bytes.fromhex(KEY))
    assert LastFourDigits().check(identity, "5678") and not LastFourDigits().check(identity, "1")


def test_digits_typed_after_the_kiosk_timeout_confirm_nobody(tmp_path: Path) -> None:
    """``[timing] kiosk_timeout_s``: a prompt left standing does not confirm a number later
    (the driver walked off to find the phone; whoever types next starts again)."""
    kiosk, screen = SimulatedKiosk(), RecordingDisplay()
    with start_lane(tmp_path, "out1", "exit", kiosk, screen) as lane:
        controller = lane.controller
        refused_after_the_deadline(lane)
        kiosk.type_phone(PHONE)
        lane.settle()
        lane.step(seconds=LaneTiming().kiosk_timeout_s + 1)
        kiosk.type_digits("5678")  # right digits, too late
        lane.settle()
        assert screen.current == ("确认超时 请重新输入手机号",
                                  "Took too long: type your number again")
        assert controller.last_identity is None and len(lane.events("decision")) == 1
        kiosk.type_phone(PHONE)  # in time this time
        lane.settle()
        lane.step(seconds=LaneTiming().kiosk_timeout_s - 1)
        kiosk.type_digits("5678")
        lane.settle()
        assert controller.last_identity == NoPlateId.for_phone(PHONE,
                                                               site_key=bytes.fromhex(KEY))
