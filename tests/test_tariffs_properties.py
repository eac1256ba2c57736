"""Properties every quote keeps, over random stays and tariffs: the fee never falls as a stay
grows, is never negative, never passes the day, 24 h or per-stay cap (counting what earlier
stays of the plate paid when the tariff shares the cap), matches the naive minute-by-minute
definition, and coupons (percent ones too) only ever lower it (never below zero)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from parkguard.core.tariffs import (
    Coupon,
    EarlierCharge,
    Tariff,
    parse_tariff_document,
    quote,
)
from simulator.bench_tariffs import naive_fee

SHANGHAI = ZoneInfo("Asia/Shanghai")
MALL = parse_tariff_document(
    (Path(__file__).resolve().parents[1] / "docs/examples/tariff-mall.toml").read_text("utf-8"))
MALL_TARIFF = MALL.tariffs[0]


def _tariff(rounding: str, free_mode: str, segmentation: str, day_cap: int | None,
            rolling_cap: int | None, occurrence_cap: int | None, session_cap: int | None = None,
            holidays: bool = False, share: bool = False) -> Tariff:
    data: dict[str, Any] = {
        "name": "p", "version": "1", "effective_from": "2026-01-01",
        "free": {"minutes": 15, "mode": free_mode}, "segmentation": segmentation,
        "caps": {"calendar_day_fen": day_cap, "rolling_24h_fen": rolling_cap,
                 "session_fen": session_cap,
                 "share_reentry": share and (day_cap is not None or rolling_cap is not None)},
        "periods": [
            {"name": "day", "label_zh": "日", "label_en": "day", "when": "07:30-21:00",
             "cap_fen": occurrence_cap,
             "tiers": [{"upto_minutes": 45, "flat_fen": 300},
                       {"upto_minutes": 185, "every_minutes": 20, "step_fen": 150,
                        "rounding": rounding},
                       {"every_minutes": 60, "step_fen": 400, "rounding": rounding}]},
            {"name": "night", "label_zh": "夜", "label_en": "night", "when": "21:00-07:30",
             "tiers": [{"every_minutes": 120, "step_fen": 100, "rounding": rounding}]},
        ],
        "coupons": {"stacking": "additive", "rules": [
            {"code": "spend_88", "label_zh": "满88", "label_en": "spend 88",
             "kind": "free_minutes", "minutes": 120},
            {"code": "member", "label_zh": "会员", "label_en": "member",
             "kind": "percent_off", "percent": 15}]},
    }
    if holidays:  # public holidays (the mall calendar) have their own bands
        data["periods"] += [
            {"name": "h_day", "label_zh": "节日", "label_en": "holiday day", "when": "09:00-20:00",
             "days": ["holiday"], "tiers": [{"upto_minutes": 120, "flat_fen": 600},
                                           {"every_minutes": 45, "step_fen": 350,
                                            "rounding": rounding}]},
            {"name": "h_night", "label_zh": "节夜", "label_en": "holiday night",
             "when": "20:00-09:00", "days": ["holiday"], "flat_fen": 700}]
    return Tariff.model_validate(data)


tariffs = st.one_of(
    st.just(MALL_TARIFF),
    st.builds(_tariff, st.sampled_from(["ceil", "floor", "nearest"]),
              st.sampled_from(["threshold", "deduct"]),
              st.sampled_from(["split", "follow_through"]),
              st.one_of(st.none(), st.integers(0, 8000)),
              st.one_of(st.none(), st.integers(0, 9000)),
              st.one_of(st.none(), st.integers(0, 5000))),
)
entries = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31),
                       timezones=st.just(UTC))
stays = st.integers(0, 3 * 24 * 60 * 60)  # seconds
caps_or_none = st.one_of(st.none(), st.integers(0, 8000))
extended = st.one_of(
    tariffs,
    st.builds(_tariff, st.sampled_from(["ceil", "floor", "nearest"]),
              st.sampled_from(["threshold", "deduct"]),
              st.sampled_from(["split", "follow_through"]),
              caps_or_none, caps_or_none, caps_or_none, caps_or_none, st.booleans(),
              st.booleans()),
)


@st.composite
def earlier_stays(draw: st.DrawFn, entry: datetime) -> list[EarlierCharge]:
    """Earlier stays of the plate, each over before ``entry``: (gap, length, fen)."""
    result = []
    for gap, length, fen in draw(st.lists(st.tuples(st.integers(0, 40 * 3600),
                                                    st.integers(0, 30 * 3600),
                                                    st.integers(0, 9000)), max_size=3)):
        leaves = entry - timedelta(seconds=gap)
        result.append(EarlierCharge(leaves - timedelta(seconds=length), leaves, fen))
    return result


coupons = st.lists(st.sampled_from([
    Coupon.parse("percent_off:1"), Coupon.parse("percent_off:33"),
    Coupon.parse("percent_off:100"), Coupon.parse("rule:member"),
    Coupon.parse("rule:spend_88"), Coupon.parse("free_minutes:30"),
    Coupon.parse("free_minutes:600"), Coupon.parse("amount_off:150"),
    Coupon.parse("amount_off:99999"), Coupon("full_free"), Coupon.parse("rule:unknown"),
]), max_size=4)


def _fee(tariff: Tariff, entry: datetime, seconds: int, **kw: Any) -> int:
    return quote(tariff, entry=entry, exit=entry + timedelta(seconds=seconds), plate="粤B12345",
                 calendar=MALL.calendar, timezone=SHANGHAI, **kw).total_fen


@settings(max_examples=150, deadline=None)
@given(tariffs, entries, stays, st.integers(0, 24 * 60 * 60))
def test_the_fee_never_falls_as_the_stay_grows(tariff: Tariff, entry: datetime, seconds: int,
                                                more: int) -> None:
    shorter = _fee(tariff, entry, seconds)
    assert 0 <= shorter <= _fee(tariff, entry, seconds + more)


@settings(max_examples=150, deadline=None)
@given(tariffs, entries, stays)
def test_quote_matches_the_minute_by_minute_definition(tariff: Tariff, entry: datetime,
                                                        seconds: int) -> None:
    exit_ = entry + timedelta(seconds=seconds)
    assert _fee(tariff, entry, seconds) == naive_fee(tariff, entry, exit_, SHANGHAI)


@settings(max_examples=150, deadline=None)
@given(tariffs, entries, st.integers(0, 24 * 60 * 60))
def test_a_stay_within_one_day_never_passes_the_day_cap(tariff: Tariff, entry: datetime,
                                                        seconds: int) -> None:
    local = entry.astimezone(SHANGHAI)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), SHANGHAI)
    seconds = min(seconds, int((midnight - local).total_seconds()))
    cap = tariff.caps.calendar_day_fen
    fee = _fee(tariff, entry, seconds)
    assert fee >= 0
    if cap is not None:
        assert fee <= cap


@settings(max_examples=200, deadline=None)
@given(extended, entries, stays, st.integers(0, 24 * 60 * 60), st.data())
def test_with_new_caps_and_holiday_bands_the_fee_never_falls(
        tariff: Tariff, entry: datetime, seconds: int, more: int, data: st.DataObject) -> None:
    earlier = data.draw(earlier_stays(entry))
    shorter = _fee(tariff, entry, seconds, earlier_charges=earlier)
    assert 0 <= shorter <= _fee(tariff, entry, seconds + more, earlier_charges=earlier)
    # sharing a cap only ever counts money already paid: never more than coming fresh
    assert shorter <= _fee(tariff, entry, seconds)


@settings(max_examples=200, deadline=None)
@given(extended, entries, stays, st.data())
def test_no_cap_is_ever_passed(tariff: Tariff, entry: datetime, seconds: int,
                               data: st.DataObject) -> None:
    earlier = data.draw(earlier_stays(entry))
    got = quote(tariff, entry=entry, exit=entry + timedelta(seconds=seconds), plate="粤B12345",
                calendar=MALL.calendar, timezone=SHANGHAI, earlier_charges=earlier)
    assert got.total_fen >= 0
    caps = tariff.caps
    if caps.session_fen is not None:
        assert got.total_fen <= caps.session_fen
    local = entry.astimezone(SHANGHAI)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), SHANGHAI)
    shared = earlier if caps.share_reentry else []
    if caps.calendar_day_fen is not None and entry + timedelta(seconds=seconds) <= midnight:
        # a stay within one date, plus what earlier stays left with on that date
        same_day = sum(e.fen for e in shared if e.exit.astimezone(SHANGHAI).date() == local.date())
        assert got.total_fen <= max(0, caps.calendar_day_fen - same_day)
    if caps.rolling_24h_fen is not None and seconds <= 24 * 3600:
        assert got.total_fen <= caps.rolling_24h_fen
        if shared and seconds <= 60 and not got.lines[1:]:
            # within a minute of entry: every earlier stay that left in the 24 h before and
            # entered after the first of them is in the same shared window
            anchor = min((e.entry for e in shared if e.exit > entry - timedelta(days=1)),
                         default=None)
            if anchor is not None and entry - anchor < timedelta(days=1):
                paid = sum(e.fen for e in shared if e.exit >= anchor)
                assert got.total_fen <= max(0, caps.rolling_24h_fen - paid)


@settings(max_examples=150, deadline=None)
@given(extended, entries, stays, coupons, st.sampled_from(["none", "additive", "best_of"]),
       st.sampled_from(["front", "back"]))
def test_coupons_never_raise_a_fee_nor_push_it_below_zero(
        tariff: Tariff, entry: datetime, seconds: int, presented: list[Coupon], stacking: str,
        apply: str) -> None:
    data = tariff.model_dump(by_alias=True)
    data["coupons"].update(stacking=stacking, apply=apply)
    tariff = Tariff.model_validate(data)
    without = _fee(tariff, entry, seconds)
    got = quote(tariff, entry=entry, exit=entry + timedelta(seconds=seconds), plate="粤B12345",
                coupons=presented, calendar=MALL.calendar, timezone=SHANGHAI)
    assert 0 <= got.total_fen <= without
    assert all(d.fen >= 0 for d in got.discounts)
    assert without - sum(d.fen for d in got.discounts) == got.total_fen
