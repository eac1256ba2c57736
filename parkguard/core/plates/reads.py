"""How a camera read is kept and handed to the matcher, the same on the lane and the gateway.

Two small rules that both sides must apply identically, or an offline exit would match
differently from an online one: the one spelling a plate is stored under, and which
per-character confidences the matcher may trust.
"""

from __future__ import annotations

from collections.abc import Iterable

from parkguard.core.plates.distance import OcrRead
from parkguard.core.plates.errors import PlateError
from parkguard.core.plates.identity import NoPlateId, is_no_plate
from parkguard.core.plates.normalise import normalise_plate


def stored_spelling(read: str) -> str:
    """The one spelling a plate is stored under (normalised, look-alikes repaired).

    A read that is not even a well-formed identity (``#P12``) is kept as read: the car
    is still recorded, a guard sorts it out, and nothing drops an entry.

    >>> stored_spelling("粤b·1234o"), stored_spelling(" #P12 ")
    ('粤B12340', '#P12')
    """
    try:
        return normalise_plate(read)
    except PlateError:
        return read.strip()


def ocr_read(text: str, confidences: Iterable[float] = ()) -> OcrRead:
    """The read as the matcher wants it; confidences that do not line up with the text
    (a reader that counted separators) are dropped rather than trusted."""
    given = tuple(confidences)
    if given:
        try:
            return OcrRead(text, given)
        except PlateError:
            pass
    return OcrRead(text)


def matchable_read(text: str, confidences: Iterable[float] = ()) -> OcrRead | NoPlateId:
    """What the matcher gets for a read: a no-plate identity from the kiosk (``#P…``/``#Q…``)
    as itself, matched exactly, anything else as a camera read."""
    if is_no_plate(text.strip()):
        try:
            return NoPlateId.parse(text.strip())
        except PlateError:
            pass
    return ocr_read(text, confidences)
