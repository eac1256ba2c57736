"""Properties every quote keeps, over random stays and tariffs: the fee never falls as a stay
grows, is never negative, never passes the day cap for a day's stay, matches the naive
minute-by-minute definition, and coupons only ever lower it (never below zero)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from parkguard.core.tariffs import Coupon, Tariff, parse_tariff_document, quote
from simulator.bench_tariffs import naive_fee

SHANGHAI = ZoneInfo("Asia/Shanghai")
MALL = parse_tariff_document(
    (Path(__file__).resolve().parents[1] / "docs/examples/tariff-mall.toml").read_text("utf-8"))
MALL_TARIFF = MALL.tariffs[0]


def _tariff(rounding: str, free_mode: str, segmentation: str, day_cap: int | None,
            rolling_cap: int | None, occurrence_cap: int | None) -> Tariff:
    data: dict[str, Any] = {
        "name": "p", "version": "1", "effective_from": "2026-01-01",
        "free": {"minutes": 15, "mode": free_mode}, "segmentation": segmentation,
        "caps": {"calendar_day_fen": day_cap, "rolling_24h_fen": rolling_cap},
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
             "kind": "free_minutes", "minutes": 120}]},
    }
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
coupons = st.lists(st.sampled_from([
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


@settings(max_examples=150, deadline=None)
@given(tariffs, entries, stays, coupons, st.sampled_from(["none", "additive", "best_of"]),
       st.sampled_from(["front", "back"]))
def test_coupons_never_raise_a_fee_nor_push_it_below_zero(
        tariff: Tariff, entry: datetime, seconds: int, presented: list[Coupon], stacking: str,
        apply: str) -> None:
    policy = tariff.coupons.model_copy(update={"stacking": stacking, "apply": apply})
    tariff = tariff.model_copy(update={"coupons": policy})
    without = _fee(tariff, entry, seconds)
    got = quote(tariff, entry=entry, exit=entry + timedelta(seconds=seconds), plate="粤B12345",
                coupons=presented, calendar=MALL.calendar, timezone=SHANGHAI)
    assert 0 <= got.total_fen <= without
    assert all(d.fen >= 0 for d in got.discounts)
    assert without - sum(d.fen for d in got.discounts) == got.total_fen
