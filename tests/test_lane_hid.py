"""The kiosk's USB keypad and QR/付款码 scanner through evdev (firmware/lane/devices/hid.py).

The physical edge is faked with recorded event streams (tests/hid_recording.py): real
``evdev.InputEvent`` objects in the order the kernel delivers a HID keyboard's reports,
replayed by a device that can be unplugged and plugged back. A test on ``/dev/uinput``
(a virtual device the kernel itself feeds through evdev) runs where uinput exists.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from evdev import InputEvent, ecodes
from pydantic import SecretStr, ValidationError

from firmware.lane.config import KioskSettings, LaneTiming
from firmware.lane.devices.hid import HidInput, KeyDecoder, LineAssembler, open_evdev
from firmware.lane.devices.hid_kiosk import kiosk_devices, kiosk_selftest
from firmware.lane.devices.keypad import UsbKeypad, classify_keypad
from firmware.lane.devices.scanner import UsbScanner
from firmware.lane.kiosk import KioskInput
from firmware.lane.states import State
from parkguard.core.plates import NoPlateId
from tests.helpers import eventually
from tests.hid_recording import RecordedDevice, UsbPort, load, typed
from tests.lane_harness import MemoryLane

KEY = "11" * 32
SCANNER = "/dev/input/by-id/usb-Scanner-event-kbd"
KEYPAD = "/dev/input/by-id/usb-Keypad-event-kbd"


class Inputs:
    """What a device handed the lane, and its faults, with events to wait on."""

    def __init__(self, device: HidInput) -> None:
        self.items: list[KioskInput] = []
        self.faults: list[tuple[str, str]] = []
        self._changed = threading.Condition()
        device.when_input(self._item)
        device.when_fault(self._fault)

    def _item(self, item: KioskInput) -> None:
        with self._changed:
            self.items.append(item)
            self._changed.notify_all()

    def _fault(self, code: str, detail: str) -> None:
        with self._changed:
            self.faults.append((code, detail))
            self._changed.notify_all()

    def wait(self, items: int = 0, faults: int = 0, timeout: float = 30.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.items) >= items
                                          and len(self.faults) >= faults, timeout):
                raise AssertionError(f"got {self.items} {self.faults}")

    def kinds(self) -> list[tuple[str, str]]:
        return [(item.kind, item.text) for item in self.items]


@contextmanager
def running(device: HidInput) -> Iterator[HidInput]:
    device.start()
    try:
        yield device
    finally:
        device.close()


def key(code: int, value: int, sec: float = 0.0) -> InputEvent:
    return InputEvent(int(sec), int((sec % 1) * 1_000_000), ecodes.EV_KEY, code, value)


# decoding -----------------------------------------------------------------------------------


def test_shift_caps_lock_repeat_and_other_keys_decode_as_a_us_keyboard() -> None:
    decoder = KeyDecoder()
    e = ecodes
    events = [key(e.KEY_RIGHTSHIFT, 1), key(e.KEY_A, 1), key(e.KEY_A, 2), key(e.KEY_A, 0),
              key(e.KEY_2, 1), key(e.KEY_RIGHTSHIFT, 0), key(e.KEY_2, 1),
              key(e.KEY_CAPSLOCK, 1), key(e.KEY_B, 1), key(e.KEY_LEFTSHIFT, 1), key(e.KEY_C, 1),
              key(e.KEY_MINUS, 1), key(e.KEY_LEFTSHIFT, 0), key(e.KEY_F5, 1), key(e.KEY_KP7, 1),
              InputEvent(0, 0, e.EV_MSC, e.MSC_SCAN, 0x70004), key(e.KEY_KPENTER, 1)]
    tokens = [decoder.feed(event) for event in events]
    assert "".join(t for t in tokens if t is not None) == "A@2Bc_7\n"


def test_backspace_clear_and_a_half_typed_line_timing_out() -> None:
    lines = LineAssembler(gap_s=0.5)
    assert [lines.feed(c, 0.1 * i) for i, c in enumerate("12\b3\n")][-1] == "13"
    assert [lines.feed(c, 1.0) for c in "99\x1b7\n"][-1] == "7"
    assert lines.feed("4", 2.0) is None
    assert lines.feed("5", 2.6) is None  # 0.6 s after the 4: the 4 was a cut-short scan
    assert lines.feed("\n", 2.7) == "5" and lines.timed_out == 1


def test_keypad_lines_are_classified_by_their_shape() -> None:
    assert classify_keypad("13800135678") == KioskInput("phone", "13800135678")
    assert classify_keypad("482910") == KioskInput("digits", "482910")
    assert classify_keypad("12") == KioskInput("phone", "12")  # the lane says 号码无效
    assert classify_keypad(" ") is None


# recorded streams ---------------------------------------------------------------------------


def test_a_recorded_scanner_stream_gives_payment_codes_and_a_ticket() -> None:
    """The fixture holds a scan cut short (then 2 s of nothing), a WeChat Pay code, a QR
    ticket with capitals and dashes, and an Alipay code held on the glass (auto-repeat)."""
    device = RecordedDevice("USB 2D Barcode Scanner")
    scanner = UsbScanner(SCANNER, opener=UsbPort(device))
    got = Inputs(scanner)
    with running(scanner):
        device.play(load("scanner-codes.evtest"))
        got.wait(items=3)
    assert got.kinds() == [("payment_code", "134567890123456789"),
                           ("ticket", "PG1-8F2K-31QZ"),
                           ("payment_code", "284567890123456789")]
    assert scanner.lines.timed_out == 1 and got.faults == []
    assert scanner.device_name == "USB 2D Barcode Scanner"


def test_a_recorded_keypad_stream_gives_a_phone_number_and_code_digits() -> None:
    """A wrong digit taken back with Backspace, a held key (auto-repeat), ``#`` as Enter."""
    device = RecordedDevice("USB Numeric Keypad")
    keypad = UsbKeypad(KEYPAD, opener=UsbPort(device))
    got = Inputs(keypad)
    with running(keypad):
        device.play(load("keypad-phone-and-code.evtest"))
        got.wait(items=2)
    assert got.kinds() == [("phone", "13800135678"), ("digits", "482910")]


def test_unplugged_is_a_fault_and_the_device_is_read_again_when_it_returns() -> None:
    port = UsbPort(RecordedDevice("USB 2D Barcode Scanner"))
    scanner = UsbScanner(SCANNER, opener=port, reopen_s=0.01)
    got = Inputs(scanner)
    with running(scanner):
        assert scanner.connected.wait(30)
        first = port.device
        assert first is not None
        first.play(typed("1345678"))  # half a code, then the cable is pulled
        port.unplug()
        got.wait(faults=1)
        assert got.faults[0][0] == "kiosk_device_lost"
        assert SCANNER in got.faults[0][1]
        assert first.closed.is_set()
        again = RecordedDevice("USB 2D Barcode Scanner")
        port.plug(again)
        got.wait(faults=2)
        assert got.faults[1][0] == "kiosk_device_back"
        again.play(typed("90123456789\n"))
        again.play(typed("134567890123456789\n", start_us=1_765_000_100_000_000))
        got.wait(items=2)
    # The half code before the unplug is not glued to what came after.
    assert got.kinds() == [("ticket", "90123456789"), ("payment_code", "134567890123456789")]
    assert port.opens == 2


def test_a_device_missing_at_start_is_reported_once_and_picked_up_when_plugged() -> None:
    port = UsbPort()
    keypad = UsbKeypad(KEYPAD, opener=port, reopen_s=0.01)
    got = Inputs(keypad)
    with running(keypad):
        got.wait(faults=1)
        assert got.faults == [("kiosk_device_lost",
                               f"keypad {KEYPAD}: not found at start: No such file or "
                               "directory; retrying")]
        device = RecordedDevice("USB Numeric Keypad")
        port.plug(device)
        got.wait(faults=2)
        device.play(typed("5678\n", keypad=True))
        got.wait(items=1)
    assert got.kinds() == [("digits", "5678")]
    assert [code for code, _ in got.faults] == ["kiosk_device_lost", "kiosk_device_back"]


def test_the_real_evdev_opener_says_when_a_device_is_not_there(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_evdev("/dev/input/by-id/usb-nothing-event-kbd")
    if not os.path.isdir("/dev/input"):
        with pytest.raises(FileNotFoundError):
            open_evdev("No Such Scanner")


# configuration ------------------------------------------------------------------------------


def test_the_config_names_the_devices_and_a_bad_path_fails_naming_the_field() -> None:
    assert kiosk_devices(KioskSettings()) == (None, None)
    keypad, scanner = kiosk_devices(KioskSettings(keypad=KEYPAD, scanner=SCANNER))
    assert isinstance(keypad, UsbKeypad) and isinstance(scanner, UsbScanner)
    assert (keypad.spec, scanner.spec, scanner.lines.gap_s) == (KEYPAD, SCANNER, 0.5)
    both, none = kiosk_devices(KioskSettings(keypad=KEYPAD, scanner=KEYPAD))
    assert isinstance(both, UsbScanner) and both.role == "kiosk" and none is None
    with pytest.raises(ValidationError, match="keypad '/home/kbd': a path must be under"):
        KioskSettings(keypad="/home/kbd")


def test_one_device_that_is_keypad_and_scanner_tells_codes_from_typed_digits() -> None:
    device = RecordedDevice("Kiosk")
    both, _ = kiosk_devices(KioskSettings(keypad=KEYPAD, scanner=KEYPAD),
                            opener=UsbPort(device))
    assert both is not None
    got = Inputs(both)
    with running(both):
        device.play(typed("13800135678\n5678\n134567890123456789\nPG1-8F2K-31QZ\n"))
        got.wait(items=4)
    assert [kind for kind, _ in got.kinds()] == ["phone", "digits", "payment_code", "ticket"]


# on a lane ----------------------------------------------------------------------------------


def test_a_lane_takes_a_phone_number_from_the_keypad_and_reports_an_unplugged_scanner(
    tmp_path: Path,
) -> None:
    """A no-plate car at an entry on mock pins (gateway silent: the lane decides alone); the
    number comes from the recorded keypad stream; the scanner's cable is then pulled."""
    keypad_device = RecordedDevice("USB Numeric Keypad")
    keypad = UsbKeypad(KEYPAD, opener=UsbPort(keypad_device))
    scanner = UsbScanner(SCANNER, opener=UsbPort(), reopen_s=0.01)  # not plugged in
    with MemoryLane(tmp_path, lane="in9", direction="entry", keypad=keypad, scanner=scanner,
                    timing=LaneTiming(decide_deadline_ms=50),
                    kiosk=KioskSettings(site_key=SecretStr(KEY))) as lane:
        lane.pins.arming.drive_high()  # the camera sees no plate
        lane.settle()
        lane.step(milliseconds=50)
        assert lane.controller.machine.state is State.REFUSED
        keypad_device.play(typed("1389\b00135678\n", keypad=True))
        eventually(lambda: (request := lane.controller.last_decide_request) is not None
                   and request.identity is not None,
                   what="a decide request with the phone identity", timeout=30)
        lane.settle()
        lane.step(milliseconds=50)
        assert lane.relay_up, "barrier up for the phone identity"
        assert lane.controller.last_identity == NoPlateId.for_phone(
            "13800135678", site_key=bytes.fromhex(KEY))
        eventually(lambda: "kiosk_device_lost" in lane.faults(), what="the scanner's fault",
                   timeout=30)
        assert lane.faults().count("kiosk_device_lost") == 1
        assert "scanner " + SCANNER in lane.events("fault")[0]["detail"]


def test_lane_node_closes_the_devices_it_started(tmp_path: Path) -> None:
    device = RecordedDevice("USB Numeric Keypad")
    keypad = UsbKeypad(KEYPAD, opener=UsbPort(device))
    with MemoryLane(tmp_path, keypad=keypad):
        assert keypad.connected.wait(30)
    assert device.closed.wait(30)


# uinput: the kernel's own evdev path, where it exists ---------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/uinput"),
                    reason="/dev/uinput absent (no uinput module in this kernel or container): "
                           "the recorded streams above stand in for the device")
def test_a_virtual_uinput_scanner_is_read_through_the_real_evdev_path() -> None:
    from evdev import UInput

    keys = [code for code in ecodes.keys if isinstance(code, int) and code < 0x100]
    with UInput({ecodes.EV_KEY: keys}, name="parkguard-test-scanner") as virtual:
        scanner = UsbScanner("parkguard-test-scanner")  # found by name, grabbed
        got = Inputs(scanner)
        with running(scanner):
            assert scanner.connected.wait(30)
            for event in typed("134567890123456789\n"):
                if event.type == ecodes.EV_KEY:
                    virtual.write(ecodes.EV_KEY, event.code, event.value)
                    virtual.syn()
            got.wait(items=1)
    assert got.kinds() == [("payment_code", "134567890123456789")]


# commissioning ------------------------------------------------------------------------------


def test_the_selftest_finds_each_device_and_sees_what_the_installer_types() -> None:
    keypad_device = RecordedDevice("USB Numeric Keypad")
    ports = {KEYPAD: UsbPort(keypad_device), SCANNER: UsbPort()}  # the scanner: not plugged

    def opener(spec: str) -> RecordedDevice:
        return ports[spec](spec)

    prompts: list[str] = []

    def installer(prompt: str) -> str:
        prompts.append(prompt)
        keypad_device.play(typed("1234\n", keypad=True))
        return ""

    results = kiosk_selftest(KioskSettings(keypad=KEYPAD, scanner=SCANNER), installer, 30,
                             opener=opener)  # returns as soon as each thing happened
    assert results == [(f"keypad found ({KEYPAD})", True), ("keypad typed (digits)", True),
                       (f"scanner found ({SCANNER})", False)]
    assert prompts == ["type 1 2 3 4 and Enter on the keypad, then press Enter here "
                       "(waiting 30 s)"]
