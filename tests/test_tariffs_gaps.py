"""Issue 5, the gaps closed: per-stay caps, caps shared across re-entries, percent coupons and
day-kind selectors on periods — each edge as a table, each bad field refused by name."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from parkguard.core.tariffs import (
    Coupon,
    EarlierCharge,
    HolidayCalendar,
    Quote,
    Tariff,
    parse_tariff_document,
    quote,
    run_vectors,
)
from parkguard.errors import TariffError

SHANGHAI = ZoneInfo("Asia/Shanghai")
ORDINARY = "粤B12345"
MONDAY = date(2026, 3, 2)
DAY = {"name": "day", "label_zh": "日间", "label_en": "day", "when": "08:00-22:00",
       "cap_fen": 4000, "tiers": [{"upto_minutes": 60, "flat_fen": 500},
                                  {"every_minutes": 30, "step_fen": 200}]}
NIGHT = {"name": "night", "label_zh": "夜间", "label_en": "night", "when": "22:00-08:00",
         "flat_fen": 1000}
ALL_DAY = {"name": "all", "label_zh": "全天", "label_en": "all day", "when": "00:00-24:00",
           "tiers": [{"upto_minutes": 60, "flat_fen": 500}, {"every_minutes": 30, "step_fen": 200}]}
HOLIDAY = {"name": "holiday", "label_zh": "节假日", "label_en": "holiday", "when": "00:00-24:00",
           "days": ["holiday"], "flat_fen": 800}
CALENDAR = HolidayCalendar.model_validate({
    "holidays": [{"name": "national_day", "start": "2026-10-01", "end": "2026-10-07"}],
    "workdays": ["2026-10-10"],
})


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=SHANGHAI).astimezone(UTC)


def tariff(**overrides: Any) -> Tariff:
    data: dict[str, Any] = {"name": "t", "version": "1", "effective_from": "2026-01-01",
                            "free": {"minutes": 15}, "periods": [DAY, NIGHT]}
    data.update(overrides)
    return Tariff.model_validate(data)


def fee(t: Tariff, entry: datetime, exit_: datetime, **kw: Any) -> Quote:
    kw.setdefault("plate", ORDINARY)
    kw.setdefault("calendar", CALENDAR)
    return quote(t, entry=entry, exit=exit_, timezone=SHANGHAI, **kw)


# Per-stay cap ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("hours", "expected", "capped"), [
    (1, 500, 0), (2, 900, 0), (2.5, 1000, 100), (3, 1000, 300),
])
def test_session_cap_is_the_most_one_stay_pays(hours: float, expected: int, capped: int) -> None:
    t = tariff(periods=[ALL_DAY], caps={"session_fen": 1000})
    entry = at(MONDAY, 10)
    got = fee(t, entry, entry + timedelta(hours=hours))
    assert got.total_fen == expected
    assert [(c.scope, c.key, c.fen) for c in got.caps] == (
        [("session", "stay", capped)] if capped else [])
    if capped:
        assert (got.caps[0].label_zh, got.caps[0].label_en) == ("单次封顶", "per-stay cap")


def test_session_cap_comes_after_the_day_caps_and_scales_with_the_class() -> None:
    classes = {"small": {"permille": 1000, "label_zh": "小", "label_en": "small"},
               "large": {"permille": 2000, "label_zh": "大", "label_en": "large"}}
    t = tariff(caps={"calendar_day_fen": 5000, "session_fen": 7000}, classes=classes)
    got = fee(t, at(MONDAY, 7), at(MONDAY + timedelta(days=2), 7))  # 3 dates, 5000 each at most
    assert [c.scope for c in got.caps][-1] == "session"
    assert got.charged_fen == 7000
    large = fee(t, at(MONDAY, 7), at(MONDAY + timedelta(days=2), 7), vehicle_class="large")
    assert large.total_fen == 14000
    assert fee(t, at(MONDAY, 7), at(MONDAY, 23)).total_fen == 5000  # day cap below it


def test_session_cap_must_not_be_negative() -> None:
    with pytest.raises(ValidationError, match=r"caps\.session_fen"):
        tariff(caps={"session_fen": -1})


# Caps shared across re-entries ---------------------------------------------------------------


DAY_CAPPED = {"calendar_day_fen": 5000, "share_reentry": True}


def test_a_car_that_leaves_and_comes_back_pays_no_more_than_the_day_cap() -> None:
    t = tariff(caps=DAY_CAPPED)
    first = fee(t, at(MONDAY, 8), at(MONDAY, 19))
    assert first.total_fen == 4000
    again = (at(MONDAY, 20), at(MONDAY, 23))  # 900 day + 1000 night = 1900 alone
    assert fee(t, *again).total_fen == 1900
    shared = fee(t, *again, earlier_charges=[EarlierCharge.of(first)])
    assert shared.total_fen == 1000
    assert first.total_fen + shared.total_fen == 5000
    assert [(c.scope, c.key, c.fen) for c in shared.caps] == [("calendar_day", "2026-03-02", 900)]


@pytest.mark.parametrize(("earlier_exit", "expected"), [
    (at(MONDAY, 19), 1000),                        # same date: shares the day's 5000
    (at(MONDAY - timedelta(days=1), 23), 1900),    # yesterday's money: today starts fresh
])
def test_earlier_money_counts_on_the_date_of_its_exit(earlier_exit: datetime,
                                                      expected: int) -> None:
    earlier = EarlierCharge(earlier_exit - timedelta(hours=11), earlier_exit, 4000)
    got = fee(tariff(caps=DAY_CAPPED), at(MONDAY, 20), at(MONDAY, 23), earlier_charges=[earlier])
    assert got.total_fen == expected


def test_earlier_charges_count_only_when_the_tariff_shares_the_cap() -> None:
    earlier = EarlierCharge(at(MONDAY, 8), at(MONDAY, 19), 4000)
    t = tariff(caps={"calendar_day_fen": 5000})
    assert fee(t, at(MONDAY, 20), at(MONDAY, 23), earlier_charges=[earlier]).total_fen == 1900


ROLLING = {"rolling_24h_fen": 3000, "share_reentry": True}


@pytest.mark.parametrize(("entry", "exit_", "expected"), [
    # the first stay 10:00-20:00 Monday reached the 3000 of the 24 h from 10:00 Monday
    (at(MONDAY, 21), at(MONDAY, 23), 0),
    (at(MONDAY + timedelta(days=1), 9), at(MONDAY + timedelta(days=1), 10), 0),
    # from 10:00 Tuesday a new shared 24 h begins: 10:00, 10:30, 11:00, 11:30 steps
    (at(MONDAY, 21), at(MONDAY + timedelta(days=1), 12), 800),
    # it left 26 h ago: nothing shared, priced alone
    (at(MONDAY + timedelta(days=1), 22), at(MONDAY + timedelta(days=1), 23), 500),
])
def test_rolling_24h_windows_are_shared_from_the_first_entry(
        entry: datetime, exit_: datetime, expected: int) -> None:
    t = tariff(periods=[ALL_DAY], caps=ROLLING)
    first = fee(t, at(MONDAY, 10), at(MONDAY, 20))
    assert first.total_fen == 3000
    got = fee(t, entry, exit_, earlier_charges=[EarlierCharge.of(first)])
    assert got.total_fen == expected


def test_continuing_the_shared_window_never_costs_more_than_coming_fresh() -> None:
    t = tariff(periods=[ALL_DAY], caps=ROLLING)
    free_visit = EarlierCharge(at(MONDAY, 8), at(MONDAY, 8, 10), 0)  # moved the windows' start
    entry, exit_ = at(MONDAY, 9), at(MONDAY + timedelta(days=1), 10)
    alone = fee(t, entry, exit_).total_fen
    assert fee(t, entry, exit_, earlier_charges=[free_visit]).total_fen <= alone


@pytest.mark.parametrize(("earlier", "message"), [
    (EarlierCharge(at(MONDAY, 19), at(MONDAY, 21), 100), "overlaps this stay"),
    (EarlierCharge(datetime(2026, 3, 2, 8), datetime(2026, 3, 2, 9), 100), "timezone-aware"),
    (EarlierCharge(at(MONDAY, 9), at(MONDAY, 8), 100), "is before entry"),
    (EarlierCharge(at(MONDAY, 8), at(MONDAY, 9), -1), "negative"),
])
def test_bad_earlier_charges_are_refused(earlier: EarlierCharge, message: str) -> None:
    with pytest.raises(TariffError, match=f"earlier_charges: .*{message}"):
        fee(tariff(caps=DAY_CAPPED), at(MONDAY, 20), at(MONDAY, 23), earlier_charges=[earlier])


def test_sharing_needs_a_cap_to_share() -> None:
    with pytest.raises(ValidationError, match="share_reentry: there is no calendar_day_fen"):
        tariff(caps={"share_reentry": True, "session_fen": 100})


# Percent coupons ------------------------------------------------------------------------------


@pytest.mark.parametrize(("coupons", "expected", "discounts"), [
    (["percent_off:20"], 1360, [340]),                      # 1700 x 20 %
    (["percent_off:100"], 0, [1700]),
    (["amount_off:1695", "percent_off:10"], 4, [1695, 1]),  # 0.5 fen off rounds up: 1 off
    (["amount_off:1695", "percent_off:30"], 3, [1695, 2]),  # 1.5 fen off rounds up: 2 off
    (["amount_off:1695", "percent_off:1"], 5, [1695, 0]),   # 0.05 fen rounds to nothing
    (["percent_off:50", "amount_off:300"], 700, [300, 700]),  # amounts off first
    (["percent_off:50", "percent_off:50"], 425, [850, 425]),  # each off what is left
    (["full_free", "percent_off:20"], 0, [340, 1360]),      # before full free
    (["free_minutes:60", "percent_off:25"], 975, [400, 325]),  # after free minutes
])
def test_percent_off_order_and_rounding(coupons: list[str], expected: int,
                                        discounts: list[int]) -> None:
    t = tariff(periods=[ALL_DAY], coupons={"stacking": "additive"})
    got = fee(t, at(MONDAY, 10), at(MONDAY, 14), coupons=[Coupon.parse(c) for c in coupons])
    assert got.total_fen == expected
    assert [d.fen for d in got.discounts] == discounts


def test_a_percent_rule_carries_its_ref_to_the_discount() -> None:
    rule = {"code": "member_20", "label_zh": "会员八折", "label_en": "member 20 % off",
            "kind": "percent_off", "percent": 20}
    t = tariff(periods=[ALL_DAY], coupons={"rules": [rule]})
    got = fee(t, at(MONDAY, 10), at(MONDAY, 14),
              coupons=[Coupon("rule", rule="member_20", ref="M001-77")])
    assert got.total_fen == 1360
    assert [(d.code, d.reason, d.fen, d.ref) for d in got.discounts] == [
        ("member_20", "coupon:percent_off", 340, "M001-77")]
    ad_hoc = fee(t, at(MONDAY, 10), at(MONDAY, 14),
                 coupons=[Coupon("percent_off", percent=20, ref="cashier-3")])
    assert [(d.code, d.ref) for d in ad_hoc.discounts] == [("percent_off", "cashier-3")]


def test_best_of_compares_percent_with_other_grants() -> None:
    t = tariff(periods=[ALL_DAY], coupons={"stacking": "best_of"})
    got = fee(t, at(MONDAY, 10), at(MONDAY, 14),
              coupons=[Coupon.parse("amount_off:300"), Coupon.parse("percent_off:50", )])
    assert got.total_fen == 850
    assert [str(c) for c, _ in got.rejected_coupons] == ["amount_off:300"]
    none = tariff(periods=[ALL_DAY], coupons={"stacking": "none"})
    got = fee(none, at(MONDAY, 10), at(MONDAY, 14),
              coupons=[Coupon.parse("amount_off:300"), Coupon("percent_off", percent=50,
                                                              ref="r")])
    assert [(str(c), c.ref) for c, _ in got.rejected_coupons] == [("percent_off:50", "r")]


@pytest.mark.parametrize(("text", "percent"), [("percent_off:20", 20), ("percent_off:1", 1),
                                               ("percent_off:100", 100)])
def test_percent_coupon_text_round_trips(text: str, percent: int) -> None:
    coupon = Coupon.parse(text)
    assert (coupon.kind, coupon.percent, str(coupon)) == ("percent_off", percent, text)


@pytest.mark.parametrize("text", ["percent_off:0", "percent_off:101", "percent_off:",
                                  "percent_off:12.5", "percent_off:-5"])
def test_bad_percent_coupon_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="percent_off needs a whole number from 1 to 100"):
        Coupon.parse(text)


def test_a_percent_coupon_object_needs_a_percent() -> None:
    with pytest.raises(ValueError, match="percent must be 1 to 100"):
        Coupon("percent_off")
    assert "percent" not in repr(Coupon("full_free"))  # other kinds print as before


@pytest.mark.parametrize(("rule", "message"), [
    ({"kind": "percent_off"}, "percent_off needs percent from 1 to 100"),
    ({"kind": "percent_off", "percent": 101}, "percent"),
    ({"kind": "amount_off", "fen": 100, "percent": 10}, "percent is only for percent_off"),
])
def test_percent_rules_are_checked_at_load(rule: dict[str, Any], message: str) -> None:
    base = {"code": "x", "label_zh": "x", "label_en": "x"}
    with pytest.raises(ValidationError, match=message):
        tariff(coupons={"rules": [{**base, **rule}]})


# Day-kind selectors on periods ----------------------------------------------------------------


HOLIDAYS_FLAT = tariff(periods=[DAY, NIGHT, HOLIDAY])


@pytest.mark.parametrize(("entry", "exit_", "expected", "codes"), [
    (at(MONDAY, 10), at(MONDAY, 14), 1700, ["day"]),                          # workday
    (at(date(2026, 10, 2), 10), at(date(2026, 10, 2), 14), 800, ["holiday"]),  # holiday
    (at(date(2026, 10, 3), 10), at(date(2026, 10, 3), 14), 800, ["holiday"]),  # holiday Saturday
    (at(date(2026, 10, 10), 10), at(date(2026, 10, 10), 14), 1700, ["day"]),   # make-up Saturday
    (at(date(2026, 10, 11), 10), at(date(2026, 10, 11), 14), 1700, ["day"]),   # plain Sunday
    # the night runs into the holiday: the holiday band prices minutes from local midnight
    (at(date(2026, 9, 30), 23), at(date(2026, 10, 1), 2), 1800, ["night", "holiday"]),
    # a whole holiday band is one occurrence across the midnights of the holiday
    (at(date(2026, 10, 2), 10), at(date(2026, 10, 4), 10), 800, ["holiday"]),
    # out of the holiday into an ordinary night: Oct 7 ends, Oct 8 is a Thursday
    (at(date(2026, 10, 7), 23), at(date(2026, 10, 8), 1), 1800, ["holiday", "night"]),
    # Friday night into Saturday: both price the night alike, one occurrence
    (at(date(2026, 3, 6), 23), at(date(2026, 3, 7), 2), 1000, ["night"]),
])
def test_holiday_bands_follow_the_calendar_minute_by_minute(
        entry: datetime, exit_: datetime, expected: int, codes: list[str]) -> None:
    got = fee(HOLIDAYS_FLAT, entry, exit_)
    assert got.total_fen == expected
    assert list(dict.fromkeys(line.code for line in got.lines)) == codes


def test_follow_through_uses_the_band_and_day_kind_at_entry() -> None:
    t = tariff(periods=[DAY, NIGHT, HOLIDAY], segmentation="follow_through")
    assert fee(t, at(date(2026, 9, 30), 21), at(date(2026, 10, 1), 2)).total_fen == 500 + 8 * 200
    assert fee(t, at(date(2026, 10, 7), 21), at(date(2026, 10, 8), 9)).total_fen == 800


def test_each_day_kind_can_have_its_own_bands() -> None:
    weekend = [{**DAY, "name": "we_day", "days": ["weekend", "holiday"], "cap_fen": 2000},
               {**NIGHT, "name": "we_night", "days": ["weekend", "holiday"], "flat_fen": 500}]
    t = tariff(periods=[DAY, NIGHT, *weekend])
    sunday = date(2026, 3, 8)
    assert fee(t, at(sunday, 8), at(sunday, 21, 59)).total_fen == 2000
    assert fee(t, at(sunday, 22), at(sunday, 23)).total_fen == 500
    assert fee(t, at(MONDAY, 8), at(MONDAY, 21, 59)).total_fen == 4000
    assert t.period_at(9 * 60).name == "day"                     # default day kind: workday
    assert t.period_at(9 * 60, "holiday").name == "we_day"


@pytest.mark.parametrize(("periods", "message"), [
    ([DAY, NIGHT, {**HOLIDAY, "when": "08:00-22:00"}],
     "exactly once on holiday days; 00:00 is not covered"),
    ([DAY, NIGHT, HOLIDAY, {**HOLIDAY, "name": "h2", "when": "09:00-10:00"}],
     "exactly once on holiday days; 09:00 is covered twice"),
    ([DAY, NIGHT, {**HOLIDAY, "days": []}], "give at least one day kind"),
    ([DAY, NIGHT, {**HOLIDAY, "days": ["holiday", "holiday"]}], "listed twice"),
    ([DAY, NIGHT, {**HOLIDAY, "days": ["sunday"]}], "periods.2.days.0"),
    ([DAY, NIGHT, {**HOLIDAY, "days": ["holiday", "workday", "weekend"]}],
     "period 'day' has no days and applies on no day kind"),
    ([{**HOLIDAY, "days": ["workday"]}], "exactly once on weekend days; 00:00 is not covered"),
])
def test_day_selectors_are_checked_per_day_kind(periods: list[dict[str, Any]],
                                                message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        tariff(periods=periods)


HOLIDAY_TOML = '''
[[tariffs]]
name = "demo"
version = "1"
effective_from = 2026-01-01
[[tariffs.periods]]
name = "all"
label_zh = "全天"
label_en = "all day"
when = "00:00-24:00"
tiers = [{ upto_minutes = 60, flat_fen = 500 }, { every_minutes = 30, step_fen = 200 }]
[[tariffs.periods]]
name = "holiday"
label_zh = "节假日"
label_en = "holiday"
when = "00:00-24:00"
days = ["holiday"]
flat_fen = 800
[tariffs.caps]
session_fen = 1000
[[tariffs.coupons.rules]]
code = "member"
label_zh = "会员八折"
label_en = "member 20 % off"
kind = "percent_off"
percent = 20
[calendar]
holidays = [{ name = "national_day", start = 2026-10-01, end = 2026-10-07 }]
[[vectors]]
name = "holiday flat"
entry = 2026-10-02T10:00:00
exit = 2026-10-02T14:00:00
expect_fen = 800
[[vectors]]
name = "workday capped per stay, then 20 % off"
entry = 2026-03-02T10:00:00
exit = 2026-03-02T14:00:00
coupons = ["rule:member"]
expect_fen = 800
[[vectors]]
name = "ad hoc percent"
entry = 2026-03-02T10:00:00
exit = 2026-03-02T11:10:00
coupons = ["percent_off:50"]
expect_fen = 350
'''


def test_the_new_fields_load_from_toml_and_their_vectors_pass() -> None:
    document = parse_tariff_document(HOLIDAY_TOML, source="demo.toml")
    assert [(r.name, r.problem) for r in run_vectors(document) if not r.ok] == []
    broken = HOLIDAY_TOML.replace('days = ["holiday"]', 'days = ["holidays"]')
    with pytest.raises(TariffError, match=r"tariffs\.0\.periods\.1\.days\.0"):
        parse_tariff_document(broken, source="demo.toml")
    with pytest.raises(TariffError, match="coupons: Value error, coupon 'percent_off:0'"):
        parse_tariff_document(HOLIDAY_TOML.replace('"percent_off:50"', '"percent_off:0"'))
