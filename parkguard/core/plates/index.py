"""The cars inside, indexed so that one read is compared with thousands of plates at once.

A lane must decide within a few milliseconds, and an exit read is compared with every car
inside (5,000 in a large mall). Running the distance of ``distance.py`` once per plate in
Python takes ~100 ms for 5,000; this index gets the same answers in about a millisecond by
running that dynamic programme **for all plates of one length together**, bit-parallel:

* Plates of the same length share a slot number each. For every position ``j`` and every
  character ``c`` the index keeps one Python int whose bit ``slot`` is set when plate
  ``slot`` has ``c`` at ``j`` (a bitmask over all plates). Adding or removing a car touches
  one bit per character.
* A cell of the edit-distance table, instead of one number, is a *thermometer*: a list
  whose entry ``t`` is the bitmask of plates whose cost so far is at most ``t`` quarters.
  Adding a fixed cost (a gap) shifts the list; taking the cheaper of two paths ORs two
  lists; a substitution, whose cost depends on each plate's character, ANDs the list with
  the masks of the characters that cost 0, ¼, ½ ... and ORs the shifted results. Each of
  these is a handful of big-int operations, whatever the number of plates.
* Only distances up to ``policy.suggest_distance`` matter, so the thermometer stops there,
  and only the cells a path of that cost can pass through (given the gap costs alone) are
  computed: for a 7-character read against 7-character plates that is the main diagonal
  and its two neighbours.

The answer is exact: the tests compare it with ``distance.distance_quarters`` on random
plates and reads, and ``simulator/bench_plates.py`` measures it against a plain scan.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import Final

from parkguard.core.plates.charset import PROVINCES, serial_letters_to_digits, tidy
from parkguard.core.plates.distance import CharCosts, Costs, NormalisedRead
from parkguard.core.plates.errors import PlateError
from parkguard.core.plates.grammar import Plate
from parkguard.core.plates.identity import NoPlateId, is_no_plate

#: Longest identity text the index accepts (the wire contract's plate field is 16).
MAX_IDENTITY_LENGTH: Final = 16

Thermometer = list[int]


class PlateIndex:
    """The identities of the cars inside: plates (or dirty entry reads) and no-plate ids.

    Build it once from the open sessions, then :meth:`add` on every entry and
    :meth:`discard` on every exit; :func:`~parkguard.core.plates.matching.match` reads it.
    Texts are normalised on the way in, so ``粤b·12345`` and ``粤B12345`` are one car.
    Not thread-safe: like the rest of a lane or the gateway, one thread owns it.

    >>> inside = PlateIndex(["粤B12345", "粤B67890", "沪AD12345"])
    >>> len(inside), "粤B·12345" in inside
    (3, True)
    >>> inside.discard("粤B67890"), len(inside)
    (True, 2)
    """

    def __init__(self, identities: Iterable[str | Plate | NoPlateId] = ()) -> None:
        self._groups: dict[int, _LengthGroup] = {}
        self._no_plate: set[str] = set()
        for identity in identities:
            self.add(identity)

    @staticmethod
    def key(identity: str | Plate | NoPlateId) -> str:
        """The text an identity is stored under: a no-plate id as it is, anything else cleaned
        exactly as a read is (presentation, I and O in serials) so that a text always finds
        itself. Look-alike repairs are not made: they are guesses, and a read is not repaired
        either (store sessions under ``normalise_plate`` and the two agree on every plate)."""
        if isinstance(identity, NoPlateId | Plate):
            return identity.text
        if is_no_plate(identity.strip()):
            return NoPlateId.parse(identity).text
        text = serial_letters_to_digits(tidy(identity))
        if not text:
            raise PlateError(identity, None, "is empty")
        if len(text) > MAX_IDENTITY_LENGTH:
            raise PlateError(text, None, f"is {len(text)} characters; at most "
                                         f"{MAX_IDENTITY_LENGTH} can be stored")
        return text

    def add(self, identity: str | Plate | NoPlateId) -> str:
        """A car came in: index it (again is harmless). Returns the key it is stored under."""
        key = self.key(identity)
        if is_no_plate(key):
            self._no_plate.add(key)
        else:
            group = self._groups.get(len(key))
            if group is None:
                group = self._groups[len(key)] = _LengthGroup(len(key))
            group.add(key)
        return key

    def discard(self, identity: str | Plate | NoPlateId) -> bool:
        """A car left: forget it. False if it was not inside."""
        key = self.key(identity)
        if is_no_plate(key):
            if key in self._no_plate:
                self._no_plate.remove(key)
                return True
            return False
        group = self._groups.get(len(key))
        return group is not None and group.discard(key)

    def __contains__(self, identity: object) -> bool:
        if not isinstance(identity, str | Plate | NoPlateId):
            return False
        try:
            key = self.key(identity)
        except PlateError:
            return False
        if is_no_plate(key):
            return key in self._no_plate
        group = self._groups.get(len(key))
        return group is not None and key in group.slot_of

    def __len__(self) -> int:
        return len(self._no_plate) + sum(len(group.slot_of) for group in self._groups.values())

    def __iter__(self) -> Iterator[str]:
        for group in self._groups.values():
            yield from group.slot_of
        yield from self._no_plate

    def has_no_plate(self, key: str) -> bool:
        """True if the no-plate identity ``key`` is inside (no-plate ids match exactly)."""
        return key in self._no_plate

    def nearest(self, read: NormalisedRead, costs: Costs) -> list[tuple[int, str]]:
        """``(distance in quarters, plate)`` for every plate inside within ``costs.limit``,
        closest first (ties by text, so the order never depends on the order cars came in)."""
        menus = [CharCosts.of(char, confidence, costs)
                 for char, confidence in zip(read.chars, read.confidences, strict=True)]
        found: list[tuple[int, str]] = []
        for group in self._groups.values():
            found += group.scan(menus, costs)
        found.sort()
        return found


class _LengthGroup:
    """All indexed plates of one length, as per-position, per-character bitmasks."""

    __slots__ = ("columns", "everyone", "free", "length", "provinces", "slot_of", "texts")

    def __init__(self, length: int) -> None:
        self.length = length
        self.texts: list[str | None] = []
        self.slot_of: dict[str, int] = {}
        self.free: list[int] = []
        #: ``columns[j][c]``: bitmask of the plates with character ``c`` at position ``j``.
        self.columns: list[dict[str, int]] = [{} for _ in range(length)]
        #: ``provinces[j]``: bitmask of the plates with any province character at ``j``.
        self.provinces: list[int] = [0] * length
        self.everyone = 0

    def add(self, text: str) -> None:
        if text in self.slot_of:
            return
        slot = self.free.pop() if self.free else len(self.texts)
        if slot == len(self.texts):
            self.texts.append(text)
        else:
            self.texts[slot] = text
        self.slot_of[text] = slot
        bit = 1 << slot
        for column, char in zip(self.columns, text, strict=True):
            column[char] = column.get(char, 0) | bit
        for j, char in enumerate(text):
            if char in PROVINCES:
                self.provinces[j] |= bit
        self.everyone |= bit

    def discard(self, text: str) -> bool:
        slot = self.slot_of.pop(text, None)
        if slot is None:
            return False
        bit = 1 << slot
        for j, (column, char) in enumerate(zip(self.columns, text, strict=True)):
            left = column[char] & ~bit
            if left:
                column[char] = left
            else:
                del column[char]
            self.provinces[j] &= ~bit
        self.everyone &= ~bit
        self.texts[slot] = None
        self.free.append(slot)
        return True

    def scan(self, menus: list[CharCosts], costs: Costs) -> list[tuple[int, str]]:
        """Every plate of this group within ``costs.limit`` of the read whose characters
        cost ``menus``, with its distance in quarters."""
        everyone = self.everyone
        m, n = len(menus), self.length
        band = _band(m, n, costs.end_gap, costs.gap, costs.limit)
        if not everyone or band is None:
            return []
        columns, provinces = self.columns, self.provinces
        lost = [0, *(costs.lost_from_read(j, n) for j in range(n))]  # lost[j]: plate char j-1
        previous: dict[int, Thermometer] = {}
        for i, cells in enumerate(band):
            current: dict[int, Thermometer] = {}
            extra_cost = costs.extra_in_read(i - 1, m)
            for j, low, high in cells:
                if i == 0 and j == 0:
                    current[0] = [everyone] * (high + 1)
                    continue
                value: Thermometer | None = None
                if i and j and (source := previous.get(j - 1)) is not None:
                    value = _substitute(menus[i - 1], source, columns[j - 1],
                                        provinces[j - 1], low, high)
                if i and (source := previous.get(j)) is not None:
                    value = _cheaper(value, _shift(source, extra_cost, high))
                if j and (source := current.get(j - 1)) is not None:
                    value = _cheaper(value, _shift(source, lost[j], high))
                if value is not None and value[-1]:
                    current[j] = value
            previous = current
        final = previous.get(n)
        if final is None:
            return []
        found: list[tuple[int, str]] = []
        texts = self.texts
        seen = 0
        for quarters, mask in enumerate(final):
            fresh = mask & ~seen
            seen = mask
            while fresh:
                low_bit = fresh & -fresh
                found.append((quarters, texts[low_bit.bit_length() - 1] or ""))
                fresh ^= low_bit
        return found


def _substitute(char_costs: CharCosts, source: Thermometer, column: dict[str, int],
                provinces: int, low: int, high: int) -> Thermometer:
    """``source`` plus the read character's substitution cost against each plate's character
    in ``column``, kept for costs ``low`` to ``high``.

    Every plate pays at most ``char_costs.other``, so the result starts as ``source`` shifted
    by it; each cheaper character (and, for a province, every other province) then ORs in
    ``source`` shifted by its own cost, masked to the plates that have it. A plate in two
    classes (鄂 is a province *and* 粤's look-alike) gets the cheaper: a thermometer only
    ever says "at most".
    """
    out = _shift(source, char_costs.other, high)
    classes: list[tuple[int, int]] = []
    for plate_char, cost in char_costs.special.items():
        mask = column.get(plate_char)
        if mask:
            classes.append((cost, mask))
    if char_costs.province is not None and provinces:
        classes.append((char_costs.province, provinces))
    for cost, mask in classes:
        start = low if low > cost else cost
        if start <= high:
            out[start:] = [mine | (below & mask) if below else mine
                           for mine, below in zip(out[start:],
                                                  source[start - cost: high + 1 - cost],
                                                  strict=True)]
    return out


def _shift(source: Thermometer, cost: int, high: int) -> Thermometer:
    """``source`` plus the same cost for every plate."""
    if cost > high:
        return [0] * (high + 1)
    return [0] * cost + source[: high + 1 - cost]


def _cheaper(a: Thermometer | None, b: Thermometer) -> Thermometer:
    """The cheaper of two paths, plate by plate."""
    if a is None:
        return b
    return [x | y if y else x for x, y in zip(a, b, strict=True)]


Cell = tuple[int, int, int]  # j, lowest possible cost, highest cost worth keeping


@functools.lru_cache(maxsize=256)
def _band(m: int, n: int, end_gap: int, gap: int,
          limit: int) -> tuple[tuple[Cell, ...], ...] | None:
    """The cells of the m × n table a path costing at most ``limit`` can pass through.

    ``low`` is what the gaps alone cost to reach the cell (substitutions may be free), and a
    plate costing more than ``limit - (gaps still needed to finish)`` there cannot finish
    within the limit, so its thermometer stops at ``high``. None when even a gap-only path
    is too dear (the lengths are too different).
    """
    def extra(i: int) -> int:
        return end_gap if i in (0, m - 1) else gap

    def lost(j: int) -> int:
        return end_gap if j in (0, n - 1) else gap

    big = limit + 1 + (m + n) * max(gap, end_gap)
    ahead = [[big] * (n + 1) for _ in range(m + 1)]
    ahead[0][0] = 0
    for i in range(m + 1):
        for j in range(n + 1):
            here = ahead[i][j]
            if i and j:
                here = min(here, ahead[i - 1][j - 1])
            if i:
                here = min(here, ahead[i - 1][j] + extra(i - 1))
            if j:
                here = min(here, ahead[i][j - 1] + lost(j - 1))
            ahead[i][j] = here
    behind = [[big] * (n + 1) for _ in range(m + 1)]
    behind[m][n] = 0
    for i in range(m, -1, -1):
        for j in range(n, -1, -1):
            here = behind[i][j]
            if i < m and j < n:
                here = min(here, behind[i + 1][j + 1])
            if i < m:
                here = min(here, behind[i + 1][j] + extra(i))
            if j < n:
                here = min(here, behind[i][j + 1] + lost(j))
            behind[i][j] = here
    if ahead[m][n] > limit:
        return None
    return tuple(
        tuple((j, ahead[i][j], limit - behind[i][j]) for j in range(n + 1)
              if ahead[i][j] + behind[i][j] <= limit)
        for i in range(m + 1))
