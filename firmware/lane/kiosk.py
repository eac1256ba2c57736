"""The no-plate kiosk seams: the keypad (phone number, confirmation digits) and the scanner
(QR ticket, offline payment code), plus the exit confirmation seam.

A real lane drives a USB/serial keypad and a barcode scanner behind :class:`InputSource`;
tests and the simulator use :class:`SimulatedKiosk`. Inputs arrive on the device's thread;
the lane queues them and its worker acts on them (only while the arming loop holds a
vehicle: a number typed at an empty lane is refused).

How a driver without a readable plate gets through (docs/lane.md):

- **entry**: types a mobile number (or scans a QR ticket) → the lane asks the gateway (or its
  replica) again with the no-plate identity :class:`~parkguard.core.plates.NoPlateId`;
- **exit**: types the same number → the lane asks for its last four digits
  (:class:`LastFourDigits`) or a one-time code sent to the phone (:class:`OneTimeCode`,
  through a :data:`CodeSender` the gateway provides), then decides with the identity; a
  scanned QR ticket needs no confirmation;
- an **offline payment code** scanned at the lane is captured as a ``payment_code`` event
  (journaled first, like every event) for the gateway to charge.

Must override: ``InputSource.when_input``; ``Confirmation.challenge`` and ``.check``.

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
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from parkguard.core.payments import payment_code_wallet
from parkguard.core.plates import NoPlateId

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


def classify_scan(code: str) -> KioskInput:
    """A scanned code: a wallet's payment code (付款码) if it looks like one, else a ticket."""
    cleaned = code.strip()
    try:
        payment_code_wallet(cleaned)
    except ValueError:
        return KioskInput("ticket", cleaned)
    return KioskInput("payment_code", cleaned)


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


class Confirmation(Protocol):
    """How an exit confirms that the driver owns the phone identity they typed."""

    def challenge(self, phone: str, identity: NoPlateId) -> tuple[str, str]:
        """Start a confirmation; return the prompt (zh, en) the display shows."""
        ...

    def check(self, identity: NoPlateId, typed: str) -> bool:
        """Whether ``typed`` confirms ``identity`` (one try per challenge)."""
        ...


class LastFourDigits:
    """Confirm with the number's last four digits (尾号), which the identity keeps."""

    def challenge(self, phone: str, identity: NoPlateId) -> tuple[str, str]:
        return "请输入手机尾号4位确认", "Confirm: last 4 digits of your phone"

    def check(self, identity: NoPlateId, typed: str) -> bool:
        digits = "".join(char for char in typed if char.isdigit())
        return identity.kind == "phone" and hmac.compare_digest(digits, identity.text[2:6])


CodeSender = Callable[[str, str], None]
"""``(phone number, code)``: sends a one-time code to the phone (the gateway's SMS seam)."""


class OneTimeCode:
    """Confirm with a 6-digit code sent to the phone; the lane never shows or logs it."""

    def __init__(self, sender: CodeSender) -> None:
        self._sender = sender
        self._codes: dict[str, str] = {}
        self._lock = threading.Lock()

    def challenge(self, phone: str, identity: NoPlateId) -> tuple[str, str]:
        code = f"{secrets.randbelow(1_000_000):06d}"
        with self._lock:
            self._codes[identity.text] = code
        self._sender(phone, code)
        return "请输入短信验证码", "Enter the code sent to your phone"

    def check(self, identity: NoPlateId, typed: str) -> bool:
        with self._lock:
            code = self._codes.pop(identity.text, None)
        return code is not None and hmac.compare_digest(code, typed.strip())
