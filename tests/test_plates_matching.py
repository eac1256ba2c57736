"""Fuzzy matching: the distance and its weights, the index against a brute-force scan, the
match / ambiguous / none rules, no-plate identities, and the policy's validation."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from parkguard.core.plates import (
    DEFAULT_POLICY,
    MatchPolicy,
    NoPlateId,
    OcrRead,
    PlateError,
    PlateIndex,
    confusion_distance,
    explain,
    match,
    parse_plate,
)
from parkguard.core.plates.charset import PROVINCE_ORDER, SERIAL_CHARS, UNKNOWN
from parkguard.core.plates.distance import CONFUSION, CharCosts, Costs, distance_quarters

KEY = b"0123456789abcdef0123456789abcdef"

# The distance --------------------------------------------------------------------------------


@pytest.mark.parametrize(("read", "plate", "distance"), [
    ("粤B12345", "粤B12345", 0.0),
    ("粤B1234S", "粤B12345", 0.25),    # S/5: near-identical
    ("粤B1Z345", "粤B12345", 0.25),    # Z/2
    ("粤B12B45", "粤B12845", 0.25),    # B/8
    ("沪A012345", "沪AD12345", 0.25),  # 0/D
    ("沪AQ12345", "沪AD12345", 0.25),  # Q/D
    ("粤B1G345", "粤B16345", 0.25),    # G/6
    ("粤B17345", "粤B11345", 0.5),     # 7/1: often confused
    ("粤B12345", "粤B12395", 1.0),     # 4 for 9: unrelated
    ("鄂B12345", "粤B12345", 0.25),    # similar provinces
    ("苏B12345", "鄂B12345", 0.25),
    ("京B12345", "粤B12345", 0.5),     # any other province
    ("AB12345", "粤B12345", 1.0),      # a letter for a province
    ("粤B1?345", "粤B12345", 0.5),     # unreadable character
    ("B12345", "粤B12345", 0.5),       # lost first character
    ("粤B1234", "粤B12345", 0.5),      # lost last character
    ("粤B12345D", "粤B12345", 0.5),    # extra last character
    ("1粤B12345", "粤B12345", 0.5),    # extra first character (a screw read as 1)
    ("粤B1245", "粤B12345", 1.0),      # lost inside: a gap
    ("粤B1234S", "粤B12346", 1.0),
    ("粤b·1234s", "粤B12345", 0.25),   # reads are cleaned like plates
    ("京AI2345", "京A12345", 0.0),     # I in a serial is 1
])
def test_the_distance_weighs_what_plate_readers_confuse(read: str, plate: str,
                                                         distance: float) -> None:
    assert confusion_distance(read, plate) == distance


def test_one_and_seven_are_often_confused() -> None:
    assert confusion_distance("粤B17345", "粤B12345") == 1.0
    assert confusion_distance("粤B11345", "粤B17345") == 0.5


@pytest.mark.parametrize(("confidence", "distance"), [
    (1.0, 1.0), (0.9, 1.0), (0.7, 0.75), (0.5, 0.75), (0.3, 0.75), (0.2, 0.5), (0.0, 0.5)])
def test_a_low_confidence_makes_a_mistake_cheaper_but_never_cheaper_than_unknown(
    confidence: float, distance: float,
) -> None:
    read = OcrRead("粤B12349", (1.0,) * 6 + (confidence,))
    assert confusion_distance(read, "粤B12345") == distance


def test_a_confident_look_alike_stays_cheap() -> None:
    read = OcrRead("粤B1234S", (1.0,) * 6 + (0.1,))
    assert confusion_distance(read, "粤B12345") == 0.25


def test_the_costs_follow_the_policy() -> None:
    policy = MatchPolicy(unknown_cost=0.75, end_gap_cost=0.75, gap_cost=1.5, province_cost=0.75)
    assert confusion_distance("粤B1?345", "粤B12345", policy) == 0.75
    assert confusion_distance("B12345", "粤B12345", policy) == 0.75
    assert confusion_distance("粤B1245", "粤B12345", policy) == 1.5
    assert confusion_distance("京B12345", "粤B12345", policy) == 0.75


def test_explain_lists_the_edits_left_to_right() -> None:
    edits = explain("鄂B1?34", "粤B12345")
    assert [str(edit) for edit in edits] == [
        "position 1: read '鄂' for '粤' (0.25)",
        "position 4: '2' unreadable (0.5)",
        "position 7: '5' missing from the read (0.5)",
    ]
    assert [edit.kind for edit in edits] == ["substitute", "unknown", "lost"]
    assert sum(edit.cost for edit in edits) == confusion_distance("鄂B1?34", "粤B12345")
    assert [str(edit) for edit in explain("1粤B12345", "粤B12345")] == [
        "position 1: extra '1' in the read (0.5)"]
    assert explain("粤B12345", "粤B12345") == ()


def test_the_confusion_table_is_symmetric_and_cheaper_than_a_mistake() -> None:
    for a, row in CONFUSION.items():
        for b, cost in row.items():
            assert CONFUSION[b][a] == cost
            assert 0 < cost < 4


@given(st.sampled_from(sorted(SERIAL_CHARS | set(PROVINCE_ORDER) | {UNKNOWN, "I", "O", "港"})),
       st.floats(0, 1), st.sampled_from([DEFAULT_POLICY, MatchPolicy(unknown_cost=1.0),
                                          MatchPolicy(province_cost=1.0, unknown_cost=0.25)]))
def test_the_per_character_table_prices_like_the_definition(char: str, confidence: float,
                                                            policy: MatchPolicy) -> None:
    costs = Costs.of(policy)
    table = CharCosts.of(char, confidence, costs)
    for plate_char in sorted(SERIAL_CHARS | set(PROVINCE_ORDER) | {UNKNOWN, "O", "港", "澳"}):
        assert table.cost(plate_char) == costs.substitution(char, confidence, plate_char)


def test_a_read_needs_one_confidence_per_character_between_0_and_1() -> None:
    with pytest.raises(PlateError, match="has 7 characters but 2 confidences"):
        OcrRead("粤B12345", (0.9, 0.9))
    with pytest.raises(PlateError, match=r"position 2: confidence 1\.5 is not between 0 and 1"):
        OcrRead("粤B", (0.9, 1.5))
    with pytest.raises(PlateError, match="confidence nan"):
        OcrRead("粤B", (0.9, float("nan")))


def test_confidences_follow_their_characters_through_the_clean_up() -> None:
    read = OcrRead("粤B·1?3 45", (0.9, 0.8, 0.1, 0.7, 0.2, 0.6, 0.1, 0.5, 0.4)).normalised()
    assert read.text == "粤B1?345"
    assert read.confidences == (0.9, 0.8, 0.7, 0.2, 0.6, 0.5, 0.4)


# The index finds exactly what a brute-force scan finds ---------------------------------------

SERIAL = sorted(SERIAL_CHARS)
PROVINCES_SEEN = "粤鄂苏京沪"


@st.composite
def a_plate(draw: st.DrawFn) -> str:
    """Short alphabets on purpose: near neighbours, ties and province look-alikes are common."""
    province = draw(st.sampled_from(PROVINCES_SEEN))
    authority = draw(st.sampled_from("ABDS"))
    serial_char = st.sampled_from("0123568BDSZGQ")
    length = draw(st.sampled_from([5, 5, 5, 6]))
    return province + authority + "".join(draw(serial_char) for _ in range(length))


@st.composite
def a_plate_without_province_first(draw: st.DrawFn) -> str:
    """Armed-police, military and embassy shapes: same lengths, no province in front."""
    digits = "".join(draw(st.sampled_from("0123568")) for _ in range(5))
    return draw(st.sampled_from(["WJ", "VA", "使0"])) + digits


@st.composite
def a_read_of(draw: st.DrawFn, plate: str) -> OcrRead:
    chars = list(plate)
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, len(chars) - 1))
        edit = draw(st.sampled_from(["look-alike", "unknown", "any", "lose", "add"]))
        if edit == "look-alike" and chars[position] in CONFUSION:
            chars[position] = draw(st.sampled_from(sorted(CONFUSION[chars[position]])))
        elif edit == "unknown":
            chars[position] = UNKNOWN
        elif edit == "any":
            chars[position] = draw(st.sampled_from(SERIAL + list(PROVINCES_SEEN)))
        elif edit == "lose" and len(chars) > 3:
            del chars[position]
        elif edit == "add":
            chars.insert(position, draw(st.sampled_from("1粤8")))
    confidences = draw(st.lists(st.floats(0, 1), min_size=len(chars), max_size=len(chars)))
    return OcrRead("".join(chars), tuple(confidences))


policies = st.builds(
    MatchPolicy,
    max_distance=st.sampled_from([0.5, 1.0]),
    suggest_distance=st.sampled_from([1.0, 2.0, 3.0]),
    unknown_cost=st.sampled_from([0.25, 0.5, 1.0]),
    province_cost=st.sampled_from([0.25, 0.5, 1.0]),
    end_gap_cost=st.sampled_from([0.25, 0.5, 1.0]),
    gap_cost=st.sampled_from([1.0, 1.5, 2.0]),
)


def brute_force(read: OcrRead, plates: list[str], policy: MatchPolicy) -> list[tuple[int, str]]:
    costs = Costs.of(policy)
    normalised = read.normalised()
    return sorted((d, p) for p in plates
                  if (d := distance_quarters(normalised, p, costs)) <= costs.limit)


@settings(max_examples=300, deadline=None)
@given(st.lists(a_plate(), min_size=1, max_size=40, unique=True), st.data(), policies)
def test_the_index_finds_exactly_what_a_brute_force_scan_finds(
    plates: list[str], data: st.DataObject, policy: MatchPolicy,
) -> None:
    truth = data.draw(st.sampled_from(plates))
    read = data.draw(a_read_of(truth))
    assume(read.normalised().text)
    index = PlateIndex(plates)
    assert index.nearest(read.normalised(), Costs.of(policy)) == brute_force(read, plates,
                                                                              policy)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(a_plate(), a_plate_without_province_first()), min_size=2,
                max_size=30, unique=True), st.data())
def test_the_index_stays_exact_as_cars_come_and_go(plates: list[str],
                                                   data: st.DataObject) -> None:
    index = PlateIndex()
    inside: set[str] = set()
    for _ in range(data.draw(st.integers(1, 60))):
        plate = data.draw(st.sampled_from(plates))
        if plate in inside and data.draw(st.booleans()):
            assert index.discard(plate)
            inside.remove(plate)
        else:
            index.add(plate)
            inside.add(plate)
    assert sorted(index) == sorted(inside) and len(index) == len(inside)
    read = data.draw(a_read_of(data.draw(st.sampled_from(plates))))
    assume(read.normalised().text)
    assert index.nearest(read.normalised(), Costs.of(DEFAULT_POLICY)) == brute_force(
        read, sorted(inside), DEFAULT_POLICY)


def test_reads_and_plates_of_every_length_are_compared() -> None:
    plates = ["粤B12345", "粤BD12345", "粤B1234", "WJ12345", "粤B1?999"]
    index = PlateIndex(plates)
    for read in ["粤B12345", "B12345", "粤B12345D", "粤B1", "粤B1234567890", "粤B1?999", "?"]:
        ocr = OcrRead(read)
        assert index.nearest(ocr.normalised(), Costs.of(DEFAULT_POLICY)) == brute_force(
            ocr, plates, DEFAULT_POLICY), read


# Matching: the properties of the acceptance criteria ------------------------------------------


@given(st.lists(a_plate(), min_size=1, max_size=30, unique=True), st.data())
def test_a_plate_always_matches_itself(plates: list[str], data: st.DataObject) -> None:
    plate = data.draw(st.sampled_from(plates))
    result = match(OcrRead(plate), PlateIndex(plates))
    assert (result.outcome, result.plate, result.score) == ("match", plate, 0.0)


@pytest.mark.parametrize("policy", [DEFAULT_POLICY, MatchPolicy(min_margin=0.25)],
                         ids=["default margin", "strictly closer is enough"])
@settings(max_examples=200, deadline=None)
@given(st.lists(a_plate(), min_size=1, max_size=30, unique=True), st.data())
def test_one_look_alike_still_finds_the_plate_when_no_other_is_as_close(
    policy: MatchPolicy, plates: list[str], data: st.DataObject,
) -> None:
    truth = data.draw(st.sampled_from(plates))

    def look_alikes(char: str) -> list[str]:  # I and O in a serial are read as 1 and 0
        return sorted(set(CONFUSION.get(char, {})) - {"I", "O"})

    positions = [i for i, char in enumerate(truth) if look_alikes(char)]
    position = data.draw(st.sampled_from(positions))
    read = (truth[:position] + data.draw(st.sampled_from(look_alikes(truth[position])))
            + truth[position + 1:])
    own = confusion_distance(read, truth, policy)
    # "no other open plate is within the same distance", by the policy's own margin
    others = [p for p in plates
              if p != truth and confusion_distance(read, p, policy) >= own + policy.min_margin]
    assume(own <= policy.max_distance)
    result = match(read, PlateIndex([truth, *others]), policy)
    assert (result.outcome, result.plate, result.score) == ("match", truth, own)
    assert 0 < own <= 0.5


@given(st.lists(a_plate(), min_size=1, max_size=30, unique=True), a_plate(), st.data())
def test_two_equally_close_candidates_are_ambiguous_never_a_guess(
    others: list[str], plate: str, data: st.DataObject,
) -> None:
    position = data.draw(st.integers(2, len(plate) - 1))
    twin_char = data.draw(st.sampled_from([c for c in SERIAL if c != plate[position]]))
    twin = plate[:position] + twin_char + plate[position + 1:]
    read = plate[:position] + UNKNOWN + plate[position + 1:]
    result = match(read, PlateIndex([plate, twin, *others]))
    assert result.outcome == "ambiguous"
    assert result.plate is None and result.score is None
    assert {plate, twin} <= {c.plate for c in result.candidates}


@settings(max_examples=200, deadline=None)
@given(st.lists(a_plate(), min_size=2, max_size=30, unique=True), st.data())
def test_the_outcome_follows_the_rules_for_any_read(plates: list[str],
                                                    data: st.DataObject) -> None:
    read = data.draw(a_read_of(data.draw(st.sampled_from(plates))))
    assume(read.normalised().text)
    ranked = brute_force(read, plates, DEFAULT_POLICY)
    result = match(read, PlateIndex(plates))
    assert [(c.score, c.plate) for c in result.candidates] == [
        (q * 0.25, p) for q, p in ranked[:DEFAULT_POLICY.max_suggestions]]
    if not ranked or ranked[0][0] * 0.25 > DEFAULT_POLICY.max_distance:
        assert result.outcome == "none"
    elif ranked[0][0] == 0:
        assert (result.outcome, result.plate) == ("match", ranked[0][1])
    elif len(ranked) > 1 and (ranked[1][0] - ranked[0][0]) * 0.25 < DEFAULT_POLICY.min_margin:
        assert result.outcome == "ambiguous"
    else:
        assert (result.outcome, result.plate) == ("match", ranked[0][1])
    if result.outcome == "match":
        assert result.score == ranked[0][0] * 0.25
        assert sum(edit.cost for edit in result.edits) == result.score


# Matching: the rules one by one ----------------------------------------------------------------


def test_a_match_keeps_the_raw_read_the_plate_the_score_and_why() -> None:
    index = PlateIndex(["粤B12345", "粤B12846", "沪AD12345"])
    result = match(OcrRead("粤b·1234S"), index)
    assert (result.outcome, result.raw, result.read) == ("match", "粤b·1234S", "粤B1234S")
    assert (result.plate, result.score) == ("粤B12345", 0.25)
    assert result.runner_up is not None and result.runner_up.plate == "粤B12846"
    assert result.reason == ("closest car inside is 0.25 away (position 7: read 'S' for '5' "
                             "(0.25)); next closest 粤B12846 (1.5)")
    evidence = json.loads(json.dumps(result.evidence(), ensure_ascii=False))
    assert evidence["raw_read"] == "粤b·1234S" and evidence["plate"] == "粤B12345"
    assert evidence["score"] == 0.25 and evidence["runner_up"]["plate"] == "粤B12846"
    assert evidence["edits"] == ["position 7: read 'S' for '5' (0.25)"]


def test_a_close_runner_up_makes_it_ambiguous() -> None:
    index = PlateIndex(["粤B12345", "粤B1234B"])
    result = match("粤B1234?", index)  # 0.5 from both
    assert result.outcome == "ambiguous"
    assert result.reason == ("粤B12345 (0.5) and 粤B1234B (0.5) are less than 0.5 apart: a "
                             "guard must choose")
    assert [c.plate for c in result.candidates] == ["粤B12345", "粤B1234B"]
    assert result.runner_up is not None and result.runner_up.plate == "粤B1234B"


def test_the_margin_decides_between_a_quarter_and_a_half() -> None:
    index = PlateIndex(["沪AD12345", "沪AQ12345"])
    read = OcrRead("沪A012345")  # 0/D 0.25, 0/Q 0.25
    assert match(read, index).outcome == "ambiguous"
    index = PlateIndex(["粤B12345", "粤B1234?"])
    assert match("粤B1234S", index).outcome == "ambiguous"  # 0.25 vs 0.5
    assert match("粤B1234S", index, MatchPolicy(min_margin=0.25)).plate == "粤B12345"


def test_an_exact_read_wins_unless_the_policy_says_otherwise() -> None:
    index = PlateIndex(["粤B12345", "粤B1234S"])
    result = match("粤B12345", index)
    assert (result.outcome, result.plate) == ("match", "粤B12345")
    assert result.reason == ("read exactly as a car inside; 粤B1234S (0.25) is also close, "
                             "but an exact read wins")
    assert match("粤B12345", index, MatchPolicy(exact_match_wins=False)).outcome == "ambiguous"


def test_too_far_is_none_with_the_closest_named() -> None:
    index = PlateIndex(["粤B12345"])
    assert match("粤B1?3?5", index).score == 1.0  # two unknowns: just within max_distance
    result = match("粤B1??4?", index)  # three unknowns: 1.5
    assert result.outcome == "none"
    assert result.reason == "closest car inside, 粤B12345, is 1.5 away; a match needs at most 1"
    assert [c.plate for c in result.candidates] == ["粤B12345"]
    assert result.plate is None and result.runner_up is None


def test_nothing_close_and_nothing_read_are_none() -> None:
    index = PlateIndex(["粤B12345"])
    assert match("京Q77777", index).reason == "no car inside is within 2 of the read"
    assert match(" · ", index).reason == "nothing was read"
    assert match("粤B12345", PlateIndex()).outcome == "none"


def test_the_guard_sees_at_most_max_suggestions() -> None:
    plates = [f"粤B1234{digit}" for digit in "0123456789"]
    result = match("粤B1234?", PlateIndex(plates))
    assert result.outcome == "ambiguous"
    assert len(result.candidates) == DEFAULT_POLICY.max_suggestions
    assert len(match("粤B1234?", PlateIndex(plates), MatchPolicy(max_suggestions=8))
               .candidates) == 8


def test_matching_is_against_cars_inside_only() -> None:
    index = PlateIndex(["粤B12345", "粤B67890"])
    assert match("粤B1234S", index).plate == "粤B12345"
    index.discard("粤B12345")
    assert match("粤B1234S", index).outcome == "none"


# No-plate identities ------------------------------------------------------------------------


def test_a_phone_car_matches_its_own_number_exactly_and_nothing_else() -> None:
    car = NoPlateId.for_phone("13800135678", site_key=KEY)
    index = PlateIndex(["粤B12345", car])
    result = match(NoPlateId.for_phone("138-0013-5678", site_key=KEY), index)
    assert (result.outcome, result.plate, result.score) == ("match", car.text, 0.0)
    assert result.reason == "no-plate identity 尾号5678 is inside"
    assert "13800135678" not in json.dumps(result.evidence())
    other = match(NoPlateId.for_phone("13800135679", site_key=KEY), index)
    assert (other.outcome, other.reason) == ("none", "no car inside entered with 尾号5679")
    assert match(car.text, index).plate == car.text  # the stored text works too


def test_a_plate_read_never_matches_a_no_plate_identity() -> None:
    ticket = NoPlateId.for_ticket("PG18F2K31QZ")
    index = PlateIndex([ticket])
    for read in ["PG18F2K31QZ", "QPG18F2K31QZ", "#QPG18F2K31Q", "粤B12345"]:
        assert match(read if not read.startswith("#") else OcrRead(read), index).outcome \
            == "none"
    assert match(ticket, index).outcome == "match"
    assert ticket in index and "#QPG18F2K31QZ" in index and len(index) == 1
    assert index.discard(ticket) and not index.discard(ticket) and len(index) == 0


# The index ------------------------------------------------------------------------------------


def test_the_index_normalises_what_it_stores() -> None:
    index = PlateIndex()
    assert index.add("粤b·12345") == "粤B12345"
    assert index.add(parse_plate("粤B12345")) == "粤B12345"  # again: harmless
    assert len(index) == 1 and "粤B 12345" in index and "粤B12346" not in index
    assert 42 not in index and "" not in index
    assert not index.discard("粤B99999")
    with pytest.raises(PlateError, match="is empty"):
        index.add(" · ")
    with pytest.raises(PlateError, match="at most 16 can be stored"):
        index.add("粤B" + "1" * 20)


def test_a_reused_slot_forgets_what_the_car_before_it_had() -> None:
    index = PlateIndex(["粤B12345"])
    index.discard("粤B12345")
    index.add("WJ12345")  # the same slot, no province in front
    read = OcrRead("粤J12345")
    expected = brute_force(read, ["WJ12345"], DEFAULT_POLICY)
    assert expected == [(4, "WJ12345")]  # 粤 for W is a whole mistake, not a province's 0.5
    assert index.nearest(read.normalised(), Costs.of(DEFAULT_POLICY)) == expected


def test_freed_slots_are_reused() -> None:
    index = PlateIndex()
    for round_ in range(5):
        plates = [f"粤B{round_}{n:04d}" for n in range(200)]
        for plate in plates:
            index.add(plate)
        for plate in plates:
            index.discard(plate)
    index.add("粤B12345")
    group = index._groups[7]
    assert len(group.texts) == 200
    assert match("粤B1234S", index).plate == "粤B12345"


# The policy -------------------------------------------------------------------------------------


def test_the_default_policy() -> None:
    assert DEFAULT_POLICY.model_dump() == {
        "max_distance": 1.0, "min_margin": 0.5, "exact_match_wins": True,
        "suggest_distance": 2.0, "max_suggestions": 5, "unknown_cost": 0.5,
        "province_cost": 0.5, "end_gap_cost": 0.5, "gap_cost": 1.0,
    }
    assert all(field.description for field in MatchPolicy.model_fields.values())


@pytest.mark.parametrize(("fields", "message"), [
    ({"max_distance": 0.3}, "Input should be a multiple of 0.25"),
    ({"min_margin": 0}, "Input should be greater than or equal to 0.25"),
    ({"max_distance": 2.5}, "suggest_distance 2.0 must not be below max_distance 2.5"),
    ({"end_gap_cost": 1.5}, "end_gap_cost 1.5 must not exceed gap_cost 1.0"),
    ({"max_suggestions": 1}, "Input should be greater than or equal to 2"),
    ({"threshold": 1.0}, "Extra inputs are not permitted"),
])
def test_a_bad_policy_is_refused_with_the_field_named(fields: dict[str, object],
                                                      message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MatchPolicy.model_validate(fields)


def test_the_policy_is_frozen() -> None:
    with pytest.raises(ValidationError):
        DEFAULT_POLICY.max_distance = 2.0


def test_match_policy_field_names_are_plain_words() -> None:
    allowed = set(string.ascii_lowercase + "_")
    assert all(set(name) <= allowed for name in MatchPolicy.model_fields)
