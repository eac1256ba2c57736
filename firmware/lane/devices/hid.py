"""USB HID kiosk devices (keypad, QR/付款码 scanner) read through Linux evdev.

A USB barcode scanner and a USB numeric keypad are both HID *keyboards*: the kernel turns
their reports into key events (``EV_KEY``: 1 down, 0 up, 2 auto-repeat), each report
closed by a ``SYN_REPORT``. A scanner "types" the code's characters and then Enter; a
keypad types digits, Backspace and Enter as a person presses them. This module turns those
key events back into text with a US layout (both kinds ship configured for it) and Shift,
and hands each finished line to a classifier (:mod:`firmware.lane.devices.keypad`,
:mod:`firmware.lane.devices.scanner`) that makes it a :class:`~firmware.lane.kiosk.KioskInput`.

Why not read the keys from a console: the lane grabs the device (``EVIOCGRAB``), so a code
typed into the kiosk never reaches a login prompt, and it reads key codes, not characters
shaped by whatever keymap the OS has.

:class:`HidInput` owns one device: a thread that opens it (by ``/dev/input/...`` path, or by
the name the device reports), reads, and when the device goes away (unplugged, ``ENODEV``)
reports a fault, keeps looking for it and reports when it is back (to ``when_fault``
listeners, and as a :class:`~firmware.lane.devices.health.HealthReporter`, which the lane
publishes: ``fault kiosk_device_lost``, then ``fault_cleared``). The physical edge is
:data:`Opener` → :class:`EventSource`: :func:`open_evdev` on a lane, a recorded event stream
in tests (``tests/hid_recording.py``; ``/dev/uinput`` is not available everywhere).

>>> from evdev import InputEvent, ecodes as e
>>> decoder, lines = KeyDecoder(), LineAssembler(gap_s=1.0)
>>> keys = [(e.KEY_LEFTSHIFT, 1), (e.KEY_P, 1), (e.KEY_P, 0), (e.KEY_LEFTSHIFT, 0),
...         (e.KEY_G, 1), (e.KEY_G, 2), (e.KEY_G, 0), (e.KEY_1, 1), (e.KEY_ENTER, 1)]
>>> tokens = [decoder.feed(InputEvent(0, 0, e.EV_KEY, code, value)) for code, value in keys]
>>> [lines.feed(token, 0.0) for token in tokens if token is not None][-1]
'Pg1'
"""

from __future__ import annotations

import errno
import logging
import select
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, Protocol

from evdev import InputDevice, InputEvent, ecodes

from firmware.lane.devices.health import HealthListener, HealthSignal

if TYPE_CHECKING:
    from firmware.lane.kiosk import KioskInput

log = logging.getLogger(__name__)

LOST: Final = "kiosk_device_lost"
BACK: Final = "kiosk_device_back"
ENTER: Final = "\n"
BACKSPACE: Final = "\b"
CLEAR: Final = "\x1b"

KEY_DOWN: Final = 1
KEY_REPEAT: Final = 2

_SHIFTS: Final = frozenset({ecodes.KEY_LEFTSHIFT, ecodes.KEY_RIGHTSHIFT})
_CONTROL: Final[dict[int, str]] = {
    ecodes.KEY_ENTER: ENTER, ecodes.KEY_KPENTER: ENTER,
    ecodes.KEY_BACKSPACE: BACKSPACE,
    ecodes.KEY_ESC: CLEAR, ecodes.KEY_DELETE: CLEAR,
}


def _us_layout() -> dict[int, tuple[str, str]]:
    """Key code → (plain, with Shift) on a US keyboard, the layout HID scanners default to."""
    keys: dict[int, tuple[str, str]] = {}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        keys[getattr(ecodes, f"KEY_{letter.upper()}")] = (letter, letter.upper())
    for digit, shifted in zip("1234567890", "!@#$%^&*()", strict=True):
        keys[getattr(ecodes, f"KEY_{digit}")] = (digit, shifted)
        keys[getattr(ecodes, f"KEY_KP{digit}")] = (digit, digit)  # the keypad's digits
    for name, plain, shifted in (
        ("MINUS", "-", "_"), ("EQUAL", "=", "+"), ("LEFTBRACE", "[", "{"),
        ("RIGHTBRACE", "]", "}"), ("BACKSLASH", "\\", "|"), ("SEMICOLON", ";", ":"),
        ("APOSTROPHE", "'", '"'), ("GRAVE", "`", "~"), ("COMMA", ",", "<"),
        ("DOT", ".", ">"), ("SLASH", "/", "?"), ("SPACE", " ", " "),
        ("KPASTERISK", "*", "*"), ("KPMINUS", "-", "-"), ("KPPLUS", "+", "+"),
        ("KPDOT", ".", "."), ("KPSLASH", "/", "/"),
    ):
        keys[getattr(ecodes, f"KEY_{name}")] = (plain, shifted)
    return keys


US_LAYOUT: Final = _us_layout()


class KeyDecoder:
    """Key events → characters and the control tokens :data:`ENTER`, :data:`BACKSPACE`,
    :data:`CLEAR` (Esc, Delete). Only key-down makes a character: auto-repeat (value 2) and
    key-up are ignored, so a scanner held on a code or a stuck key types it once. Shift
    (either) and Caps Lock (letters only) are tracked; other keys (F-keys, arrows, Num Lock)
    and other event types (``EV_MSC``, ``EV_SYN``, LEDs) are ignored."""

    def __init__(self) -> None:
        self._shift_down: set[int] = set()
        self._caps = False

    def reset(self) -> None:
        """Forget held modifiers (the device was reopened: its keys are all up)."""
        self._shift_down.clear()
        self._caps = False

    def feed(self, event: InputEvent) -> str | None:
        if event.type != ecodes.EV_KEY:
            return None
        code, value = event.code, event.value
        if code in _SHIFTS:
            if value == KEY_DOWN:
                self._shift_down.add(code)
            elif value == 0:
                self._shift_down.discard(code)
            return None
        if value != KEY_DOWN:
            return None
        if code == ecodes.KEY_CAPSLOCK:
            self._caps = not self._caps
            return None
        control = _CONTROL.get(code)
        if control is not None:
            return control
        pair = US_LAYOUT.get(code)
        if pair is None:
            return None
        shifted = bool(self._shift_down)
        if self._caps and pair[0].isalpha():
            shifted = not shifted
        return pair[1] if shifted else pair[0]


class LineAssembler:
    """Characters → lines ended by Enter. Backspace takes the last character back, Clear
    (Esc/Delete) drops the line. A line left half-typed for longer than ``gap_s`` between two
    keys (a scan cut short, a driver who walked away) is dropped when the next key comes, so
    its digits never prefix the next code. Times are the events' own timestamps (seconds)."""

    def __init__(self, *, gap_s: float, max_length: int = 256) -> None:
        self.gap_s = gap_s
        self.max_length = max_length
        self._chars: list[str] = []
        self._last_at: float | None = None
        self.timed_out = 0
        """How many half-typed lines were dropped for the gap."""

    @property
    def pending(self) -> str:
        return "".join(self._chars)

    def feed(self, token: str, at: float) -> str | None:
        """One token typed at ``at``; the finished line on Enter (may be empty), else None."""
        if self._chars and self._last_at is not None and at - self._last_at > self.gap_s:
            self.timed_out += 1
            log.info("hid: a half-typed line of %d characters timed out", len(self._chars))
            self._chars.clear()
        self._last_at = at
        if token == ENTER:
            line = "".join(self._chars)
            self._chars.clear()
            return line
        if token == BACKSPACE:
            if self._chars:
                self._chars.pop()
        elif token == CLEAR:
            self._chars.clear()
        elif len(self._chars) < self.max_length:
            self._chars.append(token)
        return None

    def reset(self) -> None:
        self._chars.clear()
        self._last_at = None


class EventSource(Protocol):
    """An open input device: its name, and its events as the kernel delivers them."""

    @property
    def name(self) -> str: ...

    def read(self, timeout_s: float) -> Sequence[InputEvent]:
        """Events available within ``timeout_s`` (maybe none); raises ``OSError`` once the
        device is gone (``ENODEV`` when unplugged)."""
        ...

    def close(self) -> None: ...


Opener = Callable[[str], EventSource]
"""Opens a device by path or name; raises ``OSError`` when it is not there or not ours."""


class EvdevSource:
    """A real ``/dev/input/event*`` device, grabbed for this process alone."""

    def __init__(self, device: InputDevice[str]) -> None:
        self._device = device
        try:
            device.grab()  # nobody else (a console, X) sees what the kiosk types
        except OSError:
            device.close()
            raise

    @property
    def name(self) -> str:
        return str(self._device.name)

    def read(self, timeout_s: float) -> Sequence[InputEvent]:
        ready, _, _ = select.select([self._device.fd], [], [], timeout_s)
        if not ready:
            return []
        try:
            return list(self._device.read())
        except BlockingIOError:
            return []

    def close(self) -> None:
        try:
            self._device.ungrab()
        except OSError:
            pass  # gone already
        self._device.close()


def open_evdev(spec: str) -> EventSource:
    """Open a device by path (``/dev/input/by-id/...``, stable across reboots and ports) or,
    when ``spec`` is not a path, by the name the device reports (``evdev.list_devices``)."""
    import evdev

    if spec.startswith("/"):
        return EvdevSource(InputDevice(spec))
    for path in evdev.list_devices():
        try:
            device = InputDevice(path)
        except OSError:
            continue
        if device.name == spec:
            return EvdevSource(device)
        device.close()
    raise FileNotFoundError(errno.ENOENT, "no input device with that name", spec)


FaultListener = Callable[[str, str], None]
"""``(code, detail)``: a device went away (``kiosk_device_lost``) or came back
(``kiosk_device_back``). The lane listens to :meth:`HidInput.when_health` instead and
publishes ``fault kiosk_device_lost``, then ``fault_cleared kiosk_device_lost``."""


class HidInput:
    """One HID keyboard-like device on a thread of its own: lines typed on it are classified
    and given to the lane's listeners (:class:`~firmware.lane.kiosk.InputSource`).

    ``classify`` turns a finished line into an input, or None to ignore it. ``reopen_s``: how
    often a missing device is looked for again. ``confirm_keys``/``clear_keys``: characters
    that act as Enter/Clear on this device (a kiosk keypad's ``#`` and ``*``)."""

    def __init__(self, spec: str, *, role: str, classify: Callable[[str], KioskInput | None],
                 gap_s: float, opener: Opener = open_evdev, reopen_s: float = 2.0,
                 read_s: float = 0.5, confirm_keys: frozenset[str] = frozenset(),
                 clear_keys: frozenset[str] = frozenset()) -> None:
        self.spec = spec
        self.role = role
        self._classify = classify
        self._opener = opener
        self._reopen_s = reopen_s
        self._read_s = read_s
        self._controls = {**dict.fromkeys(confirm_keys, ENTER), **dict.fromkeys(clear_keys, CLEAR)}
        self._decoder = KeyDecoder()
        self.lines = LineAssembler(gap_s=gap_s)
        self._listeners: list[Callable[[KioskInput], None]] = []
        self._fault_listeners: list[FaultListener] = []
        self._health = HealthSignal(f"{role} {spec}", LOST)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.tried = threading.Event()
        """Set once the device was first looked for (found or not)."""
        self.device_name: str | None = None

    def when_input(self, listener: Callable[[KioskInput], None]) -> None:
        self._listeners.append(listener)

    def when_fault(self, listener: FaultListener) -> None:
        self._fault_listeners.append(listener)

    def when_health(self, listener: HealthListener) -> None:
        """The same changes as :meth:`when_fault`, as device health (lost: faulted; back:
        working), which is what the lane controller listens to."""
        self._health.listen(listener)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"hid-{self.role}")
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._read_s + 2)
            self._thread = None

    def feed(self, events: Sequence[InputEvent]) -> None:
        """Decode events (the reader thread; tests may call it directly)."""
        for event in events:
            token = self._decoder.feed(event)
            if token is None:
                continue
            line = self.lines.feed(self._controls.get(token, token), event.timestamp())
            if line is None:
                continue
            item = self._classify(line)
            if item is not None:
                for listener in list(self._listeners):
                    listener(item)

    def _fault(self, code: str, detail: str) -> None:
        said = f"{self.role} {self.spec}: {detail}"[:512]
        if code == LOST:
            self._health.faulted(said)
        else:
            self._health.working(said)
        for listener in list(self._fault_listeners):
            try:
                listener(code, said)
            except Exception:
                log.exception("hid %s: fault listener failed", self.role)

    def _run(self) -> None:
        lost_reported = False
        first = True
        while not self._stop.is_set():
            try:
                source = self._opener(self.spec)
            except OSError as error:
                self.tried.set()
                if not lost_reported:
                    self._fault(LOST, _why(error, first=first))
                    lost_reported = True
                first = False
                self._stop.wait(self._reopen_s)
                continue
            if lost_reported:
                self._fault(BACK, f"back as {source.name!r}")
                lost_reported = False
            first = False
            self._read_until_gone(source)
            if not self._stop.is_set():
                self._fault(LOST, "unplugged or failed; waiting for it to return")
                lost_reported = True

    def _read_until_gone(self, source: EventSource) -> None:
        self.device_name = source.name
        self._decoder.reset()
        self.lines.reset()
        self.connected.set()
        self.tried.set()
        log.info("hid %s: reading %s (%s)", self.role, self.spec, source.name)
        try:
            while not self._stop.is_set():
                self.feed(source.read(self._read_s))
        except OSError as error:
            log.warning("hid %s: %s gone: %s", self.role, self.spec, error)
        finally:
            self.connected.clear()
            try:
                source.close()
            except OSError:
                pass


def _why(error: OSError, *, first: bool) -> str:
    when = "not found at start" if first else "cannot be reopened"
    if isinstance(error, PermissionError):
        return f"{when}: permission denied (add the lane's user to the 'input' group)"
    if error.errno == errno.EBUSY:
        return f"{when}: grabbed by another program"
    return f"{when}: {error.strerror or error}; retrying"
