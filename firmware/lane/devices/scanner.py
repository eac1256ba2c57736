"""The kiosk's USB QR/barcode scanner: a HID keyboard that types each code and then Enter.

A code is a driver's WeChat/Alipay payment code (付款码: 18 digits, 10-15 WeChat, 25-30
Alipay; :func:`parkguard.core.payments.payment_code_wallet`) or one of our QR tickets;
:func:`firmware.lane.kiosk.classify_scan` tells which. A scanner types a whole code in a few
tens of milliseconds, so a gap of ``gap_s`` (0.5 s) between two characters means the scan was
cut short: its characters are dropped, never glued to the next code. The scanner must end
each code with Enter (its factory default on the ones we know; see hardware/lane-wiring.md).

A kiosk whose keypad and scanner are one USB device (``[kiosk] keypad`` = ``scanner``) gets
one reader that classifies both kinds (:func:`classify_any`).

>>> classify_any("134567890123456789").kind, classify_any("13800135678").kind
('payment_code', 'phone')
"""

from __future__ import annotations

from firmware.lane.devices.hid import HidInput, Opener, open_evdev
from firmware.lane.devices.keypad import classify_keypad
from firmware.lane.kiosk import KioskInput, classify_scan, looks_like_payment_code


def classify_scanned(line: str) -> KioskInput | None:
    code = line.strip()
    return classify_scan(code) if code else None


def classify_any(line: str) -> KioskInput | None:
    """A device that is keypad and scanner at once: a payment code or a ticket (anything not
    all digits) as scanned, digits as typed."""
    code = line.strip()
    if not code:
        return None
    if looks_like_payment_code(code) or not code.replace(" ", "").isdigit():
        return classify_scan(code)
    return classify_keypad(code)


class UsbScanner(HidInput):
    """The scanner on evdev."""

    def __init__(self, spec: str, *, gap_s: float = 0.5, opener: Opener = open_evdev,
                 reopen_s: float = 2.0, also_keypad: bool = False) -> None:
        super().__init__(spec, role="kiosk" if also_keypad else "scanner",
                         classify=classify_any if also_keypad else classify_scanned,
                         gap_s=gap_s, opener=opener, reopen_s=reopen_s)
