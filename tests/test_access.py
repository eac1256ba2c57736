"""The pure entry rules for passes and lists: precedence, family passes, lapses, replicas."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import parkguard.core.access
from parkguard.core.access import (
    MAX_LINE_CHARS,
    Access,
    AccessError,
    ListEntry,
    Pass,
    PassKind,
    billable_span,
    entry_access,
    list_entry_from_json,
    list_entry_to_json,
    pass_from_json,
    pass_to_json,
)
from parkguard.core.privacy import mask_phone

NOW = datetime(2026, 5, 10, 2, 0, tzinfo=UTC)
DAY = timedelta(days=1)
A, B, C = "沪A12345", "沪B67890", "京AD12345"


def monthly(plate: str = A, *, start: datetime = NOW - 3 * DAY, days: float = 30,
            ident: str = "M1", revoked_at: datetime | None = None) -> Pass:
    return Pass(ident, "monthly", "李雷", frozenset({plate}), start,
                start + timedelta(days=days), revoked_at=revoked_at)


def family(*plates: str, max_inside: int = 1) -> Pass:
    return Pass("F1", "family", "王芳", frozenset(plates or (A, B)), NOW - 3 * DAY,
                NOW + 27 * DAY, phone="13812345678", max_inside=max_inside)


def decide(plate: str, *, passes: tuple[Pass, ...] = (), lists: tuple[ListEntry, ...] = (),
           occupied: frozenset[str] = frozenset(), now: datetime = NOW) -> Access:
    return entry_access(plate, now, passes=passes, lists=lists, occupied=occupied)


def test_module_examples_run() -> None:
    assert doctest.testmod(parkguard.core.access).failed == 0


# --- precedence ------------------------------------------------------------------------------


@pytest.mark.parametrize(("passes", "lists", "occupied", "kind", "reason"), [
    ((), (), (), "visitor", "no_pass"),
    ((monthly(),), (), (), "pass", "pass_valid"),
    ((monthly(),), (ListEntry("blacklist", A, "stolen plate"),), (), "blacklisted",
     "blacklisted"),
    ((), (ListEntry("whitelist", A, "landlord"),), (), "whitelisted", "whitelisted"),
    ((monthly(),), (ListEntry("whitelist", A, "staff"),), (), "whitelisted", "whitelisted"),
    ((), (ListEntry("whitelist", A, "staff"), ListEntry("blacklist", A, "fraud")), (),
     "blacklisted", "blacklisted"),
    ((family(),), (), ("F1",), "visitor", "pass_in_use"),
    ((monthly(),), (), ("M1",), "visitor", "pass_in_use"),
    ((monthly(start=NOW - 40 * DAY),), (), (), "visitor", "pass_expired"),
    ((monthly(start=NOW + DAY),), (), (), "visitor", "pass_not_yet_valid"),
    ((monthly(revoked_at=NOW - DAY),), (), (), "visitor", "pass_revoked"),
    ((monthly(B),), (), (), "visitor", "no_pass"),
])
def test_entry_follows_the_order_of_precedence(
        passes: tuple[Pass, ...], lists: tuple[ListEntry, ...], occupied: tuple[str, ...],
        kind: str, reason: str) -> None:
    access = decide(A, passes=passes, lists=lists, occupied=frozenset(occupied))
    assert (access.kind, access.reason) == (kind, reason)
    assert (access.pass_id is not None) == (kind == "pass")


@pytest.mark.parametrize(("kind", "zh", "en"), [
    ("pass", "月卡 剩余27天", "Pass: 27 days left"),
    ("blacklisted", "禁止入场 请联系管理处", "Entry refused: please call the office"),
    ("in_use", "家庭卡已有车在场 按临时车计费", "Pass in use: pay as visitor"),
    ("expired", "月卡已过期 按临时车计费", "Pass expired: pay as visitor"),
])
def test_the_lane_display_says_why_in_chinese_and_english(kind: str, zh: str, en: str) -> None:
    access = {
        "pass": lambda: decide(A, passes=(monthly(),)),
        "blacklisted": lambda: decide(A, lists=(ListEntry("blacklist", A, "x"),)),
        "in_use": lambda: decide(B, passes=(family(),), occupied=frozenset({"F1"})),
        "expired": lambda: decide(A, passes=(monthly(start=NOW - 31 * DAY),)),
    }[kind]()
    assert (access.display_zh, access.display_en) == (zh, en)
    assert len(access.display_zh) <= MAX_LINE_CHARS and len(access.display_en) <= MAX_LINE_CHARS


def test_the_blacklist_reason_is_for_staff_not_the_display() -> None:
    access = decide(A, lists=(ListEntry("blacklist", A, "unpaid fees since March"),))
    assert access.note == "unpaid fees since March"
    assert "March" not in access.display_en


def test_days_left_counts_a_started_day_and_the_last_day_is_singular() -> None:
    access = decide(A, passes=(monthly(start=NOW - 29.5 * DAY),))
    assert (access.days_left, access.display_en) == (1, "Pass: 1 day left")


def test_the_window_is_half_open() -> None:
    pass_ = monthly(start=NOW)
    assert decide(A, passes=(pass_,), now=NOW).kind == "pass"
    assert decide(A, passes=(pass_,), now=pass_.valid_until).reason == "pass_expired"
    assert decide(A, passes=(pass_,), now=NOW - timedelta(milliseconds=1)).reason == \
        "pass_not_yet_valid"


def test_expired_list_entries_are_ignored() -> None:
    ban = ListEntry("blacklist", A, "one-week ban", until=NOW + timedelta(seconds=1))
    assert decide(A, lists=(ban,)).kind == "blacklisted"
    assert decide(A, lists=(ban,), now=ban.until or NOW).kind == "visitor"


def test_any_spelling_of_the_plate_finds_its_pass() -> None:
    assert decide("沪a·12345", passes=(monthly(),)).pass_id == "M1"


def test_a_family_pass_admits_each_of_its_cars_when_none_is_inside() -> None:
    pass_ = family(A, B, C, max_inside=2)
    assert {decide(p, passes=(pass_,)).kind for p in (A, B, C)} == {"pass"}
    assert decide(C, passes=(pass_,), occupied=frozenset({"F1"})).reason == "pass_in_use"


def test_a_lapsed_pass_does_not_hide_the_plates_next_pass() -> None:
    old = monthly(start=NOW - 35 * DAY, ident="M-old")
    new = monthly(start=NOW - 5 * DAY, ident="M-new")
    assert decide(A, passes=(old, new)).pass_id == "M-new"


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Pass("P", "monthly", "x", frozenset({A, B}), NOW, NOW + DAY),
     "plates: a monthly pass has exactly one plate, got 2"),
    (lambda: Pass("P", "family", "x", frozenset({A}), NOW, NOW + DAY),
     "plates: a family pass has 2 to 5"),
    (lambda: Pass("P", "family", "x", frozenset({A, "沪a12345"}), NOW, NOW + DAY),
     "got 1"),
    (lambda: Pass("P", "family", "x", frozenset(f"沪A1234{i}" for i in range(6)), NOW,
                  NOW + DAY), "got 6"),
    (lambda: Pass("P", "monthly", "x", frozenset({"ABC"}), NOW, NOW + DAY),
     "plates: 'ABC' is not a plate"),
    (lambda: Pass("P", "monthly", "x", frozenset({A}), NOW, NOW), "valid_until: "),
    (lambda: Pass("P", "monthly", "x", frozenset({A}), datetime(2026, 5, 1),
                  NOW), "valid_from: naive"),
    (lambda: Pass("P", "monthly", " ", frozenset({A}), NOW, NOW + DAY), "holder: "),
    (lambda: Pass("P", "weekly", "x", frozenset({A}), NOW, NOW + DAY),  # type: ignore[arg-type]
     "kind: "),
    (lambda: Pass("P", "monthly", "x", frozenset({A}), NOW, NOW + DAY, phone="call me"),
     "phone: "),
    (lambda: Pass("P", "family", "x", frozenset({A, B}), NOW, NOW + DAY, max_inside=3),
     "max_inside: must be 1..2"),
    (lambda: ListEntry("greylist", A, "x"), "list_name: "),  # type: ignore[arg-type]
    (lambda: ListEntry("blacklist", A, ""), "reason: "),
])
def test_nonsense_passes_and_list_entries_are_refused_naming_the_field(
        make: object, message: str) -> None:
    with pytest.raises(AccessError, match=message):
        make()  # type: ignore[operator]


def test_plates_are_stored_normalised_and_times_in_utc() -> None:
    shanghai = timezone(timedelta(hours=8))
    pass_ = Pass("P", "monthly", "x", frozenset({"沪a 12345"}),
                 datetime(2026, 5, 1, tzinfo=shanghai), datetime(2026, 6, 1, tzinfo=shanghai))
    assert pass_.plates == frozenset({A})
    assert pass_.valid_from == datetime(2026, 4, 30, 16, tzinfo=UTC)
    assert pass_.valid_from.tzinfo == UTC


def test_the_phone_is_never_printed_unmasked() -> None:
    pass_ = family()
    assert "13812345678" not in repr(pass_)
    assert pass_.masked_phone == "138****5678"
    assert "13812345678" not in str(pass_to_json(pass_))
    assert mask_phone("+86 138 1234 5678".replace(" ", "")) == "+86138****5678"


# --- billing a lapse -------------------------------------------------------------------------


def test_a_stay_inside_the_pass_window_has_nothing_to_bill() -> None:
    assert billable_span(NOW, NOW + 5 * DAY, monthly()) is None


def test_a_driver_whose_pass_lapses_while_parked_pays_from_the_lapse() -> None:
    pass_ = monthly()
    exit_ = pass_.valid_until + timedelta(hours=3)
    assert billable_span(NOW, exit_, pass_) == (pass_.valid_until, exit_)


def test_a_revoked_pass_stops_covering_at_the_revocation() -> None:
    pass_ = monthly(revoked_at=NOW + DAY)
    assert billable_span(NOW, NOW + 2 * DAY, pass_) == (NOW + DAY, NOW + 2 * DAY)


def test_a_pass_lapsed_before_the_entry_covers_nothing() -> None:
    pass_ = monthly(start=NOW - 40 * DAY)
    assert billable_span(NOW, NOW + DAY, pass_) == (NOW, NOW + DAY)


def test_an_exit_before_the_entry_is_refused() -> None:
    with pytest.raises(AccessError, match="exit: "):
        billable_span(NOW, NOW - DAY, monthly())


# --- replicas --------------------------------------------------------------------------------


def test_passes_and_list_entries_survive_the_trip_to_a_lane() -> None:
    pass_ = Pass("F9", "family", "王芳", frozenset({A, B}), NOW, NOW + DAY,
                 vehicle_class="small", phone="13812345678", max_inside=2,
                 revoked_at=NOW + DAY / 2)
    copy = pass_from_json(pass_to_json(pass_))
    assert (copy.plates, copy.valid_until, copy.revoked_at, copy.max_inside) == (
        pass_.plates, pass_.valid_until, pass_.revoked_at, 2)
    assert (copy.holder, copy.phone) == ("王*", None)
    assert pass_from_json(pass_to_json(pass_, private=True)) == pass_
    entry = ListEntry("blacklist", A, "fraud", until=NOW + DAY)
    assert list_entry_from_json(list_entry_to_json(entry)) == entry


# --- properties ------------------------------------------------------------------------------

PLATES = st.sampled_from([A, B, C, "粤B12345", "京A1234警"])
MOMENTS = st.integers(-60 * 24, 60 * 24).map(lambda h: NOW + timedelta(hours=h))


@st.composite
def passes(draw: st.DrawFn) -> Pass:
    start = draw(MOMENTS)
    kind: PassKind = draw(st.sampled_from(["monthly", "family"]))
    plates = draw(st.frozensets(PLATES, min_size=1, max_size=1) if kind == "monthly"
                  else st.frozensets(PLATES, min_size=2, max_size=5))
    revoked = draw(st.one_of(st.none(), MOMENTS))
    return Pass(f"P{draw(st.integers(0, 999))}", kind, "holder", plates, start,
                start + timedelta(hours=draw(st.integers(1, 24 * 60))), revoked_at=revoked,
                max_inside=draw(st.integers(1, len(plates))))


LIST_ENTRIES = st.builds(ListEntry, st.sampled_from(["whitelist", "blacklist"]), PLATES,
                         st.sampled_from(["staff", "fraud", "landlord"]),
                         st.one_of(st.none(), MOMENTS))


def _unique_ids(found: list[Pass]) -> list[Pass]:
    return list({p.pass_id: p for p in found}.values())


@settings(max_examples=200)
@given(PLATES, MOMENTS, st.lists(passes(), max_size=6).map(_unique_ids),
       st.lists(LIST_ENTRIES, max_size=6), st.data())
def test_access_never_depends_on_the_order_of_passes_and_lists(
        plate: str, now: datetime, given_passes: list[Pass], lists: list[ListEntry],
        data: st.DataObject) -> None:
    occupied = data.draw(st.frozensets(st.sampled_from([p.pass_id for p in given_passes]))
                         if given_passes else st.just(frozenset[str]()))
    first = entry_access(plate, now, passes=given_passes, lists=lists, occupied=occupied)
    again = entry_access(plate, now, passes=data.draw(st.permutations(given_passes)),
                         lists=data.draw(st.permutations(lists)), occupied=occupied)
    assert first == again
    assert len(first.display_zh) <= MAX_LINE_CHARS and len(first.display_en) <= MAX_LINE_CHARS


@given(PLATES, MOMENTS, st.lists(passes(), max_size=6), st.lists(LIST_ENTRIES, max_size=4),
       st.sets(st.text(max_size=4)), st.one_of(st.none(), MOMENTS))
def test_the_blacklist_always_refuses_whatever_passes_the_plate_holds(
        plate: str, now: datetime, given_passes: list[Pass], lists: list[ListEntry],
        occupied: set[str], until: datetime | None) -> None:
    ban = ListEntry("blacklist", plate, "stolen", until=None if until is None or until <= now
                    else until)
    access = entry_access(plate, now, passes=given_passes, lists=[*lists, ban],
                          occupied=occupied)
    assert access.kind == "blacklisted" and access.refused and not access.free


@given(st.frozensets(PLATES, min_size=2, max_size=5), MOMENTS, st.data())
def test_a_family_pass_never_admits_a_second_car_while_occupied(
        plates: frozenset[str], now: datetime, data: st.DataObject) -> None:
    pass_ = Pass("F", "family", "王芳", plates, now - DAY, now + DAY)
    for plate in plates:
        access = entry_access(plate, now, passes=[pass_], lists=[], occupied={"F"})
        assert access.kind == "visitor" and access.reason == "pass_in_use"
    plate = data.draw(st.sampled_from(sorted(plates)))
    assert entry_access(plate, now, passes=[pass_], lists=[], occupied=set()).kind == "pass"


@given(passes(), MOMENTS, st.integers(0, 24 * 90))
def test_the_billable_span_lies_within_the_stay_and_is_none_when_the_pass_covers_it(
        pass_: Pass, entry: datetime, hours: int) -> None:
    exit_ = entry + timedelta(hours=hours)
    span = billable_span(entry, exit_, pass_)
    if exit_ <= max(entry, pass_.lapses_at):
        assert span is None
    else:
        assert span is not None
        start, end = span
        assert entry <= start < end == exit_
        assert start == max(entry, pass_.lapses_at)
