"""The characters a Chinese plate is made of, and the cosmetic clean-up of typed or read text.

Everything here is a fact of GA 36-2018 (see ``docs/plates.md``) or of how people and
cameras write plates down; the grammar, the normaliser and the matcher share it.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Final

#: The 31 province-level abbreviations that open a civilian plate.
PROVINCES: Final = frozenset("京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼")
#: Same characters in the order the standard lists them, for messages and tests.
PROVINCE_ORDER: Final = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"

DIGITS: Final = frozenset("0123456789")
LETTERS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: Issuing-authority letter (2nd character): any capital but I. O is kept: it is the
#: public-security and government code (浙O1234警).
AUTHORITY_LETTERS: Final = LETTERS - {"I"}
#: Serial characters: digits and letters without I and O, which would read as 1 and 0.
SERIAL_CHARS: Final = DIGITS | (LETTERS - {"I", "O"})
#: New-energy letters: D A B C E for pure electric, F G H J K for everything else (hybrid,
#: range extender, fuel cell). GA 36-2018 had only D and F; the rest came in about 2021.
ELECTRIC_LETTERS: Final = frozenset("DABCE")
HYBRID_LETTERS: Final = frozenset("FGHJK")
ENERGY_LETTERS: Final = ELECTRIC_LETTERS | HYBRID_LETTERS
#: Single Chinese characters that end (or, for 使, may open) a special series.
SPECIAL_CHARS: Final = frozenset("挂学警港澳使领应急")
#: Characters some open OCR character sets know but ParkGuard does not handle.
OUT_OF_SCOPE_CHARS: Final = {"民": "civil-aviation (民航)", "航": "civil-aviation (民航)",
                             "深": "Shenzhen–Hong Kong (深)"}

#: What marks a character the reader could not make out, in a read.
UNKNOWN: Final = "?"

#: Characters people and cameras put between plate characters; they carry no meaning.
SEPARATORS: Final = frozenset(
    "·•・‧∙⋅"        # middle dots: 粤B·12345 (U+00B7), bullets, katakana and operator dots
    "-‐‑‒–—―−"      # hyphens, dashes, minus
    "._"
)

_ASCII_UPPER: Final = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@functools.lru_cache(maxsize=4096)
def tidy_char(char: str) -> str:
    """One typed or read character made plain: full width to half width (NFKC), Latin
    lower case to upper case, separators and white space removed (so it may become "").
    Cached: the gateway tidies the same few hundred characters for every exit it decides."""
    plain = unicodedata.normalize("NFKC", char).translate(_ASCII_UPPER)
    return "".join(c for c in plain if c not in SEPARATORS and not c.isspace())


def tidy(text: str) -> str:
    """``'粤b·１２３４５ '`` → ``'粤B12345'``: the cosmetic clean-up, character by character.

    Only presentation changes; no letter becomes a digit. Working per character keeps the
    positions of a read's confidences aligned (see ``distance.prepare_read``) and makes the
    clean-up idempotent.
    """
    return "".join(tidy_char(char) for char in text)


def serial_letters_to_digits(text: str) -> str:
    """Letter O → digit 0 and letter I → digit 1 from the 3rd character on.

    Safe on any plate: no series allows I or O after the second character (the issuing
    authority may be O; military and armed-police letters sit in the first two places), so
    a camera or a person who wrote one meant the digit.
    """
    head, tail = text[:2], text[2:]
    return head + tail.replace("O", "0").replace("I", "1")
