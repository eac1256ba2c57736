"""What a Chinese plate is: the series of GA 36-2018 and its amendments, and a strict parser.

The lane and the gateway both call :func:`parse_plate`, so both agree on what a plate is.
Each series is a *shape*: one set of allowed characters per position. A text is a plate
when it fills one shape exactly; when it fills none, the parser works out which series it
was meant to be (from its anchors: a leading ``WJ``, a ``使``, a trailing ``应急``/``警``/...,
a province, its length) and names the first position that breaks that series, and why.

The parser is strict about letters and digits (``京AI2345`` is refused: I is never a serial
character) but not about presentation: full-width characters, lower case, spaces and the
``·`` in ``粤B·12345`` are cleaned away first. Letter/digit repairs that the grammar makes
unambiguous are :func:`parkguard.core.plates.normalise.normalise_plate`'s job.

>>> plate = parse_plate("粤B·12345")
>>> (plate.text, plate.series.value, plate.colour.value, plate.province, plate.authority)
('粤B12345', 'ordinary', 'blue_or_yellow', '粤', 'B')
>>> parse_plate("沪AD12345").energy
'electric'
>>> try:
...     parse_plate("京AI2345")
... except PlateError as error:
...     print(error)
'京AI2345': position 3: 'I' is never used in a serial (it would read as 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final, Literal

from parkguard.core.plates.charset import (
    AUTHORITY_LETTERS,
    DIGITS,
    ELECTRIC_LETTERS,
    ENERGY_LETTERS,
    LETTERS,
    OUT_OF_SCOPE_CHARS,
    PROVINCES,
    SERIAL_CHARS,
    SPECIAL_CHARS,
    UNKNOWN,
    tidy,
)
from parkguard.core.plates.errors import PlateError

Energy = Literal["electric", "hybrid"]

#: The longest plate (new-energy, emergency, provincial armed police): 8 characters.
MAX_PLATE_LENGTH: Final = 8


class ColourClass(StrEnum):
    """The plate's background as a camera's colour classifier would name it.

    Ordinary plates are blue (small cars) or yellow (large vehicles) with the same text, so
    the text alone gives ``blue_or_yellow``; the reader's colour output settles it.
    """

    BLUE_OR_YELLOW = "blue_or_yellow"
    YELLOW = "yellow"
    GRADIENT_GREEN = "gradient_green"
    YELLOW_GREEN = "yellow_green"
    WHITE = "white"
    BLACK = "black"

    @property
    def label_zh(self) -> str:
        """The colour as the control room says it."""
        return _COLOUR_ZH[self]


_COLOUR_ZH: Final = {
    ColourClass.BLUE_OR_YELLOW: "蓝牌/黄牌", ColourClass.YELLOW: "黄牌",
    ColourClass.GRADIENT_GREEN: "渐变绿牌", ColourClass.YELLOW_GREEN: "黄绿牌",
    ColourClass.WHITE: "白牌", ColourClass.BLACK: "黑牌",
}


class PlateSeries(StrEnum):
    """The series a plate belongs to: it decides its colour and, for some, how the car is
    treated (duty vehicles may park free, coaches and trailers are priced as large)."""

    ORDINARY = "ordinary"
    NEW_ENERGY_SMALL = "new_energy_small"
    NEW_ENERGY_LARGE = "new_energy_large"
    TRAILER = "trailer"
    COACH = "coach"
    POLICE = "police"
    HONG_KONG_MACAU = "hong_kong_macau"
    CONSULATE = "consulate"
    EMBASSY = "embassy"
    EMERGENCY = "emergency"
    ARMED_POLICE = "armed_police"
    MILITARY = "military"

    @property
    def label_zh(self) -> str:
        """The series as it is called on a form or a display (普通, 小型新能源, 警车 ...)."""
        return _SERIES_INFO[self][0]

    @property
    def label_en(self) -> str:
        """The series in a few English words."""
        return _SERIES_INFO[self][1]

    @property
    def colour(self) -> ColourClass:
        """The plate colour this series is issued in."""
        return _SERIES_INFO[self][2]

    @property
    def is_duty_vehicle(self) -> bool:
        """Police, emergency-rescue, armed-police and military plates: the vehicles a site's
        free-parking rule usually waives. The plate only says what the car is; whether it
        parks free is the tariff's decision. (Ambulances carry ordinary plates.)"""
        return self in _DUTY_SERIES


_SERIES_INFO: Final[dict[PlateSeries, tuple[str, str, ColourClass]]] = {
    PlateSeries.ORDINARY: ("普通", "ordinary", ColourClass.BLUE_OR_YELLOW),
    PlateSeries.NEW_ENERGY_SMALL: ("小型新能源", "small new-energy", ColourClass.GRADIENT_GREEN),
    PlateSeries.NEW_ENERGY_LARGE: ("大型新能源", "large new-energy", ColourClass.YELLOW_GREEN),
    PlateSeries.TRAILER: ("挂车", "trailer", ColourClass.YELLOW),
    PlateSeries.COACH: ("教练车", "coach", ColourClass.YELLOW),
    PlateSeries.POLICE: ("警车", "police", ColourClass.WHITE),
    PlateSeries.HONG_KONG_MACAU: ("港澳入出境", "Hong Kong/Macau", ColourClass.BLACK),
    PlateSeries.CONSULATE: ("领馆", "consulate", ColourClass.BLACK),
    PlateSeries.EMBASSY: ("使馆", "embassy", ColourClass.BLACK),
    PlateSeries.EMERGENCY: ("应急救援", "emergency-rescue", ColourClass.WHITE),
    PlateSeries.ARMED_POLICE: ("武警", "armed-police", ColourClass.WHITE),
    PlateSeries.MILITARY: ("军车", "military", ColourClass.WHITE),
}
_DUTY_SERIES: Final = frozenset({PlateSeries.POLICE, PlateSeries.EMERGENCY,
                                 PlateSeries.ARMED_POLICE, PlateSeries.MILITARY})


# Shapes -----------------------------------------------------------------------------------


class SlotKind(Enum):
    """What a position holds; decides the wording of the error when it holds something else."""

    PROVINCE = "province"
    AUTHORITY = "authority"
    SERIAL = "serial"
    DIGIT = "digit"
    ENERGY = "energy"
    LETTER = "letter"
    FIXED = "fixed"


@dataclass(frozen=True, slots=True)
class Slot:
    """One position of a series: the characters allowed there and what it is called."""

    kind: SlotKind
    allowed: frozenset[str]
    note: str = ""


_PROVINCE = Slot(SlotKind.PROVINCE, PROVINCES)
_AUTHORITY = Slot(SlotKind.AUTHORITY, AUTHORITY_LETTERS)
_SERIAL = Slot(SlotKind.SERIAL, SERIAL_CHARS)
_LETTER = Slot(SlotKind.LETTER, LETTERS)


def _digit(note: str) -> Slot:
    return Slot(SlotKind.DIGIT, DIGITS, note)


def _fixed(chars: str, note: str) -> Slot:
    return Slot(SlotKind.FIXED, frozenset(chars), note)


@dataclass(frozen=True, slots=True)
class Shape:
    """One layout of a series, position by position, and where its parts sit.

    ``anchor`` says how a wrong length is reported: ``"start"`` shapes are read from the
    left (a missing or extra character has a position), ``"end"`` shapes are recognised by
    their last characters (警, 应急 ...), so a wrong length is a fault of the whole text.
    """

    series: PlateSeries
    slots: tuple[Slot, ...]
    layout: str
    anchor: Literal["start", "end"]
    province_at: int | None = None
    authority: tuple[int, int] | None = None
    serial: tuple[int, int] = (2, 7)
    energy_at: int | None = None

    def fits(self, text: str) -> bool:
        """True if ``text`` fills this shape exactly."""
        return len(text) == len(self.slots) and all(
            char in slot.allowed for char, slot in zip(text, self.slots, strict=True))

    def plate(self, text: str) -> Plate:
        """The :class:`Plate` for a text that :meth:`fits` this shape."""
        energy: Energy | None = None
        if self.energy_at is not None:
            energy = "electric" if text[self.energy_at] in ELECTRIC_LETTERS else "hybrid"
        return Plate(
            text=text, series=self.series,
            province=None if self.province_at is None else text[self.province_at],
            authority=None if self.authority is None else text[slice(*self.authority)],
            serial=text[slice(*self.serial)], energy=energy,
            warnings=_soft_warnings(text, self),
        )


def _suffixed(series: PlateSeries, suffix: str, name: str) -> Shape:
    return Shape(
        series, (_PROVINCE, _AUTHORITY, _SERIAL, _SERIAL, _SERIAL, _SERIAL,
                 _fixed(suffix, f"{name} plates end in {suffix}")),
        f"province, authority letter, 4 serial characters, {suffix}", "end",
        province_at=0, authority=(1, 2), serial=(2, 6))


_FOUR_DIGITS = "the 4 characters before the last are digits"
_NEV_SMALL_DIGITS = "the last 4 characters of a small new-energy plate are digits"
_NEV_LARGE_DIGITS = "positions 3 to 7 of a large new-energy plate are digits"

ORDINARY = Shape(PlateSeries.ORDINARY, (_PROVINCE, _AUTHORITY) + (_SERIAL,) * 5,
                 "province, authority letter, 5 serial characters", "start",
                 province_at=0, authority=(1, 2), serial=(2, 7))
NEW_ENERGY_SMALL = Shape(
    PlateSeries.NEW_ENERGY_SMALL,
    (_PROVINCE, _AUTHORITY, Slot(SlotKind.ENERGY, ENERGY_LETTERS, "small new-energy plates"),
     _SERIAL) + (_digit(_NEV_SMALL_DIGITS),) * 4,
    "province, authority letter, energy letter, serial character, 4 digits", "start",
    province_at=0, authority=(1, 2), serial=(2, 8), energy_at=2)
NEW_ENERGY_LARGE = Shape(
    PlateSeries.NEW_ENERGY_LARGE,
    (_PROVINCE, _AUTHORITY) + (_digit(_NEV_LARGE_DIGITS),) * 5
    + (Slot(SlotKind.ENERGY, ENERGY_LETTERS, "large new-energy plates"),),
    "province, authority letter, 5 digits, energy letter", "start",
    province_at=0, authority=(1, 2), serial=(2, 8), energy_at=7)
TRAILER = _suffixed(PlateSeries.TRAILER, "挂", "trailer")
COACH = _suffixed(PlateSeries.COACH, "学", "coach")
POLICE = _suffixed(PlateSeries.POLICE, "警", "police")
CONSULATE = _suffixed(PlateSeries.CONSULATE, "领", "consulate")
HONG_KONG_MACAU = Shape(
    PlateSeries.HONG_KONG_MACAU,
    (_fixed("粤", "Hong Kong and Macau plates are issued by Guangdong: the 1st character is 粤"),
     _fixed("Z", "Hong Kong and Macau plates have authority letter Z (粤Z)"),
     _SERIAL, _SERIAL, _SERIAL, _SERIAL,
     _fixed("港澳", "cross-border plates end in 港 or 澳")),
    "粤Z, 4 serial characters, 港 or 澳", "end",
    province_at=0, authority=(1, 2), serial=(2, 6))
_EMBASSY_NOTE = "embassy plates are 使 and 6 digits (3 for the mission, 3 for the car)"
EMBASSY_FRONT = Shape(PlateSeries.EMBASSY, (_fixed("使", _EMBASSY_NOTE),)
                      + (_digit(_EMBASSY_NOTE),) * 6,
                      "使 then 6 digits (mission, car)", "end", serial=(1, 7))
EMBASSY_BACK = Shape(PlateSeries.EMBASSY, (_digit(_EMBASSY_NOTE),) * 6
                     + (_fixed("使", _EMBASSY_NOTE),),
                     "6 digits (mission, car) then 使", "end", serial=(0, 6))
_EMERGENCY_END = (_fixed("应", "emergency-rescue plates end in 应急"),
                  _fixed("急", "emergency-rescue plates end in 应急"))
EMERGENCY_LOCAL = Shape(
    PlateSeries.EMERGENCY,
    (_PROVINCE, _fixed("XS", "local emergency-rescue plates have X (fire) or S (forest fire) "
                             "after the province"))
    + (_digit("a local emergency-rescue plate has 4 digits before 应急"),) * 4 + _EMERGENCY_END,
    "province, X (fire) or S (forest fire), 4 digits, 应急", "end",
    province_at=0, authority=(1, 2), serial=(2, 6))
EMERGENCY_MINISTRY = Shape(
    PlateSeries.EMERGENCY,
    (_PROVINCE,) + (_digit("a ministry emergency-rescue plate has 5 digits before 应急"),) * 5
    + _EMERGENCY_END,
    "province, 5 digits, 应急", "end", province_at=0, serial=(1, 6))
_WJ = (_fixed("W", "armed-police plates start with WJ"),
       _fixed("J", "armed-police plates start with WJ"))
_WJ_LAST = Slot(SlotKind.SERIAL, SERIAL_CHARS,
                "the last character of an armed-police plate is a digit or a service letter")
ARMED_POLICE_PROVINCIAL = Shape(
    PlateSeries.ARMED_POLICE,
    (*_WJ, _PROVINCE) + (_digit("an armed-police plate has 4 digits after WJ and the "
                                "province"),) * 4 + (_WJ_LAST,),
    "WJ, province, 4 digits, digit or service letter", "start",
    province_at=2, authority=(0, 2), serial=(3, 8))
ARMED_POLICE_HEADQUARTERS = Shape(
    PlateSeries.ARMED_POLICE,
    _WJ + (_digit("a headquarters armed-police plate has 4 digits after WJ"),) * 4
    + (_WJ_LAST,),
    "WJ, 4 digits, digit or service letter", "start",
    authority=(0, 2), serial=(2, 7))
MILITARY = Shape(PlateSeries.MILITARY,
                 (_LETTER, _LETTER) + (_digit("military plates end in 5 digits"),) * 5,
                 "2 letters (unit code), 5 digits", "start", authority=(0, 2),
                 serial=(2, 7))

#: Every shape, in the order they are tried. ``WJ12345`` also fits the military shape, so
#: armed police comes first.
SHAPES: Final[tuple[Shape, ...]] = (
    ARMED_POLICE_PROVINCIAL, ARMED_POLICE_HEADQUARTERS, EMBASSY_FRONT, EMBASSY_BACK,
    EMERGENCY_LOCAL, EMERGENCY_MINISTRY, HONG_KONG_MACAU, TRAILER, COACH, POLICE, CONSULATE,
    NEW_ENERGY_SMALL, NEW_ENERGY_LARGE, ORDINARY, MILITARY,
)
_SUFFIX_SHAPES: Final = {"挂": TRAILER, "学": COACH, "警": POLICE, "领": CONSULATE,
                         "港": HONG_KONG_MACAU, "澳": HONG_KONG_MACAU}


# The plate ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plate:
    """A valid plate: its canonical text (no separators) and what the grammar knows of it.

    >>> plate = parse_plate("粤B12345D")
    >>> (plate.series.label_zh, plate.colour.label_zh, plate.energy, plate.display)
    ('大型新能源', '黄绿牌', 'electric', '粤B·12345D')
    """

    text: str
    series: PlateSeries
    province: str | None
    #: The issuing-authority letter; the two-letter code for WJ and military plates.
    authority: str | None
    #: The characters after province and authority (for 警/学/... plates, before the suffix).
    serial: str
    energy: Energy | None = None
    #: Soft rules the plate breaks without being invalid (shown to installers, never refused).
    warnings: tuple[str, ...] = ()

    @property
    def colour(self) -> ColourClass:
        return self.series.colour

    @property
    def display(self) -> str:
        """The plate as painted: ``粤B·12345`` (a dot after the issuing authority)."""
        if self.province is not None and self.text[:1] == self.province and self.authority:
            return f"{self.text[:2]}·{self.text[2:]}"
        return self.text

    def __str__(self) -> str:
        return self.text


def parse_plate(text: str) -> Plate:
    """The :class:`Plate` written in ``text``, or :class:`PlateError` naming the position at
    fault and why. Presentation is cleaned first (width, case, ``·``, spaces, dashes); letters
    and digits are taken as written."""
    cleaned = tidy(text)
    if not cleaned:
        raise PlateError(text, None, "is empty")
    for shape in SHAPES:
        if shape.fits(cleaned):
            return shape.plate(cleaned)
    raise _diagnose(cleaned)


def is_plate(text: str) -> bool:
    """True if :func:`parse_plate` would accept ``text``."""
    cleaned = tidy(text)
    return any(shape.fits(cleaned) for shape in SHAPES)


def shapes_of_length(length: int) -> tuple[Shape, ...]:
    """The shapes a text of ``length`` characters could fill (for the normaliser's repairs)."""
    return tuple(shape for shape in SHAPES if len(shape.slots) == length)


# Why a text is not a plate ----------------------------------------------------------------


def _diagnose(text: str) -> PlateError:
    """Work out which series ``text`` was meant to be and what breaks it."""
    if text.startswith("#"):
        return PlateError(text, 0, "is a no-plate identity (phone or ticket), not a plate")
    for index, char in enumerate(text):
        if char in OUT_OF_SCOPE_CHARS:
            return PlateError(text, index, f"{OUT_OF_SCOPE_CHARS[char]} plates are recognised "
                                           "but not handled by ParkGuard")
        if char == UNKNOWN:
            return PlateError(text, index, "the character could not be read")
    if len(text) > MAX_PLATE_LENGTH + 1:
        return PlateError(text, None, f"is {len(text)} characters; plates have 7 or 8")
    last = text[-1]
    if text.startswith("WJ"):
        third = text[2:3]
        shape = ARMED_POLICE_PROVINCIAL if third and third not in DIGITS \
            else ARMED_POLICE_HEADQUARTERS
        return _against(text, shape)
    if "使" in text:
        where = text.index("使")
        if where not in (0, len(text) - 1):
            return PlateError(text, where, "'使' is the first (or last) character of an embassy "
                                           "plate")
        return _against(text, EMBASSY_FRONT if where == 0 else EMBASSY_BACK)
    if "应" in text or "急" in text:
        if not text.endswith("应急"):
            where = min(text.index(char) for char in "应急" if char in text)
            return PlateError(text, where, "'应急' ends an emergency-rescue plate")
        second = text[1:2]
        return _against(text, EMERGENCY_LOCAL if second in LETTERS else EMERGENCY_MINISTRY)
    if last in _SUFFIX_SHAPES:
        return _against(text, _SUFFIX_SHAPES[last])
    for index, char in enumerate(text):
        if char in SPECIAL_CHARS:
            return PlateError(text, index, _special_out_of_place(char))
    if text[0] in PROVINCES:
        return _provincial(text)
    if len(text) > 1 and text[0] in LETTERS and text[1] in LETTERS:
        return _against(text, MILITARY)
    return PlateError(text, 0, _slot_reason(_PROVINCE, text[0]))


def _provincial(text: str) -> PlateError:
    """Province-first text that fits no shape: ordinary up to 7 characters, new-energy at 8."""
    if len(text) <= len(ORDINARY.slots):
        return _against(text, ORDINARY)
    if len(text) > MAX_PLATE_LENGTH:
        return PlateError(text, MAX_PLATE_LENGTH,
                          "one character too many: plates have at most 8 characters")
    if text[2] in LETTERS:
        return _against(text, NEW_ENERGY_SMALL)
    if text[7] in LETTERS:
        return _against(text, NEW_ENERGY_LARGE)
    return PlateError(text, 2, "an 8-character plate is a new-energy plate: position 3 (small) "
                               "or position 8 (large) must be an energy letter (D A B C E "
                               "electric, F G H J K hybrid)")


def _against(text: str, shape: Shape) -> PlateError:
    """The first way ``text`` breaks ``shape`` (it never fits it)."""
    name = f"{shape.series.label_en} plates"
    wanted = len(shape.slots)
    if shape.anchor == "end" and len(text) != wanted:
        return PlateError(text, None, f"is {len(text)} characters; {name} have {wanted} "
                                      f"({shape.layout})")
    for index, (char, slot) in enumerate(zip(text, shape.slots, strict=False)):
        if char not in slot.allowed:
            return PlateError(text, index, _slot_reason(slot, char))
    if len(text) < wanted:
        return PlateError(text, len(text), f"missing: {name} have {wanted} characters "
                                           f"({shape.layout})")
    return PlateError(text, wanted, f"one character too many: {name} have {wanted} "
                                    f"characters ({shape.layout})")


def _special_out_of_place(char: str) -> str:
    if char in "港澳":
        return f"{char!r} can only be the last character (Hong Kong / Macau plates)"
    shape = _SUFFIX_SHAPES.get(char)
    series = shape.series.label_en if shape else "special"
    return f"{char!r} can only be the last character ({series} plates)"


def _slot_reason(slot: Slot, char: str) -> str:
    """Why ``char`` cannot stand where ``slot`` is, in words an installer understands."""
    kind = slot.kind
    if kind is SlotKind.PROVINCE:
        hint = " (is the province character missing?)" if char in LETTERS | DIGITS else ""
        return f"{char!r} is not one of the 31 province abbreviations{hint}"
    if kind is SlotKind.AUTHORITY:
        if char == "I":
            return "'I' is never used as an issuing-authority letter"
        if char in DIGITS:
            return (f"{char!r} is a digit; the 2nd character is the issuing-authority letter "
                    "(A-Z without I)")
        return (f"{char!r} is not a capital letter; the 2nd character is the issuing-authority "
                "letter (A-Z without I)")
    if kind is SlotKind.ENERGY:
        return (f"{char!r} is not a new-energy letter: {slot.note} have D A B C E (electric) "
                "or F G H J K (hybrid) here")
    if kind is SlotKind.DIGIT:
        return f"{char!r} is not a digit: {slot.note}"
    if kind is SlotKind.LETTER:
        return f"{char!r} is not a capital letter: military plates start with 2 letters"
    if kind is SlotKind.FIXED:
        return f"{char!r} is wrong here: {slot.note}"
    # SERIAL
    if char in "IO":
        digit = "1" if char == "I" else "0"
        return f"{char!r} is never used in a serial (it would read as {digit})"
    if char in SPECIAL_CHARS:
        return _special_out_of_place(char)
    if char in PROVINCES:
        return f"{char!r} is a province abbreviation; serial characters are digits and letters"
    note = f": {slot.note}" if slot.note else ""
    return (f"{char!r} is not a serial character (digits and capital letters except I and O)"
            f"{note}")


def _soft_warnings(text: str, shape: Shape) -> tuple[str, ...]:
    """Rules real plates keep but a valid text may break: worth a look, never a refusal."""
    warnings: list[str] = []
    if shape.series is PlateSeries.ORDINARY:
        letters = sum(char in LETTERS for char in text[2:])
        if letters > 2:
            warnings.append(f"serial has {letters} letters; ordinary plates rarely have more "
                            "than 2")
    if shape.series is not PlateSeries.POLICE and shape.province_at == 0 \
            and text[1:2] == "O":
        warnings.append("issuing authority O is normally kept for police and government "
                        "vehicles")
    if shape.series is PlateSeries.MILITARY:
        warnings.append("military unit letters are not checked (the table changed in 2016)")
    return tuple(warnings)
