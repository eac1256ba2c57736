"""The tariff language rule by rule: steps and rounding, bands across midnight, caps, classes,
exemptions, coupons, the calendar, tariff versions, field-naming errors; and the mall file."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from parkguard.core.tariffs import (
    Coupon,
    HolidayCalendar,
    Quote,
    Tariff,
    TariffBook,
    format_yuan,
    parse_tariff_document,
    quote,
    run_vectors,
)
from parkguard.errors import TariffError

SHANGHAI = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parents[1]
MALL = ROOT / "docs/examples/tariff-mall.toml"
ORDINARY = "粤B12345"


def at(day: date, hh: int, mm: int = 0) -> datetime:
    """A site-local wall-clock time, handed to quote() in UTC as the lane would."""
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=SHANGHAI).astimezone(UTC)


MONDAY = date(2026, 3, 2)


def tariff(**overrides: Any) -> Tariff:
    """The mall's day/night tariff, without exemptions or coupons, changed by ``overrides``."""
    data: dict[str, Any] = {
        "name": "t", "version": "1", "effective_from": "2026-01-01",
        "free": {"minutes": 15, "mode": "threshold"},
        "periods": [
            {"name": "day", "label_zh": "日间", "label_en": "day", "when": "08:00-22:00",
             "cap_fen": 4000, "tiers": [{"upto_minutes": 60, "flat_fen": 500},
                                        {"every_minutes": 30, "step_fen": 200}]},
            {"name": "night", "label_zh": "夜间", "label_en": "night", "when": "22:00-08:00",
             "flat_fen": 1000},
        ],
    }
    data.update(overrides)
    return Tariff.model_validate(data)


def all_day(rounding: str = "ceil", **overrides: Any) -> Tariff:
    """One all-day band: first hour 500, then 200 per 30 min with the given rounding."""
    period = {"name": "all", "label_zh": "全天", "label_en": "all day", "when": "00:00-24:00",
              "tiers": [{"upto_minutes": 60, "flat_fen": 500},
                        {"every_minutes": 30, "step_fen": 200, "rounding": rounding}]}
    return tariff(periods=[period], **overrides)


def fee(t: Tariff | TariffBook, entry: datetime, exit_: datetime, **kw: Any) -> Quote:
    kw.setdefault("plate", ORDINARY)
    return quote(t, entry=entry, exit=exit_, timezone=SHANGHAI, **kw)


# Steps and rounding --------------------------------------------------------------------------


@pytest.mark.parametrize(("rounding", "minutes", "expected"), [
    ("ceil", 60, 500),    # inside the flat first hour
    ("ceil", 61, 700),    # one minute into a step: started step charged
    ("ceil", 90, 700),    # exactly at the step boundary: still one step
    ("ceil", 91, 900),    # one past the boundary: second step
    ("floor", 61, 500),   # floor: only whole steps
    ("floor", 89, 500),
    ("floor", 90, 700),   # the whole step is done
    ("nearest", 74, 500),  # 14 of 30 minutes: under half
    ("nearest", 75, 700),  # 15 of 30: half rounds up
    ("nearest", 104, 700),
    ("nearest", 105, 900),
])
def test_rounding_decides_which_steps_are_charged(rounding: str, minutes: int,
                                                  expected: int) -> None:
    entry = at(MONDAY, 10)
    got = fee(all_day(rounding), entry, entry + timedelta(minutes=minutes))
    assert got.total_fen == expected


def test_lines_show_minutes_and_rounded_minutes() -> None:
    got = fee(all_day(), at(MONDAY, 10), at(MONDAY, 11, 10))
    assert [(line.rule, line.minutes, line.rounded_minutes, line.fen) for line in got.lines] == [
        ("flat 500", 60, 60, 500), ("200 per 30 min ceil", 10, 30, 200)]


def test_started_seconds_count_as_a_minute() -> None:
    entry = at(MONDAY, 10)
    got = fee(all_day(), entry, entry + timedelta(minutes=90, seconds=1))
    assert (got.minutes, got.total_fen) == (91, 900)


# Free time -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "minutes", "expected"), [
    ("threshold", 15, 0), ("threshold", 16, 500), ("threshold", 75, 700),
    ("deduct", 15, 0), ("deduct", 16, 500), ("deduct", 75, 500), ("deduct", 76, 700),
])
def test_free_time_threshold_or_deduct(mode: str, minutes: int, expected: int) -> None:
    entry = at(MONDAY, 10)
    t = all_day(free={"minutes": 15, "mode": mode})
    assert fee(t, entry, entry + timedelta(minutes=minutes)).total_fen == expected


# Bands, midnight, segmentation ----------------------------------------------------------------


def test_a_night_band_across_midnight_is_one_occurrence() -> None:
    got = fee(tariff(), at(MONDAY, 23), at(MONDAY + timedelta(days=1), 1))
    assert [(line.code, line.minutes, line.fen) for line in got.lines] == [("night", 120, 1000)]
    assert got.total_fen == 1000


def test_split_prices_each_band_from_its_own_start() -> None:
    got = fee(tariff(), at(MONDAY, 21), at(MONDAY, 23))
    assert [(line.code, line.fen) for line in got.lines] == [("day", 500), ("night", 1000)]
    assert got.total_fen == 1500


def test_follow_through_keeps_the_band_at_entry() -> None:
    got = fee(tariff(segmentation="follow_through"), at(MONDAY, 21), at(MONDAY, 23))
    assert {line.code for line in got.lines} == {"day"}
    assert got.total_fen == 900  # 500 + 2 x 200 for 120 minutes of day prices


def test_a_whole_day_band_is_one_occurrence_across_midnight() -> None:
    got = fee(all_day(), at(MONDAY, 23, 30), at(MONDAY + timedelta(days=1), 1))
    assert [line.rule for line in got.lines] == ["flat 500", "200 per 30 min ceil"]
    assert got.total_fen == 700  # not a second first hour at midnight


def test_the_boundary_minute_belongs_to_the_next_band() -> None:
    assert fee(tariff(), at(MONDAY, 20, 50), at(MONDAY, 22)).total_fen == 700
    assert fee(tariff(), at(MONDAY, 20, 50), at(MONDAY, 22, 1)).total_fen == 1700


# Caps ---------------------------------------------------------------------------------------------


def test_occurrence_cap() -> None:
    got = fee(tariff(), at(MONDAY, 8), at(MONDAY, 21, 59))
    assert got.total_fen == 4000
    assert [(cap.scope, cap.fen) for cap in got.caps] == [("occurrence", 5700 - 4000)]


def test_calendar_day_cap_is_reached_and_the_next_day_starts_fresh() -> None:
    t = tariff(caps={"calendar_day_fen": 5000})
    assert fee(t, at(MONDAY, 7), at(MONDAY, 23)).total_fen == 5000  # 1000 + 4000 + 1000 -> 5000
    two_days = fee(t, at(MONDAY, 7), at(MONDAY + timedelta(days=1), 9))
    assert two_days.total_fen == 5000 + 500
    assert ("calendar_day", "2026-03-02", 1000) in [(c.scope, c.key, c.fen) for c in two_days.caps]


def test_rolling_24h_cap_counts_from_entry() -> None:
    t = all_day(caps={"rolling_24h_fen": 3000})
    entry = at(MONDAY, 10)
    assert fee(t, entry, entry + timedelta(hours=24)).total_fen == 3000
    assert fee(t, entry, entry + timedelta(hours=24, minutes=1)).total_fen == 3200


# Vehicle classes ------------------------------------------------------------------------------


def test_class_multiplier_rounds_half_a_fen_up() -> None:
    classes = {"small": {"permille": 1000, "label_zh": "小", "label_en": "small"},
               "third": {"permille": 333, "label_zh": "三", "label_en": "third"}}
    got = fee(all_day(classes=classes), at(MONDAY, 10), at(MONDAY, 11), vehicle_class="third")
    assert (got.charged_fen, got.class_fen, got.total_fen) == (500, 167 - 500, 167)


def test_unknown_class_is_refused_by_name() -> None:
    with pytest.raises(TariffError, match="vehicle_class 'bus'"):
        fee(tariff(), at(MONDAY, 10), at(MONDAY, 11), vehicle_class="bus")


# Exemptions ---------------------------------------------------------------------------------


EXEMPT = tariff(
    exemptions=[{"reason": "duty_vehicle", "label_zh": "执勤", "label_en": "duty",
                 "series": ["police", "emergency", "armed_police", "military"]},
                {"reason": "staff", "label_zh": "员工", "label_en": "staff", "list": "staff"}],
    lists={"staff": ["粤B·66666"]},
)


@pytest.mark.parametrize(("plate", "reason"), [
    ("粤B1234警", "duty_vehicle"), ("粤X1234应急", "duty_vehicle"), ("WJ粤12345", "duty_vehicle"),
    ("VA12345", "duty_vehicle"), ("粤B66666", "staff"), ("粤b 66666", "staff"),
    (ORDINARY, None), ("not a plate", None),
])
def test_exemptions_by_series_and_by_list(plate: str, reason: str | None) -> None:
    got = fee(EXEMPT, at(MONDAY, 10), at(MONDAY, 14), plate=plate,
              coupons=[Coupon.parse("amount_off:100")])
    assert got.exemption == reason
    if reason is None:
        assert got.total_fen == 1700 - 100
    else:
        assert got.total_fen == 0
        assert [(d.reason, d.fen) for d in got.discounts] == [(reason, 1700)]
        assert len(got.rejected_coupons) == 1


# Coupons --------------------------------------------------------------------------------------


def coupon_tariff(stacking: str, apply: str = "back") -> Tariff:
    return all_day(coupons={"stacking": stacking, "apply": apply, "rules": [
        {"code": "spend_88", "label_zh": "满88", "label_en": "spend 88", "kind": "free_minutes",
         "minutes": 120, "upgrades": [{"day_kinds": ["holiday"], "minutes": 180},
                                      {"periods": ["pre_mid_autumn"], "minutes": 180}]}]})


SPEND_88 = Coupon.parse("rule:spend_88")
OFF_300 = Coupon.parse("amount_off:300")
HOUR_FREE = Coupon.parse("free_minutes:60")


@pytest.mark.parametrize(("stacking", "coupons", "expected", "rejected"), [
    ("none", [OFF_300, HOUR_FREE], 1700 - 300, 1),       # first coupon only
    ("additive", [OFF_300, HOUR_FREE], 1300 - 300, 0),   # minutes first, then the amount
    ("best_of", [OFF_300, HOUR_FREE], 1300, 1),          # an hour off beats ¥3 off
    ("best_of", [OFF_300, Coupon("full_free")], 0, 1),
    ("additive", [OFF_300] * 10, 0, 0),                  # never below zero
    ("none", [Coupon.parse("rule:nope"), OFF_300], 1400, 1),  # unknown rule rejected, named
])
def test_stacking_policies(stacking: str, coupons: list[Coupon], expected: int,
                           rejected: int) -> None:
    got = fee(coupon_tariff(stacking), at(MONDAY, 10), at(MONDAY, 14), coupons=coupons)
    assert got.total_fen == expected
    assert len(got.rejected_coupons) == rejected
    assert sum(d.fen for d in got.discounts) == 1700 - expected


def test_free_minutes_from_the_front_or_the_back() -> None:
    t = tariff(coupons={"apply": "front"})
    back = tariff(coupons={"apply": "back"})
    # 21:00-23:00 with an hour free: front leaves the night (1000), back leaves the day (500)
    assert fee(t, at(MONDAY, 21), at(MONDAY, 23), coupons=[HOUR_FREE]).total_fen == 1000
    assert fee(back, at(MONDAY, 21), at(MONDAY, 23), coupons=[HOUR_FREE]).total_fen == 500


CALENDAR = HolidayCalendar.model_validate({
    "holidays": [{"name": "national_day", "start": "2026-10-01", "end": "2026-10-07"}],
    "workdays": ["2026-10-10"],
    "periods": [{"name": "pre_mid_autumn", "start": "2026-09-18", "end": "2026-09-24"}],
})


@pytest.mark.parametrize(("entry", "exit_", "expected"), [
    (at(MONDAY, 10), at(MONDAY, 13), 500),                          # 2 h: one hour left to pay
    (at(date(2026, 10, 2), 10), at(date(2026, 10, 2), 13), 0),      # holiday: 3 h
    (at(date(2026, 9, 24), 10), at(date(2026, 9, 24), 13), 0),      # last pre-festival day: 3 h
    (at(date(2026, 9, 17), 10), at(date(2026, 9, 17), 13), 500),    # the day before it: 2 h
    # across the holiday boundary: the entry's date decides
    (at(date(2026, 9, 30), 23), at(date(2026, 10, 1), 2), 500),
    (at(date(2026, 10, 1), 0), at(date(2026, 10, 1), 3), 0),
])
def test_spend_88_grant_follows_the_calendar_on_the_entry_date(
        entry: datetime, exit_: datetime, expected: int) -> None:
    got = fee(coupon_tariff("none"), entry, exit_, coupons=[SPEND_88], calendar=CALENDAR)
    assert got.total_fen == expected


def test_calendar_day_kinds_and_named_periods() -> None:
    assert CALENDAR.day_kind(date(2026, 10, 3)) == "holiday"     # a Saturday inside the holiday
    assert CALENDAR.day_kind(date(2026, 10, 10)) == "workday"    # make-up Saturday
    assert CALENDAR.day_kind(date(2026, 10, 11)) == "weekend"
    assert CALENDAR.day_kind(date(2026, 10, 12)) == "workday"
    assert CALENDAR.periods_on(date(2026, 9, 20)) == {"pre_mid_autumn"}
    assert CALENDAR.periods_on(date(2026, 10, 8)) == frozenset()


# Versions --------------------------------------------------------------------------------------


def test_a_book_prices_a_stay_by_the_version_in_force_at_entry() -> None:
    old = all_day()
    new = tariff(version="2", effective_from="2026-07-01",
                  periods=[{"name": "all", "label_zh": "全天", "label_en": "all day",
                            "when": "00:00-24:00", "tiers": [{"flat_fen": 600}]}])
    book = TariffBook(versions=[new, old])
    across = fee(book, at(date(2026, 6, 30), 23, 30), at(date(2026, 7, 1), 1))
    assert (across.version, across.total_fen) == ("1", 700)
    after = fee(book, at(date(2026, 7, 1), 0, 10), at(date(2026, 7, 1), 1))
    assert (after.version, after.total_fen) == ("2", 600)
    with pytest.raises(TariffError, match="no tariff version is in force on 2025-12-31"):
        fee(book, at(date(2025, 12, 31), 10), at(date(2025, 12, 31), 11))


# Refusals and validation ----------------------------------------------------------------------


def test_naive_times_and_exit_before_entry_are_refused() -> None:
    naive = datetime(2026, 3, 2, 10)
    with pytest.raises(TariffError, match="timezone-aware"):
        quote(tariff(), entry=naive, exit=naive, plate=ORDINARY)
    with pytest.raises(TariffError, match="before entry"):
        fee(tariff(), at(MONDAY, 11), at(MONDAY, 10))


def test_a_zero_stay_is_free_and_has_no_lines() -> None:
    got = fee(tariff(), at(MONDAY, 10), at(MONDAY, 10))
    assert (got.total_fen, got.lines) == (0, ())


@pytest.mark.parametrize(("change", "message"), [
    ({"periods": [{"name": "day", "label_zh": "日", "label_en": "d", "when": "08:00-20:00",
                   "flat_fen": 1}]}, "00:00 is not covered"),
    ({"periods": [{"name": "a", "label_zh": "a", "label_en": "a", "when": "00:00-24:00",
                   "flat_fen": 1}, {"name": "b", "label_zh": "b", "label_en": "b",
                                    "when": "08:00-09:00", "flat_fen": 1}]},
     "08:00 is covered twice"),
    ({"periods": [{"name": "a", "label_zh": "a", "label_en": "a", "when": "25:00-01:00",
                   "flat_fen": 1}]}, "not a time of day"),
    ({"periods": [{"name": "a", "label_zh": "a", "label_en": "a", "when": "00:00-24:00",
                   "tiers": [{"flat_fen": 1, "upto_minutes": 60}]}]},
     "the last tier must be open-ended"),
    ({"periods": [{"name": "a", "label_zh": "a", "label_en": "a", "when": "00:00-24:00",
                   "tiers": [{"flat_fen": 1, "step_fen": 2, "every_minutes": 3}]}]},
     "either flat_fen, or every_minutes"),
    ({"classes": {"large": {"permille": 2000, "label_zh": "大", "label_en": "large"}}},
     "the `small` class is required"),
    ({"exemptions": [{"reason": "x", "label_zh": "x", "label_en": "x", "list": "gone"}]},
     "list 'gone' is not in lists"),
    ({"free": {"minutes": 10, "mode": "sometimes"}}, "free.mode"),
    ({"surprise": 1}, "surprise"),
])
def test_invalid_tariffs_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        tariff(**change)


def test_calendar_refuses_a_workday_inside_a_holiday() -> None:
    with pytest.raises(ValidationError, match="workdays: 2026-10-02 is also inside holiday"):
        HolidayCalendar.model_validate({
            "holidays": [{"name": "n", "start": "2026-10-01", "end": "2026-10-07"}],
            "workdays": ["2026-10-02"]})


def test_document_errors_name_source_and_field() -> None:
    text = MALL.read_text(encoding="utf-8").replace('when = "22:00-08:00"',
                                                    'when = "22:00-07:00"')
    with pytest.raises(TariffError) as caught:
        parse_tariff_document(text, source="mall.toml")
    assert "mall.toml: invalid tariff" in str(caught.value)
    assert "tariffs.0: Value error, periods:" in str(caught.value)
    assert "07:00 is not covered" in str(caught.value)
    with pytest.raises(TariffError, match=r"mall\.toml: not valid TOML"):
        parse_tariff_document("tariffs = [", source="mall.toml")
    with pytest.raises(TariffError, match="timezone: Value error, unknown time zone"):
        parse_tariff_document(text.replace("Asia/Shanghai", "Mars/Base"), source="m")


# The mall --------------------------------------------------------------------------------------


def test_every_golden_vector_of_the_mall_passes() -> None:
    document = parse_tariff_document(MALL.read_text(encoding="utf-8"), source=str(MALL))
    results = run_vectors(document)
    assert len(results) >= 20
    assert [r.name for r in results if not r.ok] == []


def test_a_wrong_golden_vector_is_reported_not_raised() -> None:
    text = MALL.read_text(encoding="utf-8").replace("expect_fen = 700", "expect_fen = 701", 1)
    results = run_vectors(parse_tariff_document(text))
    assert [(r.name, r.problem) for r in results if not r.ok] == [
        ("one hour ten: first hour and one started half hour", "expected 701 fen, quoted 700")]


def test_format_yuan() -> None:
    assert [format_yuan(f) for f in (0, 5, 700, 123456, -250)] == [
        "¥0.00", "¥0.05", "¥7.00", "¥1234.56", "-¥2.50"]
