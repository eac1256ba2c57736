"""Plates and phone numbers as shown to someone who does not need all of them.

One rule for every screen, report, replica and log line, so a plate masked on the merchant
page looks the same as on a printed report. Customer data stays private (the source
documents require it); the gateway keeps the full values only where a person must act on
them (asking a driver to move a car in a flood).
"""

from __future__ import annotations

import re

_MOBILE_IN_TEXT = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")


def mask_plate(plate: str | None) -> str:
    """``粤B12345`` → ``粤B1***5``: enough to tell cars apart on a page (province, authority
    letter, first serial character) and for the driver to recognise it (the last one).

    >>> mask_plate("粤B12345"), mask_plate("粤BD12345"), mask_plate("AB1"), mask_plate(None)
    ('粤B1***5', '粤BD****5', 'A**', '')
    """
    if not plate:
        return ""
    if len(plate) < 5:
        return plate[:1] + "*" * (len(plate) - 1)
    return plate[:3] + "*" * (len(plate) - 4) + plate[-1]


def mask_phone(phone: str | None) -> str:
    """The first 3 and last 4 digits of a mobile, the rest stars; "" for no phone.

    >>> mask_phone("13812345678"), mask_phone("+8613812345678"), mask_phone("5551234")
    ('138****5678', '+86138****5678', '*****34')
    """
    if not phone:
        return ""
    digits = phone.removeprefix("+")
    prefix = "+" if phone.startswith("+") else ""
    if len(digits) >= 11:
        return f"{prefix}{digits[:-8]}{'*' * 4}{digits[-4:]}"
    if len(digits) >= 8:
        return f"{prefix}{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"
    return f"{prefix}{'*' * max(len(digits) - 2, 1)}{digits[-2:]}"


def mask_phones_in(text: str) -> str:
    """Every mainland mobile number inside free text (a reason, a note) masked.

    >>> mask_phones_in("driver 13812345678 called")
    'driver 138****5678 called'
    """
    return _MOBILE_IN_TEXT.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
