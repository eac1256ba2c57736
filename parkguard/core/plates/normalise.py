"""What cameras, keypads and people type, turned into the one spelling a plate is stored under.

Three steps, each safe on its own (``docs/plates.md`` has the table):

1. **Presentation** (:func:`~parkguard.core.plates.charset.tidy`): full width to half width,
   lower case to upper case, separators and spaces removed: ``粤b·１２３４５`` → ``粤B12345``.
2. **I and O in serials**: from the 3rd character on, letter O is digit 0 and letter I is
   digit 1 in every series, so ``京AI2345`` → ``京A12345``.
3. **Repairs the grammar makes unambiguous**: if the text is still not a plate, each
   character that its position does not allow is swapped for its look-alike twin
   (``0↔D/O/Q``, ``1↔I``, ``2↔Z``, ``5↔S``, ``6↔G``, ``8↔B``) when exactly one twin is allowed
   there, and the result is kept only if exactly one plate comes out of all the series of
   that length: ``沪A012345`` → ``沪AD12345`` (a small new-energy plate needs an energy letter
   in 3rd place, and D is 0's only twin among them), but ``沪A012340`` stays as it is (it
   could be ``沪AD12340`` or ``沪A01234D``).

The result is idempotent: ``normalise_plate(normalise_plate(t)) == normalise_plate(t)``. A
valid plate is never changed beyond step 1. Texts that are not plates come back cleaned but
otherwise as they were; the matcher still finds them (a dirty entry read is still a car).

>>> normalise_plate(" 粤b-1234s ")
'粤B1234S'
>>> normalise_plate("沪A012345")
'沪AD12345'
>>> [str(c) for c in normalise_with_corrections("京AI2345").corrections]
['position 3: I → 1 (I is never used after the 2nd character)']
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from parkguard.core.plates.charset import serial_letters_to_digits, tidy
from parkguard.core.plates.grammar import is_plate, shapes_of_length

#: Look-alike twins a repair may swap: a character's twins in the other class (letter ↔
#: digit). Deliberately narrower than the matcher's confusion table: a repair rewrites the
#: stored text, so only near-identical glyphs of the plate font qualify.
TWINS: Final[dict[str, str]] = {
    "0": "DOQ", "D": "0", "O": "0", "Q": "0",
    "1": "I", "I": "1",
    "2": "Z", "Z": "2",
    "5": "S", "S": "5",
    "6": "G", "G": "6",
    "8": "B", "B": "8",
}


@dataclass(frozen=True, slots=True)
class Correction:
    """One letter/digit swap the normaliser made, for the installer to see."""

    position: int  # 0-based
    was: str
    now: str
    reason: str

    def __str__(self) -> str:
        return f"position {self.position + 1}: {self.was} → {self.now} ({self.reason})"


@dataclass(frozen=True, slots=True)
class Normalisation:
    """The normalised text and every letter/digit swap that produced it (presentation
    changes, which never alter meaning, are not listed)."""

    raw: str
    text: str
    corrections: tuple[Correction, ...] = ()


def normalise_plate(text: str) -> str:
    """The one spelling ``text`` is stored and compared under (see the module docstring)."""
    return normalise_with_corrections(text).text


@lru_cache(maxsize=4096)
def normalise_with_corrections(text: str) -> Normalisation:
    """:func:`normalise_plate`, saying which letters and digits it swapped and why.

    Cached: a pure function of the text, asked several times per decision (the gateway's
    decide spent a quarter of its time here, issue 23)."""
    cleaned = tidy(text)
    if cleaned.startswith("#"):  # a no-plate identity: its own rules (identity.py)
        return Normalisation(text, cleaned)
    serial_fixed = serial_letters_to_digits(cleaned)
    final = serial_fixed
    if not is_plate(serial_fixed):
        final = _repair(serial_fixed) or serial_fixed
    corrections = tuple(
        Correction(index, was, now,
                   "the only look-alike this position allows" if now != step2
                   else f"{was} is never used after the 2nd character")
        for index, (was, step2, now) in enumerate(zip(cleaned, serial_fixed, final, strict=True))
        if was != now
    )
    return Normalisation(text, final, corrections)


def _repair(text: str) -> str | None:
    """The single plate that look-alike swaps make of ``text``, or None if none or several."""
    found: set[str] = set()
    for shape in shapes_of_length(len(text)):
        chars: list[str] = []
        for char, slot in zip(text, shape.slots, strict=True):
            if char in slot.allowed:
                chars.append(char)
                continue
            twins = [twin for twin in TWINS.get(char, "") if twin in slot.allowed]
            if len(twins) != 1:
                break
            chars.append(twins[0])
        else:
            found.add("".join(chars))
    return found.pop() if len(found) == 1 else None
