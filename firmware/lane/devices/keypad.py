"""The kiosk's USB numeric keypad: a HID keyboard whose lines become phone numbers or
confirmation digits.

The driver types digits and presses Enter (or ``#`` on a 3x4 kiosk keypad); Backspace takes
one digit back, Esc/Delete (or ``*``) clears. What was typed is classified by its shape, as a
kiosk without separate keys for "number" and "code" must: an 11-digit number starting with
1 is a mainland mobile number (``phone``), 4 to 8 digits are a confirmation (``digits``:
last four, one-time code), anything else is passed on as a ``phone`` that the lane then
refuses with 号码无效 (so the driver sees why). Spaces and dashes are dropped.

>>> classify_keypad("138 0013 5678").kind, classify_keypad("5678").kind
('phone', 'digits')
>>> classify_keypad("") is None
True
"""

from __future__ import annotations

from typing import Final

from firmware.lane.devices.hid import HidInput, Opener, open_evdev
from firmware.lane.kiosk import KioskInput

#: Keys of a 3x4 kiosk keypad that mean Enter and Clear (they arrive as ``#`` = Shift+3
#: and ``*`` = the keypad's asterisk on the USB 3x4 pads we know).
CONFIRM_KEYS: Final = frozenset("#")
CLEAR_KEYS: Final = frozenset("*")


def classify_keypad(line: str) -> KioskInput | None:
    """What a line typed on the keypad is: a phone number, confirmation digits, or nothing."""
    kept = "".join(char for char in line if char not in " -")
    if not kept:
        return None
    if len(kept) == 11 and kept.isdigit() and kept.startswith("1"):
        return KioskInput("phone", kept)
    if 4 <= len(kept) <= 8 and kept.isdigit():
        return KioskInput("digits", kept)
    return KioskInput("phone", kept[:32])  # refused by the lane as an invalid number


class UsbKeypad(HidInput):
    """The keypad on evdev; ``idle_s``: a number left half-typed this long is dropped."""

    def __init__(self, spec: str, *, idle_s: float = 30.0, opener: Opener = open_evdev,
                 reopen_s: float = 2.0) -> None:
        super().__init__(spec, role="keypad", classify=classify_keypad, gap_s=idle_s,
                         opener=opener, reopen_s=reopen_s, confirm_keys=CONFIRM_KEYS,
                         clear_keys=CLEAR_KEYS)
