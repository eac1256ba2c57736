"""The recogniser's output alphabet: every character a supported plate series can hold.

Built from :mod:`parkguard.core.plates.charset`, so the model and the grammar agree. The
order is part of the model: changing it means retraining (``models/reader.json`` records the
alphabet the committed model was trained with, and the reader refuses a mismatch).
"""

from __future__ import annotations

from typing import Final

from parkguard.core.plates.charset import PROVINCE_ORDER

#: Class 0 is the CTC blank; class ``i + 1`` is ``ALPHABET[i]``.
ALPHABET: Final = (PROVINCE_ORDER + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "0123456789"
                   + "挂学警港澳使领应急")
BLANK: Final = 0
NUM_CLASSES: Final = len(ALPHABET) + 1
INDEX: Final = {char: i + 1 for i, char in enumerate(ALPHABET)}


def encode(text: str) -> list[int]:
    """Class indices of a plate text (every character must be in :data:`ALPHABET`)."""
    return [INDEX[char] for char in text]
