"""The physical edge of the kiosk's USB devices, faked: key events as the kernel delivers them.

``/dev/uinput`` (virtual input devices) is not available on every machine that runs the
tests, so the keypad and scanner are tested with *recorded event streams*: real
``evdev.InputEvent`` objects with the kernel's types and codes (``evdev.ecodes``), in the
order a USB HID keyboard produces them: for each key an ``EV_MSC``/``MSC_SCAN`` carrying the
HID usage, the ``EV_KEY`` (1 down, 0 up, 2 repeat), and a ``SYN_REPORT``.

Recordings are kept in ``evtest`` output format (``tests/fixtures/hid/*.evtest``), so one taken
from a real device on a Pi (``sudo evtest /dev/input/by-id/... > file``) drops in beside them.
The committed ones were made by :func:`typed` below (``python -m tests.hid_recording``): they
are synthesised in the kernel's format, not captured from a physical scanner.
"""

from __future__ import annotations

import errno
import queue
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from evdev import InputEvent, ecodes

FIXTURES = Path(__file__).parent / "fixtures" / "hid"

_EVENT = re.compile(r"^Event: time (\d+)\.(\d{6}), type (\d+) \(\w+\), code (\d+) \(\w+\), "
                    r"value (-?[0-9a-fA-F]+)$")
_SYN = re.compile(r"^Event: time (\d+)\.(\d{6}), -+ SYN_REPORT -+$")


def parse_evtest(text: str) -> list[InputEvent]:
    """The events of an ``evtest`` recording (its header lines are skipped). evtest prints
    ``EV_MSC`` values in hex, the others in decimal."""
    events: list[InputEvent] = []
    for line in text.splitlines():
        line = line.strip()
        if match := _EVENT.match(line):
            sec, usec, kind, code, raw = match.groups()
            value = int(raw, 16) if int(kind) == ecodes.EV_MSC else int(raw)
            events.append(InputEvent(int(sec), int(usec), int(kind), int(code), value))
        elif match := _SYN.match(line):
            events.append(InputEvent(int(match[1]), int(match[2]), ecodes.EV_SYN,
                                     ecodes.SYN_REPORT, 0))
    return events


def load(name: str) -> list[InputEvent]:
    return parse_evtest((FIXTURES / name).read_text(encoding="utf-8"))


# Writing recordings ---------------------------------------------------------------------

#: HID keyboard-page usages (USB HID Usage Tables, page 0x07) of the keys we type.
_USAGE: dict[int, int] = {
    **{getattr(ecodes, f"KEY_{c}"): 0x04 + i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")},
    **{getattr(ecodes, f"KEY_{d}"): 0x1E + i for i, d in enumerate("123456789")},
    ecodes.KEY_0: 0x27, ecodes.KEY_ENTER: 0x28, ecodes.KEY_ESC: 0x29,
    ecodes.KEY_BACKSPACE: 0x2A, ecodes.KEY_SPACE: 0x2C, ecodes.KEY_MINUS: 0x2D,
    ecodes.KEY_KPASTERISK: 0x55, ecodes.KEY_KPENTER: 0x58,
    **{getattr(ecodes, f"KEY_KP{d}"): 0x59 + i for i, d in enumerate("123456789")},
    ecodes.KEY_KP0: 0x62, ecodes.KEY_LEFTSHIFT: 0xE1,
}
_CHARS: dict[str, tuple[int, bool]] = {
    **{c: (getattr(ecodes, f"KEY_{c.upper()}"), False) for c in "abcdefghijklmnopqrstuvwxyz"},
    **{c: (getattr(ecodes, f"KEY_{c}"), True) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
    **{d: (getattr(ecodes, f"KEY_{d}"), False) for d in "0123456789"},
    "-": (ecodes.KEY_MINUS, False), " ": (ecodes.KEY_SPACE, False), "#": (ecodes.KEY_3, True),
    "\n": (ecodes.KEY_ENTER, False), "\b": (ecodes.KEY_BACKSPACE, False),
    "\x1b": (ecodes.KEY_ESC, False),
}


class _Clock:
    def __init__(self, start_us: int) -> None:
        self.us = start_us

    def event(self, kind: int, code: int, value: int) -> InputEvent:
        return InputEvent(self.us // 1_000_000, self.us % 1_000_000, kind, code, value)


def _key(clock: _Clock, code: int, value: int) -> list[InputEvent]:
    """One HID report: the scan code, the key, the SYN_REPORT, all at one instant."""
    return [clock.event(ecodes.EV_MSC, ecodes.MSC_SCAN, 0x70000 | _USAGE[code]),
            clock.event(ecodes.EV_KEY, code, value),
            clock.event(ecodes.EV_SYN, ecodes.SYN_REPORT, 0)]


def typed(text: str, *, start_us: int = 1_765_000_000_000_000, key_us: int = 4000,
          keypad: bool = False, repeat: Iterable[int] = ()) -> list[InputEvent]:
    """The events of ``text`` typed as a HID keyboard does: each key down then up
    ``key_us`` apart; capitals and ``#`` with Left Shift held; on a ``keypad`` the digits
    and Enter are the keypad's keys. At the indices in ``repeat`` the key is held long
    enough for the kernel's auto-repeat (two value-2 events) before it comes up."""
    clock, events, repeats = _Clock(start_us), [], set(repeat)
    for index, char in enumerate(text):
        code, shift = _CHARS[char]
        if keypad and char.isdigit():
            code = getattr(ecodes, f"KEY_KP{char}")
        if keypad and char == "\n":
            code = ecodes.KEY_KPENTER
        if shift:
            events += _key(clock, ecodes.KEY_LEFTSHIFT, 1)
        events += _key(clock, code, 1)
        if index in repeats:
            for _ in range(2):
                clock.us += 33_000
                events += [clock.event(ecodes.EV_KEY, code, 2),
                           clock.event(ecodes.EV_SYN, ecodes.SYN_REPORT, 0)]
        clock.us += key_us
        events += _key(clock, code, 0)
        if shift:
            events += _key(clock, ecodes.KEY_LEFTSHIFT, 0)
        clock.us += key_us
    return events


def to_evtest(events: Sequence[InputEvent], name: str) -> str:
    """``events`` as ``evtest`` prints them (after a short header naming the device)."""
    lines = [f'Input device name: "{name}"', "Testing ... (interrupt to exit)"]
    for event in events:
        stamp = f"Event: time {event.sec}.{event.usec:06d}"
        if event.type == ecodes.EV_SYN:
            lines.append(f"{stamp}, -------------- SYN_REPORT ------------")
            continue
        type_name = ecodes.EV[event.type]
        code_name = ecodes.bytype[event.type][event.code]
        if isinstance(code_name, list):
            code_name = code_name[0]
        value = f"{event.value:x}" if event.type == ecodes.EV_MSC else str(event.value)
        lines.append(f"{stamp}, type {event.type} ({type_name}), code {event.code} "
                     f"({code_name}), value {value}")
    return "\n".join(lines) + "\n"


def _recordings() -> dict[str, tuple[str, list[InputEvent]]]:
    """What ``python -m tests.hid_recording`` writes to tests/fixtures/hid/."""
    second = 1_000_000
    start = 1_765_101_600 * second  # 2025-12-07 10:00 UTC
    # Scanner: a cut-short scan (9 digits, then nothing for 2 s), a WeChat Pay code, a QR
    # ticket (capitals and dashes: Shift), an Alipay code held on the glass (auto-repeat).
    scanner = (typed("134567890", start_us=start)
               + typed("134567890123456789\n", start_us=start + 2 * second)
               + typed("PG1-8F2K-31QZ\n", start_us=start + 5 * second)
               + typed("284567890123456789\n", start_us=start + 8 * second, repeat=[0]))
    # Keypad: a person typing a phone number with one wrong digit taken back (Backspace),
    # then a held key (auto-repeat), and later six code digits ending with '#'.
    keypad = (typed("1389\b00135678\n", start_us=start, key_us=150_000, keypad=True,
                    repeat=[5])
              + typed("482910#", start_us=start + 40 * second, key_us=150_000, keypad=True))
    return {"scanner-codes.evtest": ("USB 2D Barcode Scanner", scanner),
            "keypad-phone-and-code.evtest": ("USB Numeric Keypad", keypad)}


# The device and the USB port ---------------------------------------------------------------


class RecordedDevice:
    """An open device replaying events (an :class:`~firmware.lane.devices.hid.EventSource`):
    ``read`` hands out one HID report at a time, as the kernel's buffer would fill;
    after :meth:`unplug` it raises ``ENODEV`` like a device whose cable was pulled."""

    _GONE = object()

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.Queue[object] = queue.Queue()
        self.closed = threading.Event()

    @property
    def name(self) -> str:
        return self._name

    def play(self, events: Iterable[InputEvent]) -> None:
        for event in events:
            self._queue.put(event)

    def unplug(self) -> None:
        self._queue.put(self._GONE)

    def read(self, timeout_s: float) -> list[InputEvent]:
        try:
            first = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return []
        batch: list[InputEvent] = []
        item = first
        while True:
            if item is self._GONE:
                if batch:
                    self._queue.put(self._GONE)  # gone after what it had already sent
                    return batch
                raise OSError(errno.ENODEV, "No such device")
            assert isinstance(item, InputEvent)
            batch.append(item)
            if item.type == ecodes.EV_SYN or self._queue.empty():
                return batch
            item = self._queue.get_nowait()

    def close(self) -> None:
        self.closed.set()


class UsbPort:
    """Where the device is (or is not) plugged: the opener a :class:`HidInput` is given."""

    def __init__(self, device: RecordedDevice | None = None) -> None:
        self.device = device
        self.opens = 0
        self.asked = threading.Event()

    def plug(self, device: RecordedDevice) -> None:
        self.device = device

    def unplug(self) -> None:
        if self.device is not None:
            self.device.unplug()
        self.device = None

    def __call__(self, spec: str) -> RecordedDevice:
        self.asked.set()
        if self.device is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", spec)
        self.opens += 1
        return self.device


if __name__ == "__main__":
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for file_name, (device_name, recorded) in _recordings().items():
        (FIXTURES / file_name).write_text(to_evtest(recorded, device_name), encoding="utf-8")
        print(f"wrote {FIXTURES / file_name}: {len(recorded)} events")
