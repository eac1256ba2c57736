"""Plate grammar, normalisation and no-plate identities: every series valid and invalid, with
the error text; properties of the normaliser; the docstring examples of the package."""

from __future__ import annotations

import doctest
import importlib
import pickle

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from parkguard.core.plates import (
    SHAPES,
    ColourClass,
    NoPlateId,
    PlateError,
    PlateSeries,
    Shape,
    is_no_plate,
    is_plate,
    normalise_plate,
    normalise_with_corrections,
    parse_plate,
)
from parkguard.core.plates.charset import PROVINCE_ORDER, PROVINCES
from parkguard.core.plates.grammar import SlotKind
from parkguard.errors import ConfigError, ParkGuardError

S = PlateSeries
C = ColourClass

# Valid plates: every series, with what the parser must know about each ---------------------

VALID = [
    # text, series, colour, province, authority, serial, energy
    ("京A12345", S.ORDINARY, C.BLUE_OR_YELLOW, "京", "A", "12345", None),
    ("苏EAB123", S.ORDINARY, C.BLUE_OR_YELLOW, "苏", "E", "AB123", None),  # 2 letters in serial
    ("京O12345", S.ORDINARY, C.BLUE_OR_YELLOW, "京", "O", "12345", None),  # O is not rejected
    ("沪AD12345", S.NEW_ENERGY_SMALL, C.GRADIENT_GREEN, "沪", "A", "D12345", "electric"),
    ("沪AFA2345", S.NEW_ENERGY_SMALL, C.GRADIENT_GREEN, "沪", "A", "FA2345", "hybrid"),
    ("沪AK12345", S.NEW_ENERGY_SMALL, C.GRADIENT_GREEN, "沪", "A", "K12345", "hybrid"),
    ("沪AC12345", S.NEW_ENERGY_SMALL, C.GRADIENT_GREEN, "沪", "A", "C12345", "electric"),
    ("粤B12345D", S.NEW_ENERGY_LARGE, C.YELLOW_GREEN, "粤", "B", "12345D", "electric"),
    ("粤B12345F", S.NEW_ENERGY_LARGE, C.YELLOW_GREEN, "粤", "B", "12345F", "hybrid"),
    ("鲁A1234挂", S.TRAILER, C.YELLOW, "鲁", "A", "1234", None),
    ("川A1234学", S.COACH, C.YELLOW, "川", "A", "1234", None),
    ("浙O1234警", S.POLICE, C.WHITE, "浙", "O", "1234", None),
    ("粤Z1234港", S.HONG_KONG_MACAU, C.BLACK, "粤", "Z", "1234", None),
    ("粤ZA123澳", S.HONG_KONG_MACAU, C.BLACK, "粤", "Z", "A123", None),
    ("沪A1234领", S.CONSULATE, C.BLACK, "沪", "A", "1234", None),
    ("使014578", S.EMBASSY, C.BLACK, None, None, "014578", None),
    ("014578使", S.EMBASSY, C.BLACK, None, None, "014578", None),
    ("琼X1234应急", S.EMERGENCY, C.WHITE, "琼", "X", "1234", None),
    ("川S1234应急", S.EMERGENCY, C.WHITE, "川", "S", "1234", None),
    ("京12345应急", S.EMERGENCY, C.WHITE, "京", None, "12345", None),
    ("WJ琼12345", S.ARMED_POLICE, C.WHITE, "琼", "WJ", "12345", None),
    ("WJ琼1234X", S.ARMED_POLICE, C.WHITE, "琼", "WJ", "1234X", None),
    ("WJ12345", S.ARMED_POLICE, C.WHITE, None, "WJ", "12345", None),  # HQ, not military
    ("VA12345", S.MILITARY, C.WHITE, None, "VA", "12345", None),
]


@pytest.mark.parametrize(("text", "series", "colour", "province", "authority", "serial",
                          "energy"), VALID)
def test_every_series_parses_with_its_colour_and_parts(
    text: str, series: PlateSeries, colour: ColourClass, province: str | None,
    authority: str | None, serial: str, energy: str | None,
) -> None:
    plate = parse_plate(text)
    assert (plate.text, plate.series, plate.colour) == (text, series, colour)
    assert (plate.province, plate.authority, plate.serial, plate.energy) == (
        province, authority, serial, energy)
    assert is_plate(text)
    assert str(plate) == text


def test_every_series_is_in_the_valid_table() -> None:
    assert {row[1] for row in VALID} == set(PlateSeries)


@pytest.mark.parametrize(("text", "duty"), [
    ("浙O1234警", True), ("琼X1234应急", True), ("WJ12345", True), ("VA12345", True),
    ("京A12345", False), ("川A1234学", False), ("粤Z1234港", False), ("使014578", False),
])
def test_duty_vehicles_are_police_rescue_armed_police_and_military(text: str,
                                                                   duty: bool) -> None:
    assert parse_plate(text).series.is_duty_vehicle is duty


def test_presentation_is_cleaned_before_parsing() -> None:
    for typed in ("粤B·12345", "粤b12345", "粤Ｂ１２３４５", " 粤B 123-45 ", "粤B‧12345"):
        assert parse_plate(typed).text == "粤B12345", typed


def test_display_puts_the_dot_after_the_issuing_authority() -> None:
    assert parse_plate("粤B12345").display == "粤B·12345"
    assert parse_plate("沪AD12345").display == "沪A·D12345"
    assert parse_plate("使014578").display == "使014578"
    assert parse_plate("WJ12345").display == "WJ12345"


def test_labels_for_the_control_room() -> None:
    plate = parse_plate("粤B12345D")
    assert (plate.series.label_zh, plate.series.label_en) == ("大型新能源", "large new-energy")
    assert plate.colour.label_zh == "黄绿牌"
    assert all(series.label_zh and series.label_en for series in PlateSeries)


@pytest.mark.parametrize(("text", "warning"), [
    ("京ABC123", None),  # serial BC123: 2 letters
    ("京AABC12", "serial has 3 letters; ordinary plates rarely have more than 2"),
    ("京O12345", "issuing authority O is normally kept for police and government vehicles"),
    ("VA12345", "military unit letters are not checked (the table changed in 2016)"),
])
def test_soft_rules_warn_but_never_refuse(text: str, warning: str | None) -> None:
    plate = parse_plate(text)
    assert plate.warnings == (() if warning is None else (warning,))


def test_police_plates_with_authority_o_do_not_warn() -> None:
    assert parse_plate("浙O1234警").warnings == ()


# Invalid texts: the position at fault and why -----------------------------------------------

INVALID = [
    # text, 0-based position (None: the whole text), message
    ("苏EA123", 6, "'苏EA123': position 7: missing: ordinary plates have 7 characters "
                   "(province, authority letter, 5 serial characters)"),
    ("京AI2345", 2, "'京AI2345': position 3: 'I' is never used in a serial (it would read as 1)"),
    ("京A1O345", 3, "'京A1O345': position 4: 'O' is never used in a serial (it would read as 0)"),
    ("沪AZ12345", 2, "'沪AZ12345': position 3: 'Z' is not a new-energy letter: small new-energy "
                     "plates have D A B C E (electric) or F G H J K (hybrid) here"),
    ("沪AD1234X", 7, "'沪AD1234X': position 8: 'X' is not a digit: the last 4 characters of a "
                     "small new-energy plate are digits"),
    ("粤B12345Z", 7, "'粤B12345Z': position 8: 'Z' is not a new-energy letter: large new-energy "
                     "plates have D A B C E (electric) or F G H J K (hybrid) here"),
    ("粤B12A45D", 4, "'粤B12A45D': position 5: 'A' is not a digit: positions 3 to 7 of a large "
                     "new-energy plate are digits"),
    ("沪A123456", 2, "'沪A123456': position 3: an 8-character plate is a new-energy plate: "
                     "position 3 (small) or position 8 (large) must be an energy letter "
                     "(D A B C E electric, F G H J K hybrid)"),
    ("京A1234567", 8, "'京A1234567': position 9: one character too many: plates have at most "
                      "8 characters"),
    ("京AI23456789", None, "'京AI23456789': is 11 characters; plates have 7 or 8"),
    ("京I12345", 1, "'京I12345': position 2: 'I' is never used as an issuing-authority letter"),
    ("京812345", 1, "'京812345': position 2: '8' is a digit; the 2nd character is the "
                    "issuing-authority letter (A-Z without I)"),
    ("A12345", 0, "'A12345': position 1: 'A' is not one of the 31 province abbreviations "
                  "(is the province character missing?)"),
    ("港A12345", 0, "'港A12345': position 1: '港' can only be the last character "
                    "(Hong Kong / Macau plates)"),
    ("粤B12警34", 4, "'粤B12警34': position 5: '警' can only be the last character "
                     "(police plates)"),
    ("浙O12345警", None, "'浙O12345警': is 8 characters; police plates have 7 (province, "
                         "authority letter, 4 serial characters, 警)"),
    ("鲁AI234挂", 2, "'鲁AI234挂': position 3: 'I' is never used in a serial (it would read "
                     "as 1)"),
    ("川A123学", None, "'川A123学': is 6 characters; coach plates have 7 (province, authority "
                       "letter, 4 serial characters, 学)"),
    ("沪A12O4领", 4, "'沪A12O4领': position 5: 'O' is never used in a serial (it would read "
                     "as 0)"),
    ("沪A1234港", 0, "'沪A1234港': position 1: '沪' is wrong here: Hong Kong and Macau plates "
                     "are issued by Guangdong: the 1st character is 粤"),
    ("粤B1234港", 1, "'粤B1234港': position 2: 'B' is wrong here: Hong Kong and Macau plates "
                     "have authority letter Z (粤Z)"),
    ("使01457A", 6, "'使01457A': position 7: 'A' is not a digit: embassy plates are 使 and 6 "
                    "digits (3 for the mission, 3 for the car)"),
    ("使01457", None, "'使01457': is 6 characters; embassy plates have 7 (使 then 6 digits "
                      "(mission, car))"),
    ("01使4578", 2, "'01使4578': position 3: '使' is the first (or last) character of an "
                    "embassy plate"),
    ("琼Y1234应急", 1, "'琼Y1234应急': position 2: 'Y' is wrong here: local emergency-rescue "
                       "plates have X (fire) or S (forest fire) after the province"),
    ("琼X12A4应急", 4, "'琼X12A4应急': position 5: 'A' is not a digit: a local emergency-rescue "
                       "plate has 4 digits before 应急"),
    ("京1234应急", None, "'京1234应急': is 7 characters; emergency-rescue plates have 8 "
                         "(province, 5 digits, 应急)"),
    ("琼X1234急应", 6, "'琼X1234急应': position 7: '应急' ends an emergency-rescue plate"),
    ("WJ琼1234O", 7, "'WJ琼1234O': position 8: 'O' is never used in a serial (it would read "
                     "as 0)"),
    ("WJ琼12A45", 5, "'WJ琼12A45': position 6: 'A' is not a digit: an armed-police plate has "
                     "4 digits after WJ and the province"),
    ("WJ1234", 6, "'WJ1234': position 7: missing: armed-police plates have 7 characters (WJ, "
                  "4 digits, digit or service letter)"),
    ("WJX12345", 2, "'WJX12345': position 3: 'X' is not one of the 31 province abbreviations "
                    "(is the province character missing?)"),
    ("AB1234C", 6, "'AB1234C': position 7: 'C' is not a digit: military plates end in 5 digits"),
    ("民航12345", 0, "'民航12345': position 1: civil-aviation (民航) plates are recognised but "
                     "not handled by ParkGuard"),
    ("粤B1?345", 3, "'粤B1?345': position 4: the character could not be read"),
    ("#P1234:ABCDEFGHJKLM", 0, "'#P1234:ABCDEFGHJKLM': position 1: is a no-plate identity "
                               "(phone or ticket), not a plate"),
    ("", None, "'': is empty"),
    (" · ", None, "' · ': is empty"),
]


@pytest.mark.parametrize(("text", "position", "message"), INVALID)
def test_invalid_texts_name_the_position_and_why(text: str, position: int | None,
                                                 message: str) -> None:
    with pytest.raises(PlateError) as caught:
        parse_plate(text)
    assert str(caught.value) == message
    assert caught.value.position == position
    assert not is_plate(text)


def test_every_series_has_an_invalid_case() -> None:
    covered = {"苏EA123": S.ORDINARY, "沪AZ12345": S.NEW_ENERGY_SMALL,
               "粤B12A45D": S.NEW_ENERGY_LARGE, "鲁AI234挂": S.TRAILER, "川A123学": S.COACH,
               "浙O12345警": S.POLICE, "沪A1234港": S.HONG_KONG_MACAU, "沪A12O4领": S.CONSULATE,
               "使01457A": S.EMBASSY, "琼Y1234应急": S.EMERGENCY, "WJ琼12A45": S.ARMED_POLICE,
               "AB1234C": S.MILITARY}
    assert set(covered.values()) == set(PlateSeries)
    assert set(covered) <= {row[0] for row in INVALID}


def test_plate_error_is_a_parkguard_value_error_with_position_and_reason() -> None:
    with pytest.raises(ValueError, match="position 3") as caught:
        parse_plate("京AI2345")
    error = caught.value
    assert isinstance(error, ParkGuardError) and isinstance(error, PlateError)
    assert (error.text, error.position) == ("京AI2345", 2)
    assert error.reason == "'I' is never used in a serial (it would read as 1)"
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes: a round trip)
    assert (str(copy), copy.position, copy.reason) == (str(error), 2, error.reason)


def test_the_31_provinces() -> None:
    assert len(PROVINCES) == 31 == len(PROVINCE_ORDER)
    for province in PROVINCE_ORDER:
        assert parse_plate(f"{province}A12345").province == province


# Properties of the grammar -------------------------------------------------------------------


@st.composite
def plates_of(draw: st.DrawFn, shape: Shape) -> str:
    return "".join(draw(st.sampled_from(sorted(slot.allowed))) for slot in shape.slots)


any_plate = st.sampled_from(SHAPES).flatmap(plates_of)


@given(any_plate)
def test_every_text_a_shape_allows_is_a_plate_of_a_series_with_that_shape(text: str) -> None:
    plate = parse_plate(text)
    assert plate.text == text
    assert any(shape.series is plate.series and shape.fits(text) for shape in SHAPES)


@given(st.sampled_from(SHAPES).flatmap(lambda shape: st.tuples(st.just(shape), plates_of(shape))),
       st.data())
def test_an_i_or_o_in_a_serial_or_digit_position_is_reported_there(
    shape_and_text: tuple[Shape, str], data: st.DataObject,
) -> None:
    shape, text = shape_and_text
    positions = [i for i, slot in enumerate(shape.slots)
                 if i >= 2 and slot.kind in (SlotKind.SERIAL, SlotKind.DIGIT, SlotKind.ENERGY)]
    assume(positions)
    position = data.draw(st.sampled_from(positions))
    letter = data.draw(st.sampled_from("IO"))
    spoilt = text[:position] + letter + text[position + 1:]
    with pytest.raises(PlateError) as caught:
        parse_plate(spoilt)
    assert caught.value.position == position
    assert f"'{letter}'" in caught.value.reason


# Normalisation ------------------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "normalised"), [
    ("粤B·12345", "粤B12345"),
    ("粤b１２３４５", "粤B12345"),
    ("  粤 B-123 45\t", "粤B12345"),
    ("粤Ｂ・１２３４５", "粤B12345"),
    ("京AI2345", "京A12345"),           # I is never a serial letter
    ("京A1O345", "京A10345"),           # nor O
    ("浙O1234警", "浙O1234警"),         # O as issuing authority stays
    ("沪A012345", "沪AD12345"),         # small NEV: only D is 0's twin among energy letters
    ("粤B123450", "粤B12345D"),         # large NEV: same, at the end
    ("粤B12345O", "粤B12345D"),         # O → 0 → D
    ("沪A012340", "沪A012340"),         # could be 沪AD12340 or 沪A01234D: left alone
    ("粤812345", "粤B12345"),           # the authority is a letter; 8's twin is B
    ("京012345", "京012345"),           # 0 could be D, O or Q there: left alone
    ("琼X12S4应急", "琼X1254应急"),     # digits only before 应急
    ("使0I4578", "使014578"),
    ("粤B1234S", "粤B1234S"),           # valid as written: never touched
    ("粤B1?345", "粤B1?345"),           # a read with an unknown: cleaned only
    ("#P1234:ABCDEFGHJKLM", "#P1234:ABCDEFGHJKLM"),  # no-plate identities keep their form
])
def test_normalisation(typed: str, normalised: str) -> None:
    assert normalise_plate(typed) == normalised


def test_normalisation_says_what_it_swapped_and_why() -> None:
    result = normalise_with_corrections("粤b·12345O")
    assert result.text == "粤B12345D"
    assert [str(c) for c in result.corrections] == [
        "position 8: O → D (the only look-alike this position allows)"]
    assert [str(c) for c in normalise_with_corrections("京AI2345").corrections] == [
        "position 3: I → 1 (I is never used after the 2nd character)"]
    assert normalise_with_corrections("粤b·12345").corrections == ()


plate_like = st.text(alphabet=st.sampled_from(
    list("京粤沪鄂苏使警港应急挂学WJABDOIQSZ0125689abdoiqsz０１Ｂｂ·- ?")), max_size=12)


@given(st.one_of(st.text(max_size=12), plate_like))
def test_normalisation_is_idempotent(text: str) -> None:
    once = normalise_plate(text)
    assert normalise_plate(once) == once


@given(any_plate)
def test_a_valid_plate_is_never_changed_by_normalisation(text: str) -> None:
    assert normalise_plate(text) == text
    assert normalise_plate(" " + text.lower() + " ") == text


@given(plate_like)
def test_normalisation_only_repairs_into_plates(text: str) -> None:
    result = normalise_with_corrections(text)
    repaired = [c for c in result.corrections if "look-alike" in c.reason]
    if repaired:
        assert is_plate(result.text)


# No-plate identities ------------------------------------------------------------------------

KEY = b"0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("typed", ["13800135678", "138 0013 5678", "138-0013-5678",
                                   "+86 138 0013 5678", "0086 13800135678", "8613800135678",
                                   "１３８００１３５６７８", "(138)00135678"])
def test_a_phone_number_gives_one_identity_however_it_is_typed(typed: str) -> None:
    assert NoPlateId.for_phone(typed, site_key=KEY) == NoPlateId.for_phone("13800135678",
                                                                           site_key=KEY)


def test_a_phone_identity_keeps_only_the_last_four_digits_and_a_keyed_digest() -> None:
    car = NoPlateId.for_phone("13800135678", site_key=KEY)
    assert car.kind == "phone"
    assert car.text.startswith("#P5678:") and len(car.text) == len("#P5678:") + 12
    assert "1380013" not in car.text and "0013" not in car.text
    assert car.masked == "尾号5678"
    assert NoPlateId.for_phone("13800135679", site_key=KEY) != car
    assert NoPlateId.for_phone("13800135678", site_key=KEY[::-1]) != car
    assert NoPlateId.parse(car.text) == car


@pytest.mark.parametrize(("typed", "message"), [
    ("1380013567", "'<phone>': has 10 digits; a mobile number has 11"),
    ("23800135678", "'<phone>': a mainland mobile number starts with 13 to 19"),
    ("1380013567x", "'<phone>': position 11: 'X' is not a digit"),
])
def test_a_bad_phone_number_is_refused_without_repeating_it(typed: str, message: str) -> None:
    with pytest.raises(PlateError) as caught:
        NoPlateId.for_phone(typed, site_key=KEY)
    assert str(caught.value) == message


def test_the_phone_hash_needs_a_real_site_key() -> None:
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        NoPlateId.for_phone("13800135678", site_key=b"short")


def test_ticket_identities() -> None:
    ticket = NoPlateId.for_ticket("pg1-8f2k-31qz")
    assert (ticket.text, ticket.kind, ticket.masked) == ("#QPG18F2K31QZ", "ticket", "票…31QZ")
    assert NoPlateId.for_ticket("#QPG18F2K31QZ") == ticket == NoPlateId.parse(ticket.text)
    with pytest.raises(PlateError, match="6 to 32 letters and digits"):
        NoPlateId.for_ticket("AB-1")
    with pytest.raises(PlateError, match="is not a no-plate identity"):
        NoPlateId.parse("粤B12345")


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
       st.from_regex(r"[A-Z0-9]{6,32}", fullmatch=True))
def test_a_no_plate_identity_never_parses_or_normalises_into_a_plate(phone: str,
                                                                     ticket: str) -> None:
    for identity in (NoPlateId.for_phone(phone, site_key=KEY), NoPlateId.for_ticket(ticket)):
        assert is_no_plate(identity.text)
        assert not is_plate(identity.text)
        assert normalise_plate(identity.text) == identity.text
        with pytest.raises(PlateError):
            parse_plate(identity.text)


@given(st.one_of(any_plate, plate_like))
def test_no_plate_or_normalised_read_is_ever_a_no_plate_identity(text: str) -> None:
    assume(not text.strip().startswith("#"))
    assert not is_no_plate(normalise_plate(text))


# The examples in the docstrings run -----------------------------------------------------------


@pytest.mark.parametrize("module", [
    "parkguard.core.plates", "parkguard.core.plates.errors", "parkguard.core.plates.grammar",
    "parkguard.core.plates.normalise", "parkguard.core.plates.identity",
    "parkguard.core.plates.policy", "parkguard.core.plates.distance",
    "parkguard.core.plates.index", "parkguard.core.plates.matching",
])
def test_docstring_examples(module: str) -> None:
    failed, attempted = doctest.testmod(importlib.import_module(module))
    assert failed == 0
    if module != "parkguard.core.plates.errors":
        assert attempted > 0
