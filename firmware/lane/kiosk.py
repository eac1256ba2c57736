"""The no-plate kiosk seams: the keypad (phone number, confirmation digits) and the scanner
(QR ticket, offline payment code), plus the exit confirmation seam.

A real lane drives a USB/serial keypad and a barcode scanner behind :class:`InputSource`;
tests and the simulator use :class:`SimulatedKiosk`. Inputs arrive on the device's thread;
the lane queues them and its worker acts on them (only while the arming loop holds a
vehicle: a number typed at an empty lane is refused).

How a driver without a readable plate gets through (docs/lane.md):

- **entry**: types a mobile number (or scans a QR ticket) → the lane asks the gateway (or its
  replica) again with the no-plate identity :class:`~parkguard.core.plates.NoPlateId`; with
  ``[kiosk] confirm = "otp"`` first the one-time code sent to that phone
  (:class:`~firmware.lane.kiosk_otp.OneTimeCode`);
- **exit**: types the same number → the lane asks for its last four digits
  (:class:`LastFourDigits`) or a one-time code sent to the phone (the gateway makes, sends
  and checks it, :mod:`firmware.lane.kiosk_otp`), then decides with the identity; a scanned
  QR ticket needs no confirmation;
- a **payment code** (付款码) scanned at an exit is captured as a ``payment_code`` event
  (journaled first, like every event) for the gateway to charge; a car waiting with a fee
  due leaves at once if the lane decided alone, else when the gateway's ``open`` comes.

:class:`KioskDesk` is the lane's side of all this; :class:`AtTheGate` is the car an input
refers to (the one the lane last decided on).

Real keypads and scanners (USB HID, evdev) are :mod:`firmware.lane.devices.hid`; they are
also :class:`DeviceInput` (started and closed by the node, faults reported as events).

Must override: ``InputSource.when_input``; ``Confirmation.challenge``, ``.check`` and
``.lane_times_out``.

>>> kiosk = SimulatedKiosk()
>>> got: list[KioskInput] = []
>>> kiosk.when_input(got.append)
>>> kiosk.type_phone("138 0013 5678"); got[0].kind
'phone'
>>> kiosk.scan("134567890123456789"); got[1].kind
'payment_code'
>>> kiosk.scan("PG1-8F2K-31QZ"); got[2].kind
'ticket'
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, Protocol, runtime_checkable

from firmware.lane.devices.display import TEXTS
from firmware.lane.events import Verdict
from parkguard.clock import Clock
from parkguard.core.payments import payment_code_wallet
from parkguard.core.plates import NoPlateId, PlateError

log = logging.getLogger(__name__)

InputKind = Literal["phone", "digits", "ticket", "payment_code"]


@dataclass(frozen=True, slots=True)
class KioskInput:
    """One thing the driver typed or scanned."""

    kind: InputKind
    text: str

    def __repr__(self) -> str:  # phone numbers are personal data: never in a log line
        shown = self.text if self.kind == "ticket" else f"…{self.text[-4:]}"
        return f"KioskInput({self.kind}, {shown})"


class InputSource(Protocol):
    """A keypad or scanner: calls the listener (on its own thread) with each input."""

    def when_input(self, listener: Callable[[KioskInput], None]) -> None: ...


@runtime_checkable
class DeviceInput(InputSource, Protocol):
    """A real device behind :class:`InputSource`: it has a reader to start and close, and
    reports ``(code, detail)`` when it goes away or comes back (a ``fault`` event)."""

    def when_fault(self, listener: Callable[[str, str], None]) -> None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


def looks_like_payment_code(code: str) -> bool:
    """Whether ``code`` is a wallet's payment code (付款码)."""
    try:
        payment_code_wallet(code.strip())
    except ValueError:
        return False
    return True


def classify_scan(code: str) -> KioskInput:
    """A scanned code: a wallet's payment code (付款码) if it looks like one, else a ticket."""
    cleaned = code.strip()
    if looks_like_payment_code(cleaned):
        return KioskInput("payment_code", cleaned)
    return KioskInput("ticket", cleaned)


class SimulatedKiosk:
    """Keypad and scanner in one, driven by tests and the simulator."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[KioskInput], None]] = []
        self._lock = threading.Lock()

    def when_input(self, listener: Callable[[KioskInput], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def _send(self, item: KioskInput) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(item)

    def type_phone(self, number: str) -> None:
        self._send(KioskInput("phone", number))

    def type_digits(self, digits: str) -> None:
        self._send(KioskInput("digits", digits))

    def scan(self, code: str) -> None:
        self._send(classify_scan(code))


@dataclass(frozen=True, slots=True)
class Answer:
    """What a confirmation says after a challenge or a typed answer: ``ask`` (waiting for
    digits), ``confirmed`` (the identity may be used), ``again`` (wrong, the same challenge
    takes another try) or ``refused`` (start again with the number); ``shown`` goes on the
    display. True only when confirmed."""

    outcome: Literal["ask", "confirmed", "again", "refused"]
    shown: tuple[str, str]

    def __bool__(self) -> bool:
        return self.outcome == "confirmed"


class Confirmation(Protocol):
    """How the kiosk confirms that the driver owns the phone identity they typed; at exits
    always, at entries only where ``at_entry``."""

    at_entry: bool

    def challenge(self, phone: str, identity: NoPlateId) -> Answer:
        """Start a confirmation (usually ``ask`` with the prompt to show)."""
        ...

    def check(self, identity: NoPlateId, typed: str) -> Answer:
        """The driver typed ``typed`` for ``identity``'s challenge."""
        ...

    def lane_times_out(self, identity: NoPlateId) -> bool:
        """Whether the lane holds ``identity``'s challenge to ``[timing] kiosk_timeout_s``
        (a code the gateway checks lives as long as the gateway says instead)."""
        ...


class LastFourDigits:
    """Confirm with the number's last four digits (尾号), which the identity keeps; entries
    need no confirmation (one try per challenge)."""

    at_entry = False
    PROMPT: Final = ("请输入手机尾号4位确认", "Confirm: last 4 digits of your phone")

    def challenge(self, phone: str, identity: NoPlateId) -> Answer:
        return Answer("ask", self.PROMPT)

    def check(self, identity: NoPlateId, typed: str) -> Answer:
        digits = "".join(char for char in typed if char.isdigit())
        if identity.kind == "phone" and hmac.compare_digest(digits, identity.text[2:6]):
            return Answer("confirmed", self.PROMPT)
        return Answer("refused", TEXTS["kiosk_not_confirmed"])

    def lane_times_out(self, identity: NoPlateId) -> bool:
        return True


@dataclass(slots=True)
class AtTheGate:
    """The car the lane last decided on: what a kiosk input or a payment code refers to.

    ``verdict`` and ``correlation_id`` are its decision's; ``paid_offline`` is set when a
    付款码 was taken for it while the lane decided alone (the gate then lets it go)."""

    arrival: int
    plate: str | None
    fee_fen: int
    identity: NoPlateId | None = None
    confirming: tuple[NoPlateId, datetime] | None = None  # awaiting its digits since
    verdict: Verdict | None = None
    correlation_id: str = ""
    paid_offline: bool = False

    @property
    def payment_due(self) -> bool:
        return self.verdict is not None and self.verdict.payment_due


class KioskDesk:
    """The lane's side of the kiosk: queues inputs (device threads), captures payment codes
    wherever the worker waits, and turns a waiting driver's input into a no-plate identity.

    Only a car on the arming loop may use the kiosk; a number typed at an empty lane, or
    anything but a payment code while no car waits at the barrier, is answered on the display.
    """

    def __init__(self, *, direction: str, site_key: str | None, confirmation: Confirmation,
                 show: Callable[..., None], vehicle_present: Callable[[], bool],
                 waiting: Callable[[], bool], wake: Callable[[], None],
                 payment_code: Callable[[str, AtTheGate], None], clock: Clock,
                 confirm_within_s: float,
                 fault: Callable[[str, str], None] | None = None) -> None:
        self._clock = clock
        self._confirm_within = timedelta(seconds=confirm_within_s)
        self._direction = direction
        self._site_key = site_key
        self._confirmation = confirmation
        self._show = show
        self._vehicle_present = vehicle_present
        self._waiting = waiting
        self._wake = wake
        self._payment_code = payment_code
        self._inputs: deque[KioskInput] = deque()
        self._fault = fault
        self._faults: deque[tuple[str, str]] = deque()
        self.gate: AtTheGate | None = None
        self.last_identity: NoPlateId | None = None

    def on_input(self, item: KioskInput) -> None:
        """A keypad or scanner thread: queue it for the worker."""
        self._inputs.append(item)
        self._wake()

    def on_fault(self, code: str, detail: str) -> None:
        """A device thread: a keypad or scanner went away or came back; the worker reports it
        (:meth:`report_faults`)."""
        self._faults.append((code, detail))
        self._wake()

    def report_faults(self) -> None:
        """Worker, each time it looks: device faults become ``fault`` events."""
        while self._faults:
            code, detail = self._faults.popleft()
            if self._fault is not None:
                self._fault(code, detail)

    def has_input(self) -> bool:
        return bool(self._inputs)

    def next_input(self) -> KioskInput | None:
        try:
            return self._inputs.popleft()
        except IndexError:
            return None

    def capture_payment_codes(self) -> None:
        """Worker, each time it looks: a payment code becomes a ``payment_code`` event (with
        the plate and fee of the car at the gate, journaled first) for the gateway to charge;
        other inputs wait for the refused car's loop.

        For a car waiting with a fee due: if the gateway decided, it charges the code and
        answers (an ``open`` once paid, or a ``display`` with the decline), so the car keeps
        waiting; if the lane decided alone, the car may go at once (``paid_offline``) and
        the gateway charges the code from the journal later. A code for a car already
        being let go is not captured (it would be charged twice)."""
        kept: deque[KioskInput] = deque()
        while self._inputs:
            item = self._inputs.popleft()
            if item.kind != "payment_code":
                if self._waiting():
                    kept.append(item)  # for the refused car: the gate acts on it
                else:  # only a car waiting at the barrier may use the kiosk
                    self._show(*TEXTS["kiosk_no_vehicle"])
                continue
            gate = self.gate
            if self._direction != "exit" or gate is None or not self._vehicle_present():
                self._show(*TEXTS["kiosk_no_vehicle"])
                continue
            if gate.verdict is not None and gate.verdict.payment_due:
                self._pay_due(item, gate, gate.verdict)
                continue
            self._payment_code(item.text, gate)
            self._show(*TEXTS["payment_code"])
        self._inputs.extendleft(reversed(kept))

    def _pay_due(self, item: KioskInput, gate: AtTheGate, verdict: Verdict) -> None:
        if gate.paid_offline or not self._waiting():
            log.info("payment code for a car already let go: not captured")
            return
        self._payment_code(item.text, gate)
        if verdict.decided_by == "lane":
            gate.paid_offline = True  # Gate.wait_refused opens for it now
            self._show(*TEXTS["payment_code"])
        else:
            self._show(*TEXTS["payment_code_charging"], verdict.pay_url)

    def identity_from(self, item: KioskInput) -> NoPlateId | None:
        """A refused car's driver typed or scanned something: the identity to decide with
        again, or None (a prompt or a refusal is on the display)."""
        gate = self.gate
        if not self._vehicle_present() or gate is None:
            self._show(*TEXTS["kiosk_no_vehicle"])  # only while the arming loop holds a car
            return None
        try:
            identity = self._identity(item, gate)
        except PlateError:
            self._show(*TEXTS["kiosk_bad_input"])
            return None
        if identity is not None:
            self.last_identity = identity
        return identity

    def _identity(self, item: KioskInput, gate: AtTheGate) -> NoPlateId | None:
        if item.kind == "ticket":
            return NoPlateId.for_ticket(item.text)
        if item.kind == "phone":
            if self._site_key is None:
                self._show(*TEXTS["kiosk_unavailable"])
                return None
            phone_id = NoPlateId.for_phone(item.text, site_key=bytes.fromhex(self._site_key))
            if self._direction == "entry" and not self._confirmation.at_entry:
                return phone_id
            gate.confirming = None
            answer = self._confirmation.challenge(item.text, phone_id)
            self._show(*answer.shown)
            if answer.outcome == "confirmed":
                return phone_id
            if answer.outcome == "ask":
                gate.confirming = (phone_id, self._clock.now())
            return None
        if item.kind == "digits" and gate.confirming is not None:
            phone_id, asked = gate.confirming
            if (self._clock.now() - asked > self._confirm_within
                    and self._confirmation.lane_times_out(phone_id)):  # kiosk_timeout_s
                gate.confirming = None  # a stale prompt confirms nobody: start again
                self._show(*TEXTS["kiosk_timed_out"])
                return None
            answer = self._confirmation.check(phone_id, item.text)
            if answer.outcome == "confirmed":
                gate.confirming = None
                return phone_id
            self._show(*answer.shown)
            if answer.outcome == "refused":
                gate.confirming = None  # the driver starts again with the number
            return None
        return None
