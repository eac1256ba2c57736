"""No-plate identities: cars that enter by phone number or QR ticket, matched like plates.

A car without a readable plate (none fitted, temporary paper plate, a plate the camera
cannot read at all) enters at the kiosk by typing a mobile number or taking a QR ticket.
Its session is keyed by a :class:`NoPlateId` whose text starts with ``#``: no plate and no
normalised camera read can contain ``#``, so a no-plate identity can never equal, or be
fuzzily matched to, a plate (the matcher compares them only with each other, exactly).

Phone numbers are personal data. The identity keeps only what the exit needs:

* ``#P`` + the **last 4 digits** (what a guard asks a driver to confirm, 尾号) +
  ``:`` + the first 12 characters (60 bits) of a base32 **HMAC-SHA256 of the whole number
  under the site's secret key**. The same number typed at the exit gives the same text; the
  number cannot be read back from it, and without the key it cannot be guessed by trying
  every number (which an unkeyed hash of 11 digits would allow in seconds).
* The key stays on the site (gateway and lanes, like the lanes' command keys); rotating it
  strands the phone sessions still inside, so rotate between closing and opening.

QR tickets are ParkGuard's own random codes, not personal: ``#Q`` + the code as printed.

>>> key = b"site-secret-key-of-32-bytes-long"
>>> car = NoPlateId.for_phone("138 0013 5678", site_key=key)
>>> car.text
'#P5678:N4CPKMF3R6G2'
>>> car.masked, car == NoPlateId.for_phone("+86 13800135678", site_key=key)
('尾号5678', True)
>>> NoPlateId.for_ticket("pg1-8f2k-31qz").text
'#QPG18F2K31QZ'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final, Literal

from parkguard.core.plates.charset import tidy
from parkguard.core.plates.errors import PlateError
from parkguard.errors import ConfigError

NoPlateKind = Literal["phone", "ticket"]

#: Every no-plate identity starts with this; no plate or read ever contains it.
MARK: Final = "#"
PHONE_PREFIX: Final = "#P"
TICKET_PREFIX: Final = "#Q"
#: Digest characters kept: 12 base32 characters = 60 bits, collision-free for any car park.
DIGEST_CHARS: Final = 12
#: Shortest site key accepted for the phone HMAC.
MIN_KEY_BYTES: Final = 16
_DOMAIN: Final = b"parkguard/no-plate/phone/v1:"
_MOBILE = re.compile(r"1[3-9]\d{9}")
_TICKET = re.compile(r"[A-Z0-9]{6,32}")
_PHONE_ID = re.compile(r"#P(\d{4}):([A-Z2-7]{%d})" % DIGEST_CHARS)  # noqa: UP031 (re braces)


def is_no_plate(text: str) -> bool:
    """True if ``text`` is a no-plate identity rather than a plate or a read."""
    return text.startswith(MARK)


@dataclass(frozen=True, slots=True)
class NoPlateId:
    """The identity of a car that entered without a plate; ``text`` is what sessions store."""

    text: str
    kind: NoPlateKind

    @classmethod
    def for_phone(cls, phone: str, *, site_key: bytes) -> NoPlateId:
        """The identity for a mainland mobile number as typed (spaces, dashes, ``+86``)."""
        if len(site_key) < MIN_KEY_BYTES:
            raise ConfigError(f"the no-plate site key must be at least {MIN_KEY_BYTES} bytes")
        digits = _mobile_number(phone)
        mac = hmac.new(site_key, _DOMAIN + digits.encode("ascii"), hashlib.sha256).digest()
        digest = base64.b32encode(mac).decode("ascii")[:DIGEST_CHARS]
        return cls(f"{PHONE_PREFIX}{digits[-4:]}:{digest}", "phone")

    @classmethod
    def for_ticket(cls, code: str) -> NoPlateId:
        """The identity for a QR ticket code as printed or scanned."""
        cleaned = tidy(code)
        if cleaned.startswith(TICKET_PREFIX):
            cleaned = cleaned[len(TICKET_PREFIX):]
        if not _TICKET.fullmatch(cleaned):
            raise PlateError(code, None, "a ticket code is 6 to 32 letters and digits")
        return cls(TICKET_PREFIX + cleaned, "ticket")

    @classmethod
    def parse(cls, text: str) -> NoPlateId:
        """The identity a stored ``text`` (``#P…`` or ``#Q…``) stands for."""
        cleaned = text.strip()
        if _PHONE_ID.fullmatch(cleaned):
            return cls(cleaned, "phone")
        if cleaned.startswith(TICKET_PREFIX):
            return cls.for_ticket(cleaned)
        raise PlateError(text, None, "is not a no-plate identity (#P<last 4>:<digest> or "
                                     "#Q<ticket>)")

    @property
    def masked(self) -> str:
        """What a display, a log line or a guard may see: ``尾号5678`` or ``票…31QZ``."""
        if self.kind == "phone":
            return f"尾号{self.text[2:6]}"
        return f"票…{self.text[-4:]}"

    def __str__(self) -> str:
        return self.text


def _mobile_number(phone: str) -> str:
    """The 11 digits of a mainland mobile number, or :class:`PlateError` saying what is off."""
    cleaned = tidy(phone).replace("(", "").replace(")", "")
    for prefix in ("+86", "0086"):
        if cleaned.startswith(prefix):
            cleaned = cleaned[len(prefix):]
    if len(cleaned) == 13 and cleaned.startswith("86"):
        cleaned = cleaned[2:]
    for index, char in enumerate(cleaned):
        if not char.isascii() or not char.isdigit():
            raise PlateError("<phone>", index, f"{char!r} is not a digit")
    if len(cleaned) != 11:
        raise PlateError("<phone>", None, f"has {len(cleaned)} digits; a mobile number has 11")
    if not _MOBILE.fullmatch(cleaned):
        raise PlateError("<phone>", None, "a mainland mobile number starts with 13 to 19")
    return cleaned
