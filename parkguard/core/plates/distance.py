"""How far a camera read is from a plate: an edit distance weighted by what plate OCR confuses.

Plain Levenshtein counts ``粤B1234S`` → ``粤B12345`` (S for 5, the same glyph in the plate
font) as far as ``粤B12347`` (a different digit). This distance does not:

* **substitutions** cost by the confusion table below: near-identical glyphs a quarter
  (``0/D/O/Q``, ``8/B``, ``1/I``, ``2/Z``, ``5/S``, ``6/G``, ``粤/鄂``, ``苏/鄂``), often
  confused ones half (``1/7``, ``1/T``, ``7/T``, ``4/A``, ``3/8``, ``6/8``, ``E/F``, ``P/R``,
  ``M/N``, ``U/V``, ``C/G``, ``K/X``, ``港/澳``), one province for another
  ``policy.province_cost``, anything else a whole 1.0;
* a character the reader marked unknown (``?``) costs ``policy.unknown_cost``;
* **low confidence** makes a mistake cheaper: a substitution dearer than an unknown falls
  linearly from its full cost (confidence 1) to ``unknown_cost`` (confidence 0), rounded to
  a quarter, so an unsure character is never dearer than an unreadable one;
* **gaps**: a lost or extra first or last character (a dirty frame edge, a tow bar) costs
  ``policy.end_gap_cost``; one lost or added inside the plate ``policy.gap_cost``.

Every cost is a whole number of quarters, so distances are exact: equal means equal.

>>> confusion_distance("粤B1234S", "粤B12345")
0.25
>>> confusion_distance("B12345", "粤B12345")
0.5
>>> [str(edit) for edit in explain("鄂B1?345", "粤B12345")]
["position 1: read '鄂' for '粤' (0.25)", "position 4: '2' unreadable (0.5)"]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from parkguard.core.plates.charset import PROVINCES, UNKNOWN, serial_letters_to_digits, tidy_char
from parkguard.core.plates.errors import PlateError
from parkguard.core.plates.policy import DEFAULT_POLICY, MatchPolicy, quarters

#: Costs in quarters.
NEAR_IDENTICAL: Final = 1
OFTEN_CONFUSED: Final = 2
UNRELATED: Final = 4

#: Groups of characters a plate reader mistakes for one another, and what that costs.
#: Sources: the confusion list of ``docs/plates.md`` (HyperLPR issues, the reference notes).
CONFUSION_GROUPS: Final[tuple[tuple[str, int], ...]] = (
    ("0DOQ", NEAR_IDENTICAL), ("8B", NEAR_IDENTICAL), ("1I", NEAR_IDENTICAL),
    ("2Z", NEAR_IDENTICAL), ("5S", NEAR_IDENTICAL), ("6G", NEAR_IDENTICAL),
    ("粤鄂", NEAR_IDENTICAL), ("苏鄂", NEAR_IDENTICAL),
    ("17T", OFTEN_CONFUSED), ("4A", OFTEN_CONFUSED), ("38", OFTEN_CONFUSED),
    ("68", OFTEN_CONFUSED), ("EF", OFTEN_CONFUSED), ("PR", OFTEN_CONFUSED),
    ("MN", OFTEN_CONFUSED), ("UV", OFTEN_CONFUSED), ("CG", OFTEN_CONFUSED),
    ("KX", OFTEN_CONFUSED), ("港澳", OFTEN_CONFUSED),
)


def _confusion_table() -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for group, cost in CONFUSION_GROUPS:
        for a in group:
            for b in group:
                if a != b:
                    row = table.setdefault(a, {})
                    row[b] = min(cost, row.get(b, cost))
    return table


#: ``CONFUSION[read][plate]`` → cost in quarters, for the pairs in :data:`CONFUSION_GROUPS`.
CONFUSION: Final = _confusion_table()


@dataclass(frozen=True, slots=True)
class OcrRead:
    """What a plate reader saw: text with ``?`` where a character could not be read, and
    optionally one confidence (0..1) per character of ``text`` as given.

    >>> OcrRead("粤B·1?345", (0.9, 0.99, 1.0, 0.97, 0.2, 0.95, 0.96, 0.99)).normalised().text
    '粤B1?345'
    """

    text: str
    confidences: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.confidences is None:
            return
        if len(self.confidences) != len(self.text):
            raise PlateError(self.text, None, f"has {len(self.text)} characters but "
                                              f"{len(self.confidences)} confidences")
        for index, value in enumerate(self.confidences):
            if not (0.0 <= value <= 1.0):  # also refuses NaN
                raise PlateError(self.text, index, f"confidence {value} is not between 0 and 1")

    def normalised(self) -> NormalisedRead:
        """The read cleaned as plates are (width, case, separators, I/O in serials), each
        character keeping its own confidence."""
        return _normalise_read(self.text, self.confidences)


@dataclass(frozen=True, slots=True)
class NormalisedRead:
    """A read ready to compare: characters and their confidences, position by position."""

    chars: tuple[str, ...]
    confidences: tuple[float, ...]

    @property
    def text(self) -> str:
        return "".join(self.chars)


def _normalise_read(text: str, confidences: Sequence[float] | None) -> NormalisedRead:
    chars: list[str] = []
    kept: list[float] = []
    for index, raw in enumerate(text):
        confidence = 1.0 if confidences is None else confidences[index]
        for char in tidy_char(raw):
            chars.append(char)
            kept.append(confidence)
    fixed = serial_letters_to_digits("".join(chars))
    return NormalisedRead(tuple(fixed), tuple(kept))


def as_read(read: OcrRead | str) -> NormalisedRead:
    """A read given as an :class:`OcrRead` or a plain string (all characters certain)."""
    return (read if isinstance(read, OcrRead) else OcrRead(read)).normalised()


# Costs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Costs:
    """A policy's costs in quarters, as the distance and the index use them."""

    unknown: int
    province: int
    end_gap: int
    gap: int
    #: Nothing further than this is looked at (``policy.suggest_distance``).
    limit: int

    @staticmethod
    @functools.lru_cache(maxsize=16)
    def of(policy: MatchPolicy) -> Costs:
        return Costs(unknown=quarters(policy.unknown_cost),
                     province=quarters(policy.province_cost),
                     end_gap=quarters(policy.end_gap_cost), gap=quarters(policy.gap_cost),
                     limit=quarters(policy.suggest_distance))

    def scaled(self, base: int, confidence: float) -> int:
        """A substitution's cost for a read character of this confidence: from ``base`` at
        confidence 1 down to the unknown cost at 0, to the nearest quarter (halves up)."""
        if base <= self.unknown or confidence >= 1.0:
            return base
        return self.unknown + math.floor((base - self.unknown) * confidence + 0.5)

    def substitution(self, read_char: str, confidence: float, plate_char: str) -> int:
        """Quarters to read ``read_char`` where the plate has ``plate_char``."""
        if read_char == plate_char and read_char != UNKNOWN:
            return 0
        if read_char == UNKNOWN or plate_char == UNKNOWN:
            return self.unknown
        look_alikes = CONFUSION.get(read_char)
        base = None if look_alikes is None else look_alikes.get(plate_char)
        if base is None:
            both_provinces = read_char in PROVINCES and plate_char in PROVINCES
            base = self.province if both_provinces else UNRELATED
        return self.scaled(base, confidence)

    def extra_in_read(self, index: int, length: int) -> int:
        """Quarters for read character ``index`` (of ``length``) that is not on the plate."""
        return self.end_gap if index in (0, length - 1) else self.gap

    def lost_from_read(self, index: int, length: int) -> int:
        """Quarters for plate character ``index`` (of ``length``) missing from the read."""
        return self.end_gap if index in (0, length - 1) else self.gap


@dataclass(frozen=True, slots=True, eq=False)
class CharCosts:
    """What one read character costs against every plate character: the same numbers as
    :meth:`Costs.substitution`, laid out for a table lookup (the DP and the index use it).

    ``special`` lists the plate characters dearer than nothing but cheaper than ``other``
    (and the read character itself at 0); ``province`` is the price of any other province
    when the read character is one; everything else costs ``other``.
    """

    char: str
    special: dict[str, int]
    province: int | None
    other: int

    @staticmethod
    def of(char: str, confidence: float, costs: Costs) -> CharCosts:
        if char == UNKNOWN:
            return CharCosts(char, {}, None, costs.unknown)
        other = costs.scaled(UNRELATED, confidence)
        special = {plate_char: cost for plate_char, base in CONFUSION.get(char, {}).items()
                   if (cost := costs.scaled(base, confidence)) < other}
        if costs.unknown < other:
            special[UNKNOWN] = costs.unknown
        special[char] = 0
        province = costs.scaled(costs.province, confidence) if char in PROVINCES else None
        return CharCosts(char, special, province if province is not None and province < other
                         else None, other)

    def cost(self, plate_char: str) -> int:
        """Quarters to read :attr:`char` where the plate has ``plate_char``."""
        found = self.special.get(plate_char)
        if found is not None:
            return found
        if self.province is not None and plate_char in PROVINCES:
            return self.province
        return self.other


# The distance ------------------------------------------------------------------------------


EditKind = Literal["substitute", "unknown", "lost", "extra"]


@dataclass(frozen=True, slots=True)
class Edit:
    """One difference between a read and a plate, with its cost: the evidence for a match."""

    kind: EditKind
    #: 0-based position on the plate (for ``extra``: where on the plate the extra one sat).
    plate_position: int
    read_char: str
    plate_char: str
    cost: float

    def __str__(self) -> str:
        where = f"position {self.plate_position + 1}"
        if self.kind == "substitute":
            return f"{where}: read {self.read_char!r} for {self.plate_char!r} ({self.cost:g})"
        if self.kind == "unknown":
            return f"{where}: {self.plate_char!r} unreadable ({self.cost:g})"
        if self.kind == "lost":
            return f"{where}: {self.plate_char!r} missing from the read ({self.cost:g})"
        return f"{where}: extra {self.read_char!r} in the read ({self.cost:g})"


def _table(read: NormalisedRead, plate: str, costs: Costs) -> list[list[int]]:
    """The full edit-distance table (quarters): ``table[i][j]`` aligns read[:i] to plate[:j]."""
    chars, confidences = read.chars, read.confidences
    m, n = len(chars), len(plate)
    lost = [costs.lost_from_read(j, n) for j in range(n)]
    row = [0]
    for cost in lost:
        row.append(row[-1] + cost)
    table = [row]
    for i in range(m):
        char_costs = CharCosts.of(chars[i], confidences[i], costs)
        special, province, other = char_costs.special, char_costs.province, char_costs.other
        extra_cost = costs.extra_in_read(i, m)
        above = row
        left = above[0] + extra_cost
        row = [left]
        for j, plate_char in enumerate(plate):
            substitution = special.get(plate_char)
            if substitution is None:
                substitution = province if province is not None and plate_char in PROVINCES \
                    else other
            left = min(above[j] + substitution, above[j + 1] + extra_cost, left + lost[j])
            row.append(left)
        table.append(row)
    return table


def distance_quarters(read: NormalisedRead, plate: str, costs: Costs) -> int:
    """The distance in quarters (the reference the index is tested against)."""
    return _table(read, plate, costs)[-1][-1]


def confusion_distance(read: OcrRead | str, plate: str,
                       policy: MatchPolicy = DEFAULT_POLICY) -> float:
    """The confusion-weighted distance from ``read`` to ``plate`` (0 = identical)."""
    return distance_quarters(as_read(read), plate, Costs.of(policy)) * 0.25


def explain(read: OcrRead | NormalisedRead | str, plate: str,
            policy: MatchPolicy = DEFAULT_POLICY) -> tuple[Edit, ...]:
    """The cheapest set of edits that turns ``plate`` into ``read``, left to right."""
    normalised = read if isinstance(read, NormalisedRead) else as_read(read)
    costs = Costs.of(policy)
    table = _table(normalised, plate, costs)
    chars, confidences = normalised.chars, normalised.confidences
    m, n = len(chars), len(plate)
    edits: list[Edit] = []
    i, j = m, n
    while i or j:
        here = table[i][j]
        if i and j:
            cost = costs.substitution(chars[i - 1], confidences[i - 1], plate[j - 1])
            if table[i - 1][j - 1] + cost == here:
                if cost or chars[i - 1] != plate[j - 1]:
                    kind: EditKind = "unknown" if UNKNOWN in (chars[i - 1], plate[j - 1]) \
                        else "substitute"
                    edits.append(Edit(kind, j - 1, chars[i - 1], plate[j - 1], cost * 0.25))
                i, j = i - 1, j - 1
                continue
        if i and table[i - 1][j] + costs.extra_in_read(i - 1, m) == here:
            edits.append(Edit("extra", j, chars[i - 1], "", costs.extra_in_read(i - 1, m) * 0.25))
            i -= 1
            continue
        edits.append(Edit("lost", j - 1, "", plate[j - 1], costs.lost_from_read(j - 1, n) * 0.25))
        j -= 1
    return tuple(reversed(edits))
